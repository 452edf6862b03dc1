"""Readers of our event log, the Open Bandit Dataset layout and VW DSJSON: good rows, and bad rows
counted by reason with examples (never dropped silently)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from recommender.events.log import write_events
from recommender.records import Decision, JoinedEvent
from simulators.errors import LogReadError
from simulators.readers import detect_format, read_log
from tests.simulators.log_files import OBD_ROWS, cb_line, write_obd

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _event(i: int, pmfs, chosen, rewards, candidates=("a", "b", "c")) -> JoinedEvent:
    ranking = tuple(chosen) + tuple(j for j in range(len(candidates)) if j not in chosen)
    decision = Decision(
        event_id=f"e{i}",
        timestamp=T0 + timedelta(minutes=i),
        user_id=f"u{i % 3}",
        user_features={"segment": f"s{i % 2}", "embedding": [0.1 * i, 1.0]},
        context={"device": "mobile"},
        candidate_ids=tuple(candidates),
        candidate_features=tuple({"price": float(j + 1), "brand": f"b{j}"} for j in range(len(candidates))),
        pmfs=tuple(tuple(p) for p in pmfs),
        chosen=tuple(chosen),
        ranking=ranking,
        model_version="v1",
    )
    return JoinedEvent(decision, tuple(rewards), tuple(False for _ in rewards), decision.timestamp)


def test_event_log_single_and_multi_slot(tmp_path):
    events = [
        _event(0, [(0.5, 0.25, 0.25)], [0], [1.0]),
        _event(1, [(0.2, 0.6, 0.2)], [1], [0.0]),
        # Two slots: slot 1's pmf gives the slot-0 item (index 2) probability 0.
        _event(2, [(0.1, 0.1, 0.8), (0.5, 0.5, 0.0)], [2, 0], [1.0, 0.0]),
    ]
    write_events(events, tmp_path)
    loaded = read_log(tmp_path)
    log = loaded.bandit
    assert loaded.report.rows_read == 3 and loaded.report.rows_kept == 3 and loaded.report.rows_bad == 0
    assert log.n_rounds == 4 and log.n_decisions == 3 and log.n_positions == 2
    np.testing.assert_array_equal(log.action, [0, 1, 2, 0])
    np.testing.assert_array_equal(log.position, [0, 0, 0, 1])
    np.testing.assert_allclose(log.pscore, [0.5, 0.6, 0.8, 0.5])
    np.testing.assert_allclose(log.reward, [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(log.round_id, [0, 1, 2, 2])
    # At slot 1 of decision 2 the item shown in slot 0 is no longer available.
    np.testing.assert_array_equal(log.candidate_mask[3], [True, True, False])
    assert log.item_ids == ("a", "b", "c")
    assert log.context.shape[1] > 0 and log.action_context is not None
    assert list(log.event_id) == ["e0", "e1", "e2", "e2"]


def _corrupt(path, edits):
    """Rewrite the one Parquet file under ``path`` with per-row edits (column -> value)."""
    files = list(path.rglob("*.parquet"))
    assert len(files) == 1
    frame = pd.read_parquet(files[0])
    for row, column, value in edits:
        values = frame[column].tolist()
        values[row] = value
        frame[column] = pd.Series(values, dtype=object)
    frame.to_parquet(files[0], index=False)


def test_event_log_bad_rows_are_counted_with_examples(tmp_path):
    write_events([_event(i, [(0.5, 0.25, 0.25)], [0], [1.0]) for i in range(6)], tmp_path)
    _corrupt(
        tmp_path,
        [
            (1, "pmfs", [[0.0, 0.5, 0.5]]),  # logged action has probability 0
            (2, "chosen", [7]),  # not a candidate
            (3, "pmfs", [[None, 0.5, 0.5]]),  # missing propensity
            (4, "rewards", []),  # no reward for the slot
        ],
    )
    loaded = read_log(tmp_path)
    report = loaded.report
    assert report.rows_read == 6 and report.rows_kept == 2
    assert dict(report.counts) == {
        "propensity_out_of_range": 1,
        "unknown_action": 1,
        "missing_propensity": 1,
        "missing_reward": 1,
    }
    locations = {e.reason: e.location for e in report.examples}
    assert locations["unknown_action"] == "row 2 (event_id=e2)"
    assert "excluded 1 missing_propensity" in report.summary()
    with pytest.raises(LogReadError, match="bad rows in strict mode: .*unknown_action"):
        read_log(tmp_path, strict=True)


def test_obd_layout(tmp_path):
    directory = write_obd(tmp_path / "random" / "all")
    assert detect_format(directory) == "obd"
    loaded = read_log(directory)
    log, report = loaded.bandit, loaded.report
    assert report.rows_read == 7 and report.rows_kept == 3
    assert dict(report.counts) == {
        "unknown_action": 1,
        "missing_propensity": 1,
        "propensity_out_of_range": 1,
        "missing_reward": 1,
    }
    assert {e.location for e in report.examples} == {"line 5", "line 6", "line 7", "line 8"}
    np.testing.assert_array_equal(log.action, [0, 2, 1])
    np.testing.assert_array_equal(log.position, [0, 1, 2])  # OBD positions 1..3 -> 0..2
    np.testing.assert_allclose(log.reward, [0, 1, 0])
    assert log.n_actions == 3 and log.action_context.shape == (3, 2)
    assert log.context.shape == (3, 1)  # one-hot of user_feature_0 with the first level dropped
    assert log.logging_dist is None and log.timestamp is not None


def test_obd_fractional_positions_odd_clicks_bad_timestamps_and_empty_features_are_bad_rows(tmp_path):
    rows = [
        *OBD_ROWS[:3],  # the three good rows
        "2019-11-24 00:00:08,1,2.5,0,0.3333,f1,0.1",  # position 2.5 (was read as 2)
        "2019-11-24 00:00:09,1,2,2,0.3333,f1,0.1",  # click 2 (was read as a reward of 2)
        "not a time,1,2,0,0.3333,f1,0.1",  # timestamp (was: every row lost its timestamp)
        "2019-11-24 00:00:10,1,2,0,0.3333,,0.1",  # empty user feature (was: a category 'nan')
    ]
    loaded = read_log(write_obd(tmp_path / "obd", rows))
    report, log = loaded.report, loaded.bandit
    assert report.rows_read == 7 and report.rows_kept == 3
    assert dict(report.counts) == {"malformed": 4}
    assert [(e.location, e.detail) for e in report.examples] == [
        ("line 5", "position 2.5 is not a whole number >= 1"),
        ("line 6", "click 2 is not 0 or 1"),
        ("line 8", "user_feature_0 is empty"),
        ("line 7", "timestamp 'not a time' is not a date and time"),
    ]
    np.testing.assert_array_equal(log.position, [0, 1, 2])
    np.testing.assert_allclose(log.reward, [0, 1, 0])
    assert log.context.shape == (3, 1)  # f1, f2: no column for the excluded empty value
    np.testing.assert_array_equal(
        log.timestamp, np.array(["2019-11-24T00:00:01", "2019-11-24T00:00:02", "2019-11-24T00:00:03"], "datetime64[us]")
    )
    with pytest.raises(LogReadError, match="bad rows in strict mode"):
        read_log(tmp_path / "obd", strict=True)


def test_obd_wholly_empty_timestamp_column_means_no_timestamps(tmp_path):
    rows = [",".join(["", *row.split(",")[1:]]) for row in OBD_ROWS[:3]]
    loaded = read_log(write_obd(tmp_path / "obd", rows))
    assert loaded.report.rows_kept == 3 and loaded.bandit.timestamp is None


def test_obd_missing_columns(tmp_path):
    (tmp_path / "bad.csv").write_text("item_id,click\n0,1\n")
    with pytest.raises(LogReadError, match="lacks columns"):
        read_log(tmp_path / "bad.csv")


def test_dsjson_cb_and_bad_rows(tmp_path):
    lines = [
        cb_line(1, [0.1, 0.8, 0.1]),  # chosen index 1 (action id 2), clicked (cost -1)
        cb_line(0, [0.6, 0.2, 0.2], cost=0.0),
        json.dumps({"EventId": "ev-1", "RewardValue": 1.0}),  # outcome-only line, not a decision
        cb_line(0, [0.6, 0.2, 0.2], _label_probability=None),  # missing propensity
        cb_line(0, [0.6, 0.2, 0.2], _labelIndex=5, a=[6, 1, 2]),  # unknown action
        cb_line(0, [0.6, 0.2, 0.2], _label_probability=0.0, p=[0.0, 0.5, 0.5]),  # out of (0, 1]
        "{not json",
        cb_line(2, [0.2, 0.2, 0.6], _skipLearn=True),  # inactive event
    ]
    path = tmp_path / "log.json"
    path.write_text("\n".join(lines) + "\n")
    loaded = read_log(path)
    log, report = loaded.bandit, loaded.report
    assert report.rows_read == 6 and report.rows_kept == 2
    assert dict(report.counts) == {
        "missing_propensity": 1,
        "unknown_action": 1,
        "propensity_out_of_range": 1,
        "malformed": 1,
    }
    assert any("skipped 2 lines" in note for note in report.notes)
    assert {e.location for e in report.examples} == {
        "log.json line 4",
        "log.json line 5",
        "log.json line 6",
        "log.json line 7",
    }
    np.testing.assert_array_equal(log.action, [1, 0])
    np.testing.assert_allclose(log.pscore, [0.8, 0.6])
    np.testing.assert_allclose(log.reward, [1.0, 0.0])  # reward = -cost
    # p is in the order of a, the logging pmf is in the order of _multi.
    np.testing.assert_allclose(log.logging_dist, [[0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])
    assert log.item_ids == ("item0", "item1", "item2")
    assert log.timestamp is not None


def test_dsjson_ccb_slots(tmp_path):
    event = {
        "c": {
            "User": {"tier": "free"},
            "_multi": [{"i": {"id": f"x{j}"}} for j in range(4)],
            "_slots": [{"Slot": {"s": 1}}, {"Slot": {"s": 2}}],
        },
        "_outcomes": [
            {"_id": "slot-0", "_label_cost": -1.0, "_a": [2, 0, 1, 3], "_p": [0.7, 0.1, 0.1, 0.1]},
            {"_id": "slot-1", "_label_cost": 0.0, "_a": [1, 0, 3], "_p": [0.5, 0.25, 0.25]},
        ],
        "EventId": "ccb-1",
        "Timestamp": "2024-03-01T12:00:00Z",
    }
    bad = dict(event, EventId="ccb-2", _outcomes=[{"_id": "s", "_a": [1, 0], "_p": [0.5, 0.5]}])  # no cost
    path = tmp_path / "ccb.dsjson"
    path.write_text(json.dumps(event) + "\n" + json.dumps(bad) + "\n")
    loaded = read_log(path)
    log = loaded.bandit
    assert dict(loaded.report.counts) == {"missing_reward": 1}
    np.testing.assert_array_equal(log.action, [2, 1])
    np.testing.assert_array_equal(log.position, [0, 1])
    np.testing.assert_allclose(log.pscore, [0.7, 0.5])
    np.testing.assert_allclose(log.reward, [1.0, 0.0])
    np.testing.assert_array_equal(log.round_id, [0, 0])
    # Slot 1 could not show the slot-0 item (index 2).
    np.testing.assert_array_equal(log.candidate_mask, [[True] * 4, [True, True, False, True]])


def test_all_bad_rows_is_an_error(tmp_path):
    path = tmp_path / "log.json"
    path.write_text(cb_line(0, [0.6, 0.2, 0.2], _label_probability=None) + "\n")
    with pytest.raises(LogReadError, match="no usable rows: .*missing_propensity"):
        read_log(path)


@pytest.mark.parametrize(
    "name, fmt, message",
    [
        ("missing", "auto", "does not exist"),
        ("log.json", "xml", "unknown log format 'xml'"),
        ("empty-dir", "event-log", r"no usable rows: .*empty-dir \(event-log\): kept 0 of 0 rows"),
    ],
)
def test_unreadable_logs(tmp_path, name, fmt, message):
    (tmp_path / "log.json").write_text("")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(LogReadError, match=message):
        read_log(tmp_path / name, fmt)
