"""The whole loop on embedded defaults, over real HTTP: storefront -> /v1/score -> clicks -> /v1/reward ->
joiner -> event log -> in-process trainer -> model versions -> the service swaps them -> better decisions.

Statistics against exact truth (simulators.storefront's known click model), with fixed seeds."""

from __future__ import annotations

import time

from recommender.learning.trainer import Checkpoint
from recommender.policy.model_store import ModelStore
from simulators.storefront import Storefront
from tests.recommender.learning.learning_config import learning_document
from tests.recommender.served_app import wait_for

N_EVENTS = 15_000  # about 45 s over HTTP on 2 cores


def test_served_policy_gets_80_percent_of_the_way_from_uniform_to_oracle(serve, tmp_path):
    served = serve(learning_document(tmp_path))
    runtime = served.runtime
    assert runtime.trainer is not None and runtime.trainer.running
    storefront = Storefront(served.url, seed=7)
    before = storefront.evaluate(800)
    assert abs(before.fraction) < 0.15, before  # a fresh model is uniform

    started = time.monotonic()
    outcomes = storefront.run(N_EVENTS, max_seconds=150)
    assert len(outcomes) == N_EVENTS, f"only {len(outcomes)} events in {time.monotonic() - started:.0f}s"
    store = ModelStore(served.config.policy.model_dir)

    def all_learned_and_served() -> bool:
        current = store.current_version()
        if current is None or runtime.snapshot.model_version != current:
            return False
        learned = store.version(current).event_range
        return learned is not None and learned.count >= N_EVENTS

    # Every joined event learned and published, and the service serving that version.
    wait_for(all_learned_and_served, timeout=20)
    after = storefront.evaluate(800)
    storefront.close()
    print(f"uniform {after.uniform:.4f} oracle {after.oracle:.4f} served {after.served:.4f} "
          f"fraction {after.fraction:.3f} (before {before.fraction:.3f}); {N_EVENTS} events in "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    assert after.fraction >= 0.8, after

    versions = {o.model_version for o in outcomes}
    assert len(versions) >= 5  # the service swapped model versions while running
    current = store.version(store.current_version())
    assert current.event_range is not None and current.event_range.count == N_EVENTS  # each event once
    checkpoint = Checkpoint.from_dict(current.checkpoint).for_log(served.config.join.event_log_dir)
    assert checkpoint.file_count > 0
