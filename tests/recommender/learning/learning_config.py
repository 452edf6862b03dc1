"""The configuration of the learning-loop tests: the real service (tests.recommender.served_app) configured
for fast learning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.recommender.served_app import deep_update, service_document

# A policy that learns the storefront's click model quickly (docs/learning.md, "The demo"): SquareCB
# explores in proportion to the estimated gaps, and a higher learning rate than the default's 0.5.
FAST_EXPLORATION = {"algorithm": "squarecb", "gamma_scale": 20}


def learning_document(tmp_path: Path, redis_url: str | None = None, **changes: Any) -> dict[str, Any]:
    """configs/default.yaml for a learning test: short reward window, a model version every second."""
    document = service_document(
        tmp_path,
        redis_url,
        policy={"learning": {"learning_rate": 1.0}},
        join={"reward_wait_time": 0.3, "flush_seconds": 0.1},
        trainer={"model_update_interval": 1.0, "poll_seconds": 0.2},
    )
    document["policy"]["exploration"] = dict(FAST_EXPLORATION)  # replaced whole: other algorithms' keys go
    return deep_update(document, changes)

