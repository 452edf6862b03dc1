"""Records validate when built; the event log round-trips them under its one schema."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.encoding import ROW_ENCODINGS, DecodeCache, encode_row
from recommender.errors import EventLogError, RecordError
from recommender.events.codec import row_text
from recommender.events.log import (
    EVENT_LOG_SCHEMA,
    column_values,
    event_from_row,
    events_to_table,
    read_events,
    read_table,
    table_to_events,
    write_events,
)
from recommender.records import Decision, JoinedEvent, Reward

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def decision(**changes) -> Decision:
    base = dict(
        event_id="e1",
        timestamp=T0,
        user_id="u1",
        user_features={"segment": "vip", "embedding": [0.1, 0.2]},
        context={"device": "mobile", "hour": 21},
        candidate_ids=("a", "b", "c"),
        candidate_features=({"brand": "x"}, {"brand": "y"}, {"brand": "z", "tags": ["dry"]}),
        pmfs=((0.8, 0.1, 0.1),),
        chosen=(0,),
        ranking=(0, 1, 2),
        model_version="m1",
        exploration={"exploration": "epsilon", "epsilon": 0.2},
    )
    base.update(changes)
    return Decision(**base)


def test_decision_shortcuts():
    d = decision(chosen=(1,), ranking=(1, 0, 2), pmfs=((0.1, 0.8, 0.1),))
    assert d.chosen_id == "b" and d.probability == 0.8 and d.num_slots == 1 and d.pmf == (0.1, 0.8, 0.1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_id": ""}, "event_id must be a non-empty string"),
        ({"event_id": "x" * 129}, "at most 128 characters"),
        ({"timestamp": datetime(2026, 1, 1)}, "timestamp must be a timezone-aware UTC datetime"),
        ({"timestamp": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))}, "timezone-aware UTC"),
        ({"candidate_ids": ()}, "candidate_ids must not be empty"),
        ({"candidate_ids": ("a", "a", "c")}, "candidate_ids must be unique"),
        ({"candidate_features": ({},)}, "candidate_features has 1 rows for 3 candidates"),
        ({"pmfs": ((0.5, 0.5),)}, r"pmfs\[0\] has 2 entries for 3 candidates"),
        ({"pmfs": ((0.5, 0.4, 0.4),)}, r"pmfs\[0\] sums to"),
        ({"pmfs": ((1.2, -0.1, -0.1),)}, r"pmfs\[0\] has a probability outside"),
        ({"pmfs": ((0.0, 0.5, 0.5),)}, r"chosen\[0\]=0 is not a candidate with positive probability"),
        ({"pmfs": ((0.8, 0.1, 0.1), (0.5, 0.25, 0.25)), "chosen": (0, 0)}, "an item is chosen for two slots"),
        ({"pmfs": ((0.8, 0.1, 0.1), (0.0, 0.5, 0.5))}, "need one pmf per slot"),
        ({"ranking": (1, 0, 2)}, "ranking must start with the chosen item"),
        ({"ranking": (0, 0, 2)}, "ranking must list distinct candidate indices"),
    ],
)
def test_invalid_decisions(changes, message):
    with pytest.raises(RecordError, match=message):
        decision(**changes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": float("nan")}, "reward value must be a finite number"),
        ({"value": "1"}, "reward value must be a finite number"),
        ({"slot": -1}, "slot must be a non-negative integer"),
        ({"received_at": datetime(2026, 1, 1)}, "received_at must be a timezone-aware UTC"),
    ],
)
def test_invalid_rewards(kwargs, message):
    with pytest.raises(RecordError, match=message):
        Reward(**{"event_id": "e1", "value": 1.0, "received_at": T0, **kwargs})


def test_joined_event_needs_one_reward_per_slot():
    with pytest.raises(RecordError, match="one reward and one default flag per slot"):
        JoinedEvent(decision(), rewards=(1.0, 0.0), reward_is_default=(False, False), joined_at=T0)


def joined(i: int, hour: int = 9, slots: int = 1) -> JoinedEvent:
    if slots == 1:
        d = decision(event_id=f"e{i}", timestamp=T0.replace(hour=hour) + timedelta(seconds=i))
    else:
        d = decision(
            event_id=f"e{i}", timestamp=T0.replace(hour=hour) + timedelta(seconds=i),
            pmfs=((0.8, 0.1, 0.1), (0.0, 0.5, 0.5)), chosen=(0, 2),
        )
    return JoinedEvent(d, rewards=(float(i % 2),) * slots, reward_is_default=(i % 3 == 0,) * slots,
                       joined_at=d.timestamp + timedelta(minutes=5))


def test_event_log_round_trip_partitioned_by_date_and_hour(tmp_path):
    events = [joined(i, hour=9 + i % 2) for i in range(10)] + [joined(99, slots=2)]
    files = write_events(events, tmp_path)
    assert sorted(p.parent.name for p in files) == ["hour=09", "hour=10"]
    assert all(p.parent.parent.name == "date=2026-11-24" for p in files)
    back = read_events(tmp_path)
    in_time_order = sorted(events, key=lambda e: e.decision.timestamp)
    assert [e.decision.event_id for e in back] == [e.decision.event_id for e in in_time_order]
    by_id = {e.decision.event_id: e for e in back}
    for original in events:
        assert by_id[original.decision.event_id] == original
    assert read_table(files[0]).schema == EVENT_LOG_SCHEMA


def test_numpy_feature_values_are_logged_as_lists(tmp_path):
    d = decision(user_features={"embedding": np.array([0.5, 0.25])}, context={"n": np.int64(3)})
    write_events([JoinedEvent(d, (1.0,), (False,), T0)], tmp_path)
    back = read_events(tmp_path)[0].decision
    assert back.user_features == {"embedding": [0.5, 0.25]} and back.context == {"n": 3}


def test_reading_a_missing_or_foreign_log_is_an_event_log_error(tmp_path):
    with pytest.raises(EventLogError, match="does not exist"):
        read_table(tmp_path / "nope")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")
    with pytest.raises(EventLogError, match=r"lacks columns \['event_id'"):
        read_table(tmp_path / "foreign.parquet")


def test_a_corrupt_row_is_reported_with_its_event_id(tmp_path):
    good = joined(1)
    write_events([good], tmp_path)
    table = read_table(tmp_path)
    broken = table.set_column(table.schema.get_field_index("pmfs"), EVENT_LOG_SCHEMA.field("pmfs"),
                              pa.array([[[0.5, 0.2, 0.1]]], type=EVENT_LOG_SCHEMA.field("pmfs").type))
    pq.write_table(broken, tmp_path / "broken.parquet")
    with pytest.raises(EventLogError, match=r"row 0 \(event_id='e1'\) is invalid: pmfs\[0\] sums to"):
        read_events(tmp_path / "broken.parquet")


def test_a_log_directory_without_files_reads_as_empty(tmp_path):
    (tmp_path / "_staging").mkdir()
    (tmp_path / "_staging" / "batch.parquet").write_bytes(b"not yet renamed into place")
    table = read_table(tmp_path)
    assert table.num_rows == 0 and table.schema == EVENT_LOG_SCHEMA
    assert read_events(tmp_path) == []


def test_empty_write_writes_nothing(tmp_path):
    assert write_events([], tmp_path) == []
    assert replace(joined(1)).reward == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.0 - 1e-9])
def test_pmf_entries_that_are_not_probabilities_are_refused(bad):
    with pytest.raises(RecordError, match=r"pmfs\[0\] has a probability outside"):
        decision(pmfs=((1.0, bad, 0.0),))


def test_candidate_features_are_logged_per_cell_whether_rows_are_shared_or_not(tmp_path):
    shared = [MappingProxyType({"brand": f"b{i}", "price": i + 0.5}) for i in range(3)]
    events = []
    for i in range(5):
        rows = (shared[i % 3], {"brand": "inline", "n": i}, shared[(i + 1) % 3])  # shared objects and fresh dicts
        d = decision(event_id=f"e{i}", candidate_features=rows)
        events.append(JoinedEvent(d, (1.0,), (False,), T0))
    column = events_to_table(events).column("candidate_features").to_pylist()
    assert column == [[row_text(row) for row in e.decision.candidate_features] for e in events]
    write_events(events, tmp_path)
    by_id = {e.decision.event_id: e for e in read_events(tmp_path)}
    assert all(by_id[e.decision.event_id].decision.candidate_features == e.decision.candidate_features for e in events)
    assert events_to_table([]).num_rows == 0


def test_columns_read_a_column_at_a_time_equal_arrows_own_values_in_slices_and_batches(tmp_path):
    # column_values is the fast path of every log read; Arrow's to_pylist is the reference, on whole columns,
    # on slices (offsets into an unsliced child) and across record batches with different dictionaries.
    events = [joined(i, hour=9 + i % 2) for i in range(40)] + [joined(99, slots=2)]
    write_events(events[:20], tmp_path / "a")
    write_events(events[20:], tmp_path / "b")
    table = pa.concat_tables([read_table(tmp_path / "a"), read_table(tmp_path / "b")])
    assert len(table.to_batches()) >= 2
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        for piece in (column, column.slice(3, 25), column.slice(40, 1)):
            expected = piece.to_pylist()
            if name in ("candidate_ids", "candidate_features"):
                expected = [tuple(cell) for cell in expected]
            got = column_values(piece)
            assert got == expected, name
            if name in ("timestamp", "joined_at"):
                assert all(value.utcoffset() == timedelta(0) for value in got)
    by_row = [event_from_row(row) for row in table.to_pylist()]
    assert list(table_to_events(table)) == by_row
    assert list(table_to_events(table.slice(7, 20))) == by_row[7:27]


def test_logging_a_decision_does_not_keep_its_user_row_alive(tmp_path):
    # The user group is never cached: every read is a new read-only row, seen once. Recording each one's
    # text by identity (as recurring rows are) kept up to 100,000 dead rows alive in a serving worker.
    uncached = DecodeCache(0)
    users = [uncached.decode(encode_row({"segment": f"s{i}", "age": 30 + i})) for i in range(5)]
    events = [JoinedEvent(decision(event_id=f"u{i}", user_features=row), (1.0,), (False,), T0)
              for i, row in enumerate(users)]  # fmt: skip
    write_events(events, tmp_path)
    assert not any(id(row) in ROW_ENCODINGS for row in users)
    back = {e.decision.event_id: e.decision.user_features for e in read_events(tmp_path)}
    assert back == {f"u{i}": {"segment": f"s{i}", "age": 30 + i} for i in range(5)}
