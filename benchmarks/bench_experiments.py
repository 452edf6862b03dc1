"""The experiment analysis's read of the event log (``GET /v1/admin/experiments``, ``recommender experiment
report``): the whole log read and filtered in Python (how it was first built) against the column-selected read
of the experiment's rows (``read_table(columns=, equals=)``), and with the experiment's ``started_at``
(``since=``: the hour partitions before it are not opened).

The log: 1,000,000 joined decisions (100,000 with ``--quick``) over 7 days, one file per hour partition, 10
candidates per decision with the default feature groups' rows; the last 2 days are an experiment with two arms.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from recommender.errors import EventLogError
from recommender.events.log import read_table, write_events
from recommender.experiments.analysis import analyze
from recommender.experiments.log_stats import ArmLog, read_arm_log
from recommender.records import Decision, JoinedEvent

START = datetime(2024, 6, 1, tzinfo=UTC)
DAYS = 7
EXPERIMENT_DAYS = 2
CANDIDATES = 10


def write_log(root: Path, n_events: int, seed: int = 0) -> datetime:
    """The benchmark's log under ``root``; returns when its experiment started."""
    rng = random.Random(seed)
    ids = tuple(f"item-{i:04d}" for i in range(CANDIDATES))
    items = tuple({"brand": f"b{i}", "category": "lips", "price_band": "mid", "skin_types": ["dry"],
                   "price": 10.0 + i, "embedding": [rng.gauss(0, 1) for _ in range(8)]}
                  for i in range(CANDIDATES))  # fmt: skip
    users = [{"segment": f"s{u % 5}", "embedding": [rng.gauss(0, 1) for _ in range(8)]} for u in range(200)]
    pmf = ((1.0 / CANDIDATES,) * CANDIDATES,)
    hours = DAYS * 24
    started = START + timedelta(days=DAYS - EXPERIMENT_DAYS)
    step = timedelta(hours=hours) / n_events
    per_hour = -(-n_events // hours)
    for first in range(0, n_events, per_hour):
        events = []
        for i in range(first, min(first + per_hour, n_events)):
            when = START + i * step
            chosen = rng.randrange(CANDIDATES)
            arm = ("control", "treatment")[i % 2] if when >= started else None
            decision = Decision(
                event_id=f"e{i}", timestamp=when, user_id=f"user-{i % 200}", user_features=users[i % 200],
                context={"device": "mobile"}, candidate_ids=ids, candidate_features=items, pmfs=pmf, chosen=(chosen,),
                ranking=(chosen, *(j for j in range(CANDIDATES) if j != chosen)), model_version="bench",
                experiment="exp" if arm else None, arm=arm,
            )  # fmt: skip
            reward = float(rng.random() < (0.12 if arm == "treatment" else 0.10))
            events.append(JoinedEvent(decision, (reward,), (reward == 0.0,), when + timedelta(seconds=10)))
        write_events(events, root)
    return started


def read_arm_log_whole(root: Path, experiment: str) -> ArmLog:
    """The first implementation: every column of every row, filtered in Python."""
    table = read_table(root)
    names = np.asarray(table.column("experiment").to_pylist(), dtype=object)
    keep = names == experiment
    arms = np.asarray(table.column("arm").to_pylist(), dtype=object)[keep].astype(str)
    rewards = np.asarray([r[0] for r, k in zip(table.column("rewards").to_pylist(), keep, strict=True) if k])
    return ArmLog(experiment, arms, rewards.astype(np.float64), table.column("timestamp").to_numpy()[keep])


def _median_seconds(function: Callable[[], ArmLog], repeats: int) -> tuple[float, ArmLog | str]:
    """Median seconds of ``function`` and its analysis, and its result (or, when it fails, why)."""
    times: list[float] = []
    result: ArmLog | str = ""
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            result = function()
        except EventLogError as exc:  # the whole log no longer fits one sorted table
            cause = str(exc.__cause__ or exc).split(",")[0]  # pyarrow's reason, without the log's path
            return time.perf_counter() - started, f"fails after {time.perf_counter() - started:.1f} s ({cause})"
        analyze("exp", result.stats(), {"control": 0.5, "treatment": 0.5}, "control")
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _measure(n_events: int, repeats: int) -> str:
    """One log of ``n_events``: its description and the table rows of the three reads."""
    with tempfile.TemporaryDirectory(prefix="bench-experiments-") as tmp:
        root = Path(tmp) / "events"
        started = time.perf_counter()
        experiment_start = write_log(root, n_events)
        written = time.perf_counter() - started
        size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
        runs = [
            ("whole log, filtered in Python (before)", lambda: read_arm_log_whole(root, "exp")),
            ("experiment's rows, 3 columns (`read_arm_log`)", lambda: read_arm_log(root, "exp")),
            ("... and from `started_at` on (`since=`)", lambda: read_arm_log(root, "exp", since=experiment_start)),
        ]
        results = [(name, *_median_seconds(function, repeats)) for name, function in runs]
    logs = [r for _, _, r in results if isinstance(r, ArmLog)]
    for log in logs[1:]:  # the same observations, in the same order
        assert np.array_equal(log.arms, logs[0].arms) and np.array_equal(log.rewards, logs[0].rewards)
    baseline = results[0][1] if isinstance(results[0][2], ArmLog) else None
    lines = []
    for name, seconds, result in results:
        if isinstance(result, str):
            lines.append(f"| {n_events:,} | {name} | {result} | - |")
        else:
            ratio = f"{baseline / seconds:.1f}x" if baseline else "-"
            lines.append(f"| {n_events:,} | {name} | {seconds:.3f} | {ratio} |")
    description = (f"{n_events:,} decisions: {size / 2**20:.0f} MiB of Parquet, written in {written:.0f} s, "
                   f"{logs[-1].arms.size:,} of them in the experiment")  # fmt: skip
    return description, "\n".join(lines)


def run(quick: bool = False) -> str:
    sizes, repeats = ((50_000,), 2) if quick else ((250_000, 1_000_000), 3)
    measured = [_measure(n, repeats) for n in sizes]
    descriptions = "; ".join(d for d, _ in measured)
    table = "\n".join(t for _, t in measured)
    return f"""## Experiments

The analysis behind `GET /v1/admin/experiments` and `recommender experiment report` (read the log, per-arm
statistics, comparisons), on logs over {DAYS} days ({DAYS * 24} hour partitions, one file each, {CANDIDATES}
candidates per decision) whose last {EXPERIMENT_DAYS} days are an experiment: {descriptions}. Median of
{repeats} runs; the speed-up is against the whole-log read of the same log.

| decisions | read | seconds | speed-up |
|---:|---|---:|---:|
{table}
A read of the whole log sorts every column by time: over 1,000,000 decisions the `candidate_features` column
holds more than 2 GiB of text, which one Arrow `list<string>` array cannot, and the read fails
(`EventLogError`); the experiment's read never touches that column.
"""


if __name__ == "__main__":
    print(run(quick=True))
