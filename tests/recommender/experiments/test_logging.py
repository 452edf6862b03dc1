"""Experiment and arm in the records, the bus payload and the Parquet log; old logs without them still read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
from pydantic_core import from_json

from recommender.events.codec import decode_decision, encode_decision
from recommender.events.log import EVENT_LOG_SCHEMA, read_events, read_table, write_events
from simulators.readers.event_log import read_event_log
from tests.recommender.sample_events import default_schema_events


def _with_arms(n: int, seed: int):
    events = default_schema_events(n, seed)
    return [
        dataclasses.replace(e, decision=dataclasses.replace(e.decision, experiment="exp", arm=f"arm-{i % 2}"))
        for i, e in enumerate(events)
    ]


def test_the_bus_payload_carries_experiment_and_arm_and_old_payloads_decode() -> None:
    decision = _with_arms(1, 1)[0].decision
    digests = [f"d{i}" for i in range(len(decision.candidate_ids))]
    rows = dict(zip(digests, decision.candidate_features, strict=True))
    data = from_json(encode_decision(decision, digests))
    assert decode_decision(data, rows) == decision
    old = {k: v for k, v in data.items() if k not in ("experiment", "arm")}
    decoded = decode_decision(old, rows)
    assert decoded.experiment is None and decoded.arm is None


def test_the_log_keeps_experiment_and_arm_and_reads_old_files_as_null(tmp_path: Path) -> None:
    events = _with_arms(6, 2)
    write_events(events, tmp_path / "log")
    assert [(e.decision.experiment, e.decision.arm) for e in read_events(tmp_path / "log")] == [
        (e.decision.experiment, e.decision.arm)
        for e in sorted(events, key=lambda e: (e.decision.timestamp, e.decision.event_id))
    ]
    # An old file, written before the columns existed, next to a new one in the same partition directory.
    mixed = tmp_path / "mixed"
    new_paths = write_events(events, mixed)
    old = pq.read_table(new_paths[0]).drop_columns(["experiment", "arm"])
    old = old.set_column(0, "event_id", [[f"old-{v}" for v in old.column("event_id").to_pylist()]])
    pq.write_table(old, new_paths[0].parent / "a-old.parquet")  # sorts first: the schema is inferred from it
    table = read_table(mixed)
    assert table.schema == EVENT_LOG_SCHEMA
    arms = dict(zip(table.column("event_id").to_pylist(), table.column("arm").to_pylist(), strict=True))
    assert {arms[k] for k in arms if k.startswith("old-")} == {None}
    assert {arms[e.decision.event_id] for e in events} == {"arm-0", "arm-1"}
    # The offline reader keeps working on both.
    assert read_event_log(mixed).bandit.n_rounds == 2 * len(events)
