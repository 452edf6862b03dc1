"""Writing our Parquet event log as VW DSJSON, the format Azure Personalizer exported and VW reads (``--dsjson``).

``export_dsjson(log, out)`` reads the event log with ``simulators.readers.event_log.read_event_log`` (the
rows it excludes as bad are not written, and its report says which) and writes one JSON line per joined
decision, in log order:

- single-slot decisions as CB lines: ``_label_cost`` = -reward (``cost_from_reward``), ``_label_probability``
  the chosen candidate's probability, ``_labelIndex`` its 0-based index and ``_label_Action`` = index + 1,
  ``a`` the 1-based candidate numbers in ranking order (then the candidates the ranking left out) and ``p``
  their probabilities in that order, so ``p`` holds the whole pmf;
- multi-slot decisions as CCB lines: ``c._slots`` (``_id`` = the decision's slot name, Personalizer's slot id,
  else ``slot-<s>``) and one ``_outcomes`` entry per
  slot, ``_a`` the 0-based indices of the candidates still available at the slot (the chosen one first,
  then those not shown in an earlier slot) and ``_p`` their probabilities, ``_label_cost`` the slot's cost;
- ``c`` holds the features as logged (a list of strings as one ``name=tag`` feature per tag, as VW's JSON
  parser refuses arrays of strings): ``User`` (the user features), ``Context`` (the request
  context) and, per candidate in ``c._multi``, ``_tag`` (its id) and ``Item`` (its features): the namespace
  names our own VW examples use, so interactions such as ``-q UI`` mean the same thing;
- schema-free features (Personalizer's layout: the context's key ``" "`` and each candidate row's ``" "``,
  ``{"i": ..., "j": ...}``) are merged into ``c`` and into each ``_multi`` entry, where VW's JSON parser reads
  them as the example's own object: ``--dsjson`` then parses exactly the namespaces and features serving
  encoded (``recommender.policy.examples``), and a Personalizer-era script sees its own layout;
- ``EventId``, ``Timestamp`` (UTC, 7 fractional digits as Personalizer wrote them), ``Version`` "1",
  ``VWState.m`` (the model version that decided), ``_original_label_cost``, and ``o`` (the reward as an
  outcome, ``v``, with ``_default`` true when no reward arrived and the configured default was used).

Reading the file back with ``simulators.readers.dsjson.read_dsjson`` gives the same rows, pmfs, rewards,
timestamps and feature matrices as reading the event log, so every estimate of a fixed policy is the
same (``simulators.readers.dsjson`` names ``User``, ``Context`` and ``Item`` and the merged objects as the
event-log reader names their columns). For declared features, VW's hashing of the export differs from our
example builder's (VW's JSON parser names a string feature by key and value concatenated, ours ``key=value``),
so a model VW trains on an export of declared features is not our model; on schema-free features it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recommender.policy.examples import EXAMPLE_OBJECT as EXAMPLE
from recommender.policy.examples import cost_from_reward
from recommender.records import Decision, JoinedEvent
from simulators.errors import SimulatorError
from simulators.readers.bad_rows import ReadReport
from simulators.readers.event_log import read_event_log


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``path``, the number of ``decisions`` written, and the reader's ``report`` of
    the event-log rows (bad rows excluded, not written)."""

    path: Path
    decisions: int
    report: ReadReport


