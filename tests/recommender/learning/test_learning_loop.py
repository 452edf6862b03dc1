"""The whole loop with the shipped defaults, over real HTTP: storefront -> /v1/score -> clicks -> /v1/reward ->
joiner -> event log -> in-process trainer -> model versions -> the service swaps them -> better decisions.

configs/default.yaml as shipped (only the model store and the event log moved into the test's directory),
driven like ``make run``'s service is in the learning benchmark (benchmarks/bench_learning.py): open loop at
100 requests/s, at a smaller scale (3,000 requests instead of 16,000). Statistics against exact truth
(simulators.storefront's known click model), with fixed seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recommender.learning.trainer import Checkpoint
from recommender.policy.model_store import ModelStore
from recommender.settings.loading import DEFAULT_CONFIG_PATH
from simulators.storefront import tail_rates
from simulators.storefronts import SHAPES

N_EVENTS = 3_000  # 30 s at 100 requests/s
RATE = 100.0
LAST = 1_000
# Seen with the shipped defaults: 0.28-0.31. A learner that never updates stays at 0 (uniform), one that
# learns with the reward's sign flipped goes below 0; one whose updates are lost for the first minute (the
# former 60 s window with `sum`) stays at 0 too.
MIN_FRACTION = 0.15


def shipped_document(tmp_path: Path) -> dict[str, Any]:
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["policy"]["model_dir"] = str(tmp_path / "models")
    document["join"]["event_log_dir"] = str(tmp_path / "events")
    return document


def test_the_shipped_defaults_learn_in_the_first_30_seconds_at_100_requests_per_second(serve, tmp_path):
    served = serve(shipped_document(tmp_path))
    runtime = served.runtime
    assert runtime.trainer is not None and runtime.trainer.running
    storefront = SHAPES["affinity20"].storefront(served.url, seed=7, event_prefix="ci")
    before = storefront.evaluate(300)
    assert abs(before.fraction) < 0.15, before  # a fresh model is uniform

    outcomes = storefront.run(N_EVENTS, rate=RATE, max_seconds=N_EVENTS / RATE + 30)
    storefront.close()
    assert len(outcomes) == N_EVENTS
    achieved = N_EVENTS / outcomes[-1].elapsed
    assert achieved >= 0.9 * RATE, f"the storefront could not keep {RATE}/s: {achieved:.1f}/s"
    tail = tail_rates(outcomes, LAST)
    print(f"last {LAST}: uniform {tail.uniform:.4f} oracle {tail.oracle:.4f} served {tail.served:.4f} "
          f"fraction {tail.fraction:.3f}; {achieved:.1f} requests/s")  # fmt: skip
    assert tail.fraction >= MIN_FRACTION, tail
    assert len({o.model_version for o in outcomes}) >= 3  # the service swapped model versions while running

    # Stopping closes the open windows, learns them and publishes: every decision learned exactly once.
    served.stop()
    store = ModelStore(served.config.policy.model_dir)
    current = store.version(store.current_version())
    assert current.event_range is not None and current.event_range.count == N_EVENTS
    checkpoint = Checkpoint.from_dict(current.checkpoint).for_log(served.config.join.event_log_dir)
    assert checkpoint.file_count > 0
