"""A decision's slot names (Personalizer's multi-slot slot ids): checked by the record, carried by the bus
payload and the event log, and absent from older payloads and logs, which read as ()."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from recommender.errors import RecordError
from recommender.events.codec import decode_decision, digest_of, encode_decision, from_json, row_text
from recommender.events.log import read_events, write_events
from recommender.records import Decision, JoinedEvent

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
ROWS = ({"brand": "x"}, {"brand": "y"}, {"brand": "z"})


def decision(event_id: str = "e1", **changes) -> Decision:
    base = dict(event_id=event_id, timestamp=T0, user_id=None, user_features={}, context={"device": "web"},
                candidate_ids=("a", "b", "c"), candidate_features=ROWS, pmfs=((0.5, 0.25, 0.25), (0.0, 0.5, 0.5)),
                chosen=(0, 1), ranking=(0, 1, 2), model_version="m1", exploration={})  # fmt: skip
    base.update(changes)
    return Decision(**base)


@pytest.mark.parametrize("names", [("Main",), ("Main", "Main"), ("Main", ""), ("Main", 3)])
def test_slot_names_are_one_distinct_non_empty_string_per_slot(names):
    with pytest.raises(RecordError, match="slot_names must be 2 distinct non-empty strings, one per slot"):
        decision(slot_names=names)


def test_slot_names_round_trip_through_the_bus_payload_and_older_payloads_read_as_none_named():
    named = decision(slot_names=("Main", "Side"))
    digests = [digest_of(row_text(row)) for row in ROWS]
    rows = dict(zip(digests, ROWS, strict=True))
    assert decode_decision(from_json(encode_decision(named, digests)), rows).slot_names == ("Main", "Side")
    older = json.loads(encode_decision(named, digests))
    del older["slot_names"]
    assert decode_decision(older, rows).slot_names == ()


def test_slot_names_are_logged_and_older_logs_read_as_none_named(tmp_path):
    events = [JoinedEvent(decision("named", slot_names=("Main", "Side")), (1.0, 0.0), (False, True), T0),
              JoinedEvent(decision("plain"), (1.0, 0.0), (False, True), T0)]  # fmt: skip
    [path] = write_events(events, tmp_path / "new")
    assert pq.read_table(path).column("slot_names").to_pylist() == [["Main", "Side"], None]
    assert {e.decision.event_id: e.decision.slot_names for e in read_events(tmp_path / "new")} == {
        "named": ("Main", "Side"), "plain": ()}  # fmt: skip
    # A file written before the column existed.
    old = tmp_path / "old" / path.relative_to(tmp_path / "new")
    old.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(path).drop_columns(["slot_names"]), old)
    assert [e.decision.slot_names for e in read_events(tmp_path / "old")] == [(), ()]
