"""The column-selected, time-filtered read of the event log (``read_table(columns=, since=, until=, equals=)``) that
the experiment analysis uses, against the full read."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from recommender.errors import EventLogError
from recommender.events.log import read_table, write_events
from recommender.experiments.log_stats import read_arm_log
from tests.recommender.sample_events import START, default_schema_events


def _log(root: Path) -> list:
    """300 events one minute apart (08:00 to 12:59 on one day: five hour partitions), every third outside the
    experiment."""
    events = [dataclasses.replace(e, decision=dataclasses.replace(e.decision, experiment="exp" if i % 3 else None,
                                                                  arm=("a", "b")[i % 2] if i % 3 else None))
              for i, e in enumerate(default_schema_events(300, 2))]  # fmt: skip
    write_events(events, root)
    return events


def test_selected_columns_of_a_window_and_an_experiment(tmp_path: Path) -> None:
    events = _log(tmp_path)
    full = read_table(tmp_path)
    since, until = START + timedelta(minutes=70), START + timedelta(minutes=200)
    part = read_table(tmp_path, columns=["arm", "rewards"], since=since, until=until, equals={"experiment": "exp"})
    assert part.column_names == ["arm", "rewards"]
    expected = [e for e in events if since <= e.decision.timestamp < until and e.decision.experiment == "exp"]
    assert part.column("arm").to_pylist() == [e.decision.arm for e in expected]
    assert part.column("rewards").to_pylist() == [list(e.rewards) for e in expected]
    assert full.num_rows == 300 and read_table(tmp_path, columns=["event_id"]).num_rows == 300
    with pytest.raises(EventLogError, match="no columns"):
        read_table(tmp_path, columns=["nope"])


def test_partitions_before_the_window_are_not_opened(tmp_path: Path) -> None:
    _log(tmp_path)
    # A file no reader could open, in the first hour: only a read that prunes that partition succeeds.
    (tmp_path / "date=2024-03-01" / "hour=08" / "part-broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(EventLogError):
        read_table(tmp_path, columns=["event_id"])
    later = read_table(tmp_path, columns=["event_id"], since=START + timedelta(hours=1))
    assert later.num_rows == 240


def test_the_arm_log_from_the_filtered_read_equals_the_full_one(tmp_path: Path) -> None:
    events = _log(tmp_path)
    log = read_arm_log(tmp_path, "exp")
    mine = [e for e in events if e.decision.experiment == "exp"]
    assert log.arms.tolist() == [e.decision.arm for e in mine]
    assert np.array_equal(log.rewards, [e.rewards[0] for e in mine])
    since = START + timedelta(minutes=150)
    assert read_arm_log(tmp_path, "exp", since=since).arms.size == sum(e.decision.timestamp >= since for e in mine)
    assert read_arm_log(tmp_path, "other").arms.size == 0
