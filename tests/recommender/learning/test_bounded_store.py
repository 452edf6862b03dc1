"""Many publishes: each version's metadata stays the same size (the checkpoint's marks replace the names of
files learned long enough ago) and the model store keeps only what trainer.retention says."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from recommender.events.log import write_events
from recommender.learning.trainer import Trainer
from recommender.policy.model_store import open_model_store
from recommender.settings.trainer import RetentionConfig
from tests.recommender.learning.test_trainer import config_for
from tests.recommender.sample_events import default_schema_events


def recent_events(n: int, seed: int) -> list:
    """Events decided now (the joiner's partition of the current hour), with ids unique to ``seed``."""
    now = datetime.now(UTC)
    return [replace(e, decision=replace(e.decision, event_id=f"s{seed}-{e.decision.event_id}", timestamp=now),
                    joined_at=now) for e in default_schema_events(n, seed=seed)]  # fmt: skip


def test_metadata_stays_bounded_over_many_publishes_and_the_store_is_pruned(tmp_path):
    retention = RetentionConfig(keep_last=3, keep_previous_currents=2)
    config = config_for(tmp_path, mark_after_seconds=10, retention=retention)
    log_dir = Path(config.join.event_log_dir)
    store = open_model_store(config)

    def clock() -> float:
        # As if every file written so far had been named mark_after_seconds ago (minus a margin: a file
        # written after this cycle must sort above the mark, as it does when the clocks agree).
        return time.time() + config.trainer.mark_after_seconds - 0.05

    trainer = Trainer(store, log_dir, lambda: config, clock=clock)
    sizes = []
    for i in range(40):
        write_events(recent_events(10, seed=i), log_dir)
        version = trainer.run_once(publish=True).published
        sizes.append((version.path / "metadata.json").stat().st_size)
        assert len(store.versions()) <= retention.keep_last + retention.keep_previous_currents
    trainer.close()
    assert version.event_range.count == 400
    assert max(sizes) - min(sizes) < 300, sizes  # a file's name (~50 bytes) each publish would be 2 KB
    assert len(store.versions()) == 3 and store.current_version() == version.id
    assert store.history()[-3:] == [v.id for v in store.versions()]

    # Exactly once still holds: a restarted trainer learns nothing again, and learns what is new.
    again = Trainer(store, log_dir, lambda: config, clock=clock)
    assert again.run_once(publish=True).learned == 0
    write_events(recent_events(10, seed=99), log_dir)
    assert again.run_once(publish=True).learned == 10
    again.close()
