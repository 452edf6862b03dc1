"""Reading our own Parquet event log (one file, a partition directory, or the whole root).

The table comes from ``recommender.events.log.read_table`` (the one place that knows the schema). Each
joined decision becomes one row per slot: the slot's pmf is the logging distribution, ``chosen[s]`` the
action, ``rewards[s]`` the reward. The candidates available at slot s are those not shown in slots
0..s-1 (the pmf of a later slot gives the earlier items probability 0 by construction). Context features
are the decision's ``user_features`` (prefixed ``user.``) and ``context`` (prefixed ``context.``); item
features come from ``candidate_features``, keyed by candidate id (the first occurrence of an item wins).

Rows that break the decision invariants are excluded and reported, never dropped silently: a missing or
out-of-range propensity, a chosen index that is not a candidate, a pmf that does not sum to 1, a reward
list that does not match the slots, or feature JSON that does not parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from recommender.errors import EventLogError, RecordError
from recommender.events.log import event_from_row, read_table
from recommender.records import JoinedEvent
from simulators.errors import LogReadError
from simulators.readers.bad_rows import MALFORMED, MISSING_REWARD, BadRowCollector, LoadedLog
from simulators.readers.common import ParsedDecision, ParsedSlot, build_bandit, check_slot
from simulators.readers.features import flatten_features

FORMAT = "event-log"

_COLUMNS = (
    "event_id",
    "timestamp",
    "user_features",
    "context",
    "candidate_ids",
    "candidate_features",
    "pmfs",
    "chosen",
    "rewards",
    "reward_is_default",
    "user_id",
    "ranking",
    "model_version",
    "exploration",
    "degraded",
    "deferred",
    "joined_at",
    "experiment",
    "arm",
)


def _parse_row(
    row: Mapping[str, Any], items: dict[str, dict[str, float]]
) -> tuple[ParsedDecision, JoinedEvent] | tuple[str, str]:
    candidate_ids = tuple(row["candidate_ids"] or ())
    n_features = len(row["candidate_features"] or ())
    if not candidate_ids or n_features != len(candidate_ids):
        return MALFORMED, f"{len(candidate_ids)} candidates with {n_features} feature rows"
    pmfs, chosen, rewards = row["pmfs"] or [], row["chosen"] or [], row["rewards"] or []
    if not chosen or len(pmfs) != len(chosen):
        return MALFORMED, f"{len(pmfs)} pmfs for {len(chosen)} slots"
    if len(rewards) != len(chosen):
        return MISSING_REWARD, f"{len(rewards)} rewards for {len(chosen)} slots"
    slots = []
    shown: set[int] = set()
    for s, (pmf, action, reward) in enumerate(zip(pmfs, chosen, rewards, strict=True)):
        pmf = [float("nan") if p is None else float(p) for p in (pmf or [])]
        pscore = pmf[action] if isinstance(action, int) and 0 <= action < len(pmf) else None
        problem = check_slot(action, pscore, pmf, len(candidate_ids))
        if problem:
            return problem[0], f"slot {s}: {problem[1]}"
        if reward is None:
            return MISSING_REWARD, f"slot {s}: no reward"
        available = tuple(j not in shown for j in range(len(candidate_ids)))
        slots.append(ParsedSlot(action, float(pscore), tuple(pmf), available, float(reward)))  # type: ignore[arg-type]
        shown.add(action)
    try:
        event = event_from_row(row)  # the one decoding of a log row; also parses the feature JSON
    except ValueError as exc:
        return MALFORMED, f"not a valid decision record (or feature JSON that does not parse): {exc}"
    except (RecordError, TypeError, KeyError) as exc:
        return MALFORMED, f"not a valid decision record: {exc}"
    decision = event.decision
    for cid, features in zip(candidate_ids, decision.candidate_features, strict=True):
        if cid not in items:
            items[cid] = flatten_features(features)
    flat = flatten_features(decision.user_features, prefix="user.")
    flat.update(flatten_features(decision.context, prefix="context."))
    timestamp = row["timestamp"] if isinstance(row["timestamp"], datetime) else None
    return ParsedDecision(str(row["event_id"]), timestamp, flat, candidate_ids, tuple(slots)), event


def read_event_log(path: str | Path, *, strict: bool = False) -> LoadedLog:
    """Read our Parquet event log at ``path`` into a ``LoadedLog``.

    Raises LogReadError when the log cannot be read, when no row is usable, or (``strict``) when any row
    is bad.
    """
    try:
        table = read_table(path)
    except EventLogError as exc:
        raise LogReadError(str(exc)) from exc
    columns = {name: table.column(name).to_pylist() for name in _COLUMNS}
    n = table.num_rows
    bad = BadRowCollector()
    items: dict[str, dict[str, float]] = {}
    decisions: list[ParsedDecision] = []
    events: list[JoinedEvent] = []
    n_default = 0
    for i in range(n):
        row = {name: values[i] for name, values in columns.items()}
        parsed = _parse_row(row, items)
        if isinstance(parsed[0], str):
            bad.add(f"row {i} (event_id={row['event_id']})", parsed[0], parsed[1])  # type: ignore[arg-type]
            continue
        decisions.append(parsed[0])  # type: ignore[arg-type]
        events.append(parsed[1])  # type: ignore[arg-type]
        n_default += sum(bool(flag) for flag in (row["reward_is_default"] or ()))
    notes = (f"{n_default} slot rewards are the configured default (no reward arrived)",) if n_default else ()
    report = bad.report(str(path), FORMAT, n, len(decisions), strict=strict, notes=notes)
    if not decisions:  # pragma: no cover - report() raises first
        raise LogReadError(f"{path}: no usable rows")
    bandit = build_bandit(decisions, items, {}, source=f"{FORMAT}:{path}", events=events)
    return LoadedLog(bandit=bandit, report=report)
