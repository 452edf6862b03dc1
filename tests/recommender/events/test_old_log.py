"""A log written by an earlier writer (``data/log_v1``: candidate features as plain ``list<string>`` cells, written
before the dictionary-encoded layout) still reads, identically, beside files of the current layout."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.parquet as pq

from recommender.events.log import EVENT_LOG_SCHEMA, read_events, read_table, write_events
from recommender.records import Decision, JoinedEvent

OLD_LOG = Path(__file__).parent / "data" / "log_v1"
T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
CATALOG = [MappingProxyType({"brand": f"b{i % 4}", "price": i + 0.5, "tags": ["dry", f"t{i}"]}) for i in range(8)]


def old_log_events() -> list[JoinedEvent]:
    """The events ``data/log_v1`` holds (written by ``write_events`` of the earlier layout): shared and inline
    rows, one and two slots, slot names, experiments, a deferred and a degraded decision, no user, three hours."""
    events = []
    for i in range(12):
        k = 3 + i % 4
        rows = tuple(CATALOG[(i + j) % len(CATALOG)] for j in range(k - 1)) + ({"brand": "inline", "n": i},)
        slots = 2 if i % 3 == 0 else 1
        pmfs = ((0.7,) + (0.3 / (k - 1),) * (k - 1),)
        if slots == 2:
            pmfs += ((0.0, 0.5) + (0.5 / (k - 2),) * (k - 2),)
        d = Decision(
            event_id=f"old-{i}", timestamp=T0 + timedelta(minutes=13 * i), user_id=None if i == 5 else f"u{i % 3}",
            user_features={"segment": "vip", "embedding": [0.1 * i, 0.2]}, context={"device": "web", "hour": i},
            candidate_ids=tuple(f"item-{i}-{j}" for j in range(k)), candidate_features=rows, pmfs=pmfs,
            chosen=(0, 1)[:slots], ranking=tuple(range(k)), model_version=f"m{i % 2}",
            exploration={"exploration": "epsilon", "epsilon": 0.1}, degraded=i == 7, deferred=i == 8,
            experiment="exp" if i % 2 else None, arm=("a", "b")[i % 4 // 2] if i % 2 else None,
            slot_names=("hero", "side")[:slots] if i % 4 == 0 else (),
        )  # fmt: skip
        events.append(JoinedEvent(d, rewards=(float(i % 2),) * slots, reward_is_default=(i % 5 == 0,) * slots,
                                  joined_at=d.timestamp + timedelta(minutes=5)))  # fmt: skip
    return events


def write_old_log() -> None:
    """Regenerate ``data/log_v1`` (only ever with the earlier writer: the fixture stands for logs already on disk)."""
    shutil.rmtree(OLD_LOG, ignore_errors=True)
    write_events(old_log_events(), OLD_LOG)


def test_the_fixture_is_of_the_earlier_layout():
    files = sorted(OLD_LOG.rglob("*.parquet"))
    assert len(files) == 3
    assert all(pq.read_schema(f).field("candidate_features").type == pa.list_(pa.string()) for f in files)


def test_an_old_log_reads_identically():
    expected = sorted(old_log_events(), key=lambda e: (e.decision.timestamp, e.decision.event_id))
    assert read_events(OLD_LOG) == expected
    assert read_table(OLD_LOG).schema == EVENT_LOG_SCHEMA


def test_an_old_log_and_new_files_read_together(tmp_path):
    shutil.copytree(OLD_LOG, tmp_path, dirs_exist_ok=True)
    new = [JoinedEvent(Decision(**{**e.decision.__dict__, "event_id": f"new-{e.decision.event_id}"}), e.rewards,
                       e.reward_is_default, e.joined_at) for e in old_log_events()]  # fmt: skip
    write_events(new, tmp_path)
    expected = sorted(old_log_events() + new, key=lambda e: (e.decision.timestamp, e.decision.event_id))
    assert read_events(tmp_path) == expected
    table = read_table(tmp_path, columns=["event_id", "candidate_features"])
    assert table.column("candidate_features").to_pylist() == read_table(tmp_path).column(
        "candidate_features").to_pylist()  # fmt: skip