def _timestamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _features(row: Mapping[str, Any]) -> dict[str, Any]:
    """A namespace object of a feature row. VW's JSON parser refuses arrays of strings (its array state takes
    numbers and objects only), so a list of strings (tags) becomes one ``name=tag`` feature of value 1 per
    tag: the name our readers give such a tag (``simulators.readers.features``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            out.update((f"{key}={tag}", 1) for tag in value)
        else:
            out[str(key)] = list(value) if isinstance(value, tuple) else value
    return out


def _with_own_object(declared: dict[str, Any], row: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """A DSJSON object of a row: its declared features in ``namespace``, and its JSON namespace object under
    ``EXAMPLE`` (Personalizer's layout) merged in at the top, where VW's JSON parser reads it as the example's
    own object, just as serving encoded it. A key of that object naming ``namespace`` (a mapping) joins
    its features, as serving did: the same VW namespace."""
    rest = {key: value for key, value in row.items() if key != EXAMPLE}
    out = {namespace: _features(rest), **declared}
    own = row.get(EXAMPLE)
    if isinstance(own, Mapping):
        for key, value in own.items():
            if key in out and isinstance(out[key], dict) and isinstance(value, Mapping):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def _context(decision: Decision) -> dict[str, Any]:
    shared = _with_own_object({"User": _features(decision.user_features)}, decision.context, "Context")
    shared["_multi"] = [
        {"_tag": cid, **_with_own_object({}, features, "Item")}
        for cid, features in zip(decision.candidate_ids, decision.candidate_features, strict=True)
    ]
    return shared


def event_line(event: JoinedEvent) -> dict[str, Any]:
    """The DSJSON object of one joined decision (see the module docstring)."""
    decision = event.decision
    k = len(decision.candidate_ids)
    line: dict[str, Any] = {}
    context = _context(decision)
    if decision.num_slots == 1:
        chosen, pmf = decision.chosen_index, decision.pmf
        order = list(decision.ranking) + [j for j in range(k) if j not in decision.ranking]
        cost = cost_from_reward(event.reward)
        line |= {
            "_label_cost": cost,
            "_label_probability": pmf[chosen],
            "_label_Action": chosen + 1,
            "_labelIndex": chosen,
        }
    else:
        names = decision.slot_names or tuple(f"slot-{s}" for s in range(decision.num_slots))
        context["_slots"] = [{"_id": name} for name in names]
        outcomes = []
        shown: set[int] = set()
        for s, (pmf, chosen, reward) in enumerate(zip(decision.pmfs, decision.chosen, event.rewards, strict=True)):
            available = [chosen] + [j for j in range(k) if j != chosen and j not in shown]
            outcomes.append(
                {
                    "_id": names[s],
                    "_label_cost": cost_from_reward(reward),
                    "_a": available,
                    "_p": [pmf[j] for j in available],
                    "_original_label_cost": cost_from_reward(reward),
                }
            )
            shown.add(chosen)
        cost = outcomes[0]["_label_cost"]
    line |= {
        "o": [
            {"v": reward, "EventId": decision.event_id, "_slot": s, "_default": default}
            for s, (reward, default) in enumerate(zip(event.rewards, event.reward_is_default, strict=True))
        ],
        "Timestamp": _timestamp(decision.timestamp),
        "Version": "1",
        "EventId": decision.event_id,
    }
    if decision.num_slots == 1:
        line |= {"a": [j + 1 for j in order], "c": context, "p": [decision.pmf[j] for j in order]}
    else:
        line |= {"c": context, "_outcomes": outcomes}
    line |= {"VWState": {"m": decision.model_version}, "_original_label_cost": cost}
    return line


def _lines(events: tuple[JoinedEvent, ...]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event_line(event), separators=(",", ":"), allow_nan=False) + "\n"


def export_dsjson(log: str | Path, out: str | Path, *, strict: bool = False) -> ExportResult:
    """Write the event log at ``log`` (root, partition or file) as DSJSON to ``out``. See the module docstring.

    The file is written through a temporary file in the same directory and a rename: an interrupted export
    leaves no half-written file. Raises LogReadError (a SimulatorError) when the log cannot be read or has no
    usable row (or, ``strict``, any bad row), SimulatorError when ``out`` cannot be written.
    """
    loaded = read_event_log(log, strict=strict)
    events = loaded.bandit.decisions
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.writelines(_lines(events))
        tmp.replace(out)
    except OSError as exc:
        raise SimulatorError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, len(events), loaded.report)
