"""Reading Vowpal Wabbit DSJSON decision logs (what Azure Personalizer and VW's online services write).

One JSON object per line. Two kinds of decision are read:

CB (``--cb_explore_adf``)::

    {"_label_cost": -1, "_label_probability": 0.8, "_label_Action": 2, "_labelIndex": 1,
     "Timestamp": "2019-08-13T20:40:28.788Z", "EventId": "13c3...", "a": [2, 1, 3], "p": [0.8, 0.1, 0.1],
     "c": {"User": {...}, "_multi": [{...}, {...}, {...}]}, "o": [...]}

- ``c._multi`` lists the candidate actions (their features); everything else in ``c`` is the shared
  context (keys starting with ``_`` are metadata, not features). Feature columns are named as the event-log
  reader names a decision's (so our export reads back to the same matrices): ``c.User`` as the user
  features, ``c.Context`` as the context, an action's ``Item`` as its declared features, every other key as
  the JSON namespace object ``" "`` of the context or the action (Personalizer's layout).
- ``a`` lists the action ids, in ranking order as Personalizer writes it (``a[0]`` is the chosen one), and
  ``p`` their probabilities in the same order. Personalizer writes 1-based ids (pmf[a[j] - 1] = p[j]);
  VW's own test data also has 0-based ones (``cb_features_w_zero_vals.dsjson``: ``"a": [0, 1]``) and
  lists in action order (``igl.dsjson``: ``"a": [0, 1, 2, 3]`` whatever was chosen), which VW reads
  because it takes the label from ``_labelIndex`` and uses ``a`` for nothing but metrics. The base is
  decided per line: 0-based when ``a`` holds 0, 1-based when it holds ``len(_multi)``, else 0-based when
  ``a[0] == _labelIndex`` and 1-based otherwise. The chosen action is ``_labelIndex`` (``a[0]`` without
  it); the pmf must give it ``_label_probability``.
- ``_labelIndex`` is the chosen action's 0-based index (``_label_Action`` = ``_labelIndex`` + 1),
  ``_label_probability`` its probability, ``_label_cost`` its cost: reward = -cost (VW minimizes cost).
- An action with a ``_tag`` (Personalizer's action id) is that item wherever it appears, with the features
  of its first appearance (as our event log keys items by id); an action without one is keyed by its
  features.

CCB (``--ccb_explore_adf``)::

    {"c": {..., "_multi": [...], "_slots": [{...}, ...]},
     "_outcomes": [{"_id": "...", "_label_cost": 0, "_a": [0, 1, 2, 3], "_p": [0.25, ...]}, ...]}

- one ``_outcomes`` entry per slot: ``_a`` the 0-based indices into ``_multi`` of the actions that were
  available at the slot, chosen first; ``_p`` their probabilities; ``_label_cost`` the slot's cost.

``pdrop`` (the probability with which the logging pipeline dropped an event like this one before it was
written) is read as VW reads it (``apply_pdrop`` in vowpalwabbit/json_parser/src/parse_example_json.cc):
a line with ``pdrop`` = 1 is refused (VW: "examples with pdrop==1 are not supported") and counted as
malformed; a kept line stands for 1 / (1 - pdrop) events and VW multiplies its importance weight by
that. Our estimators count every decision once, which is exactly VW's weighting when every decision has
the same ``pdrop`` (a weight common to all rows cancels in every estimate here, each a mean or a ratio
of means over rows); when ``pdrop`` varies, the estimates describe the logged sample, not the traffic
it was sampled from, and the report's notes say so with the range of ``pdrop`` seen.

``Timestamp`` is ISO 8601; Personalizer writes 7 fractional digits (100 ns ticks), which are truncated to
microseconds; a time without a zone is UTC.

Lines without a decision are skipped and counted, each kind in the report's notes, as VW skips them:
outcome-only "dangling reward" lines and other service lines (no ``c``), inactive events
(``_skipLearn: true``: the application never activated them, so there is no reward), and CB lines with
no ``a`` (VW: "events with zero actions"). Lines of VW's other JSON format (``--json``: labels and
``_multi`` at the top level, no ``c``) are not DSJSON and carry no logged distribution: they are counted
as such, and a file of nothing else is refused with a message saying so. Continuous-action (CATS,
``_label_ca``) and slates (``_slot_id`` in ``_multi``) lines are excluded as malformed with a detail naming
the format, which this reader does not support. Bad decisions (missing probability, probability outside
(0, 1], chosen index outside ``_multi``, missing cost, pmf that does not sum to 1) are excluded and
reported with their line numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.errors import LogReadError
from simulators.readers.bad_rows import (
    BAD_DISTRIBUTION,
    MALFORMED,
    MISSING_PROPENSITY,
    MISSING_REWARD,
    UNKNOWN_ACTION,
    BadRowCollector,
    LoadedLog,
)
from simulators.readers.common import ParsedDecision, ParsedSlot, build_bandit, check_slot
from simulators.readers.features import flatten_features

FORMAT = "dsjson"


def _get(obj: Mapping[str, Any], *names: str) -> Any:
    """First present key among ``names``, case-insensitively (VW accepts ``_label_cost`` and ``_label_Cost``)."""
    lowered = {k.lower(): v for k, v in obj.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _timestamp(value: Any) -> datetime | None:
    """UTC time of an ISO 8601 string; fractional seconds beyond microseconds (Personalizer's 7 digits) are
    truncated (``datetime.fromisoformat`` does, silently, unlike pandas, which warns); no zone means UTC."""
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _as_logged(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """A DSJSON object as our event log holds its row: the features of ``namespace`` (a mapping) as the
    declared ones, every other key as the row's JSON namespace object ``" "`` (``simulators.dsjson_export``
    writes the two this way), so both readers give the same feature columns."""
    declared = obj.get(namespace)
    row = dict(declared) if isinstance(declared, Mapping) else {}
    own = {key: value for key, value in obj.items() if key != namespace or not isinstance(value, Mapping)}
    if own:
        row[" "] = own
    return row


def _shared_features(shared: Mapping[str, Any]) -> dict[str, float]:
    """The flat context of a line's shared object, named as the event-log reader names a decision's:
    ``User`` under ``user.``, ``Context`` and the other keys under ``context.`` (the others as ``context. .``)."""
    user = shared.get("User")
    flat = flatten_features(user if isinstance(user, Mapping) else {}, prefix="user.")
    rest = {key: value for key, value in shared.items() if key != "User" or not isinstance(value, Mapping)}
    flat.update(flatten_features(_as_logged(rest, "Context"), prefix="context."))
    return flat


def _item_key(features: Mapping[str, Any]) -> tuple[str, str]:
    """(key, display name) of an action: its ``_tag`` when it has one, else its features (identical
    features are the same item)."""
    tag = features.get("_tag") if isinstance(features, Mapping) else None
    if tag is not None:
        return str(tag), str(tag)
    key = json.dumps(flatten_features(_as_logged(features, "Item")), sort_keys=True)
    return key, key if len(key) <= 60 else key[:57] + "..."


def _action_base(ids: list[Any], index: Any, n: int) -> int:
    """0 or 1, the base of the action ids in ``a`` of a decision over ``n`` actions (see the module docstring)."""
    if 0 in ids:
        return 0
    if n in ids:
        return 1
    return 0 if isinstance(index, int) and not isinstance(index, bool) and ids[0] == index else 1


def _cb_slot(event: Mapping[str, Any], n: int) -> ParsedSlot | tuple[str, str]:
    ids, probs = event.get("a"), event.get("p")
    index = _get(event, "_labelIndex")
    pscore = _number(_get(event, "_label_probability"))
    cost = _number(_get(event, "_label_cost"))
    if not isinstance(ids, list) or not isinstance(probs, list) or len(ids) != len(probs) or not ids:
        return BAD_DISTRIBUTION, "'a' and 'p' must be non-empty lists of equal length"
    base = _action_base(ids, index, n)
    if index is None and isinstance(ids[0], int):
        index = ids[0] - base
    if pscore is None and _get(event, "_label_probability") is None:
        return MISSING_PROPENSITY, "no _label_probability"
    dist = [0.0] * n
    for action_id, p in zip(ids, probs, strict=True):
        if not isinstance(action_id, int) or isinstance(action_id, bool) or not base <= action_id < n + base:
            return UNKNOWN_ACTION, f"action id {action_id!r} in 'a' is not one of the {n} actions ({base}-based)"
        if _number(p) is None:
            return MISSING_PROPENSITY, f"probability {p!r} of action {action_id} is not a number"
        dist[action_id - base] = float(p)
    problem = check_slot(index, pscore if pscore is not None else math.nan, dist, n)
    if problem:
        return problem
    if cost is None:
        return MISSING_REWARD, "no _label_cost"
    available = tuple(True for _ in range(n))
    return ParsedSlot(int(index), float(pscore), tuple(dist), available, -cost)  # type: ignore[arg-type]


def _ccb_slots(event: Mapping[str, Any], n: int) -> list[ParsedSlot] | tuple[str, str]:
    outcomes = event.get("_outcomes")
    if not isinstance(outcomes, list) or not outcomes:
        return MISSING_REWARD, "no _outcomes"
    slots = []
    for s, outcome in enumerate(outcomes):
        if not isinstance(outcome, Mapping):
            return MALFORMED, f"slot {s}: outcome is not an object"
        actions, probs = outcome.get("_a"), outcome.get("_p")
        if not isinstance(actions, list) or not actions:
            return MISSING_PROPENSITY if actions is None else BAD_DISTRIBUTION, f"slot {s}: no _a list"
        if not isinstance(probs, list) or not probs:
            return MISSING_PROPENSITY, f"slot {s}: no _p list"
        if len(actions) != len(probs):
            return BAD_DISTRIBUTION, f"slot {s}: {len(actions)} actions with {len(probs)} probabilities"
        dist = [0.0] * n
        available = [False] * n
        for action, p in zip(actions, probs, strict=True):
            if not isinstance(action, int) or isinstance(action, bool) or not 0 <= action < n:
                return UNKNOWN_ACTION, f"slot {s}: action {action!r} is not one of the {n} actions"
            if _number(p) is None:
                return MISSING_PROPENSITY, f"slot {s}: probability {p!r} of action {action} is not a number"
            dist[action] = float(p)
            available[action] = True
        problem = check_slot(actions[0], _number(probs[0]), dist, n)
        if problem:
            return problem[0], f"slot {s}: {problem[1]}"
        cost = _number(_get(outcome, "_label_cost"))
        if cost is None:
            return MISSING_REWARD, f"slot {s}: no _label_cost"
        slots.append(ParsedSlot(actions[0], float(probs[0]), tuple(dist), tuple(available), -cost))
    return slots


def _parse_event(event: Mapping[str, Any], items: dict[str, dict[str, float]], names: dict[str, str]):
    context = event.get("c")
    if not isinstance(context, Mapping):
        return MALFORMED, "no context object 'c'"
    if _get(event, "_label_ca") is not None or "pdf" in event:
        return MALFORMED, "a continuous-action (CATS, _label_ca) line: not supported, only CB and CCB decisions"
    multi = context.get("_multi")
    if isinstance(multi, list) and any(isinstance(m, Mapping) and "_slot_id" in m for m in multi):
        return MALFORMED, "a slates line (_slot_id in c._multi): not supported, only CB and CCB decisions"
    if not isinstance(multi, list) or not multi or not all(isinstance(m, Mapping) for m in multi):
        return MALFORMED, "no action list c._multi"
    n = len(multi)
    if "_outcomes" in event or "_slots" in context:
        slots = _ccb_slots(event, n)
    else:
        slot = _cb_slot(event, n)
        slots = slot if isinstance(slot, tuple) else [slot]
    if isinstance(slots, tuple):
        return slots
    keyed = [_item_key(features) for features in multi]
    keys = [key for key, _ in keyed]
    if len(set(keys)) != len(keys):
        # Two actions with the same id or features: keep them apart so the candidate axis stays one-to-one.
        keyed = [
            (f"{key}#{j}", f"{name}#{j}") if keys.count(key) > 1 else (key, name) for j, (key, name) in enumerate(keyed)
        ]
        keys = [key for key, _ in keyed]
    for features, (key, name) in zip(multi, keyed, strict=True):
        if key not in items:
            items[key] = flatten_features(_as_logged(features, "Item"))
            names[key] = name
    shared = {k: v for k, v in context.items() if k not in ("_multi", "_slots")}
    event_id = _get(event, "EventId")
    return ParsedDecision(
        event_id=str(event_id) if event_id is not None else "",
        timestamp=_timestamp(_get(event, "Timestamp")),
        context=_shared_features(shared),
        item_keys=tuple(keys),
        slots=tuple(slots),
    )


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl", ".dsjson"))
        if not files:
            raise LogReadError(f"{path}: no .json/.jsonl/.dsjson files")
        return files
    if not path.exists():
        raise LogReadError(f"DSJSON log {path} does not exist")
    return [path]


# Kinds of line skipped, as VW skips them (see the module docstring), in the order the note lists them.
_NO_DECISION = "without a decision (outcome-only or service lines)"
_INACTIVE = "inactive (_skipLearn)"
_NO_ACTIONS = "with no actions 'a' (VW skips these too)"
_VW_JSON = "vw_json"


def _skip_kind(event: object) -> str | None:
    """Why a parsed line is not read as a decision (one of the kinds above), or None to read it."""
    if not isinstance(event, Mapping):
        return _NO_DECISION
    if "c" not in event and "_outcomes" not in event:
        # VW's --json examples put the label and _multi at the top level.
        plain = "_multi" in event or any(str(k).lower().startswith("_label") for k in event)
        return _VW_JSON if plain else _NO_DECISION
    if event.get("_skipLearn") is True:
        return _INACTIVE
    context = event.get("c")
    ccb = "_outcomes" in event or (isinstance(context, Mapping) and "_slots" in context)
    if not ccb and _get(event, "_label_ca") is None and event.get("a") in (None, []):
        return _NO_ACTIONS
    return None


def _pdrop(event: Mapping[str, Any]) -> float | str:
    """The line's pdrop (0 when absent), or what is wrong with it."""
    value = event.get("pdrop", 0.0)
    pdrop = _number(value)
    if pdrop is None or not 0.0 <= pdrop <= 1.0:
        return f"pdrop {value!r} is not a probability"
    if pdrop == 1.0:
        return "pdrop = 1: VW refuses such lines ('examples with pdrop==1 are not supported')"
    return pdrop


def _notes(skipped: dict[str, int], vw_json: int, pdrops: list[float]) -> tuple[str, ...]:
    notes = []
    total = sum(skipped.values())
    if total:
        parts = ", ".join(f"{count} {kind}" for kind, count in skipped.items() if count)
        notes.append(f"skipped {total} lines that carry no decision or an inactive one: {parts}")
    if vw_json:
        notes.append(f"{vw_json} lines are VW's --json examples, not DSJSON decisions (no 'c' object): not read")
    dropped = sorted(set(pdrops) - {0.0})
    if dropped and len(set(pdrops)) == 1:
        weight = 1.0 / (1.0 - pdrops[0])
        notes.append(
            f"every decision has pdrop {pdrops[0]:g}: VW weights each by 1/(1-pdrop) = {weight:g}, a weight "
            "common to all rows, which leaves every estimate unchanged"
        )
    elif dropped:
        notes.append(
            f"pdrop varies from {min(pdrops):g} to {max(pdrops):g} across decisions: VW weights each by "
            "1/(1-pdrop); these estimates count every decision once, so they describe the logged sample, "
            "not the traffic it was sampled from"
        )
    return tuple(notes)


def read_dsjson(path: str | Path, *, strict: bool = False) -> LoadedLog:
    """Read a DSJSON file (or a directory of them) into a ``LoadedLog``. See the module docstring.

    Raises LogReadError for a missing path, a file of VW's --json format, no usable decision, or (``strict``)
    any bad line.
    """
    path = Path(path)
    bad = BadRowCollector()
    items: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    decisions: list[ParsedDecision] = []
    pdrops: list[float] = []
    read = vw_json = 0
    skipped = {_NO_DECISION: 0, _INACTIVE: 0, _NO_ACTIONS: 0}
    for file in _files(path):
        with file.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                location = f"{file.name} line {line_no}"
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as exc:
                    read += 1
                    bad.add(location, MALFORMED, f"not JSON: {exc.msg}")
                    continue
                kind = _skip_kind(event)
                if kind == _VW_JSON:
                    vw_json += 1
                    continue
                if kind is not None:
                    skipped[kind] += 1
                    continue
                read += 1
                pdrop = _pdrop(event)
                if isinstance(pdrop, str):
                    bad.add(location, MALFORMED, pdrop)
                    continue
                parsed = _parse_event(event, items, names)
                if isinstance(parsed, tuple):
                    bad.add(location, parsed[0], parsed[1])
                    continue
                if not parsed.event_id:
                    parsed = ParsedDecision(location, parsed.timestamp, parsed.context, parsed.item_keys, parsed.slots)
                decisions.append(parsed)
                pdrops.append(pdrop)
    if vw_json and not read:
        raise LogReadError(
            f"{path} is in VW's --json format (labels and _multi at the top level), not DSJSON (--dsjson): its "
            "examples log no distribution over the actions ('a', 'p'), so they cannot be evaluated off-policy"
        )
    report = bad.report(str(path), FORMAT, read, len(decisions), strict=strict, notes=_notes(skipped, vw_json, pdrops))
    if any(d.timestamp is None for d in decisions):
        decisions = [ParsedDecision(d.event_id, None, d.context, d.item_keys, d.slots) for d in decisions]
    bandit = build_bandit(decisions, items, names, source=f"{FORMAT}:{path}")
    return LoadedLog(bandit=bandit, report=report)
