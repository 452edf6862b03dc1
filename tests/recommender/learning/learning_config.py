"""The configuration of the learning-loop tests: the real service (tests.recommender.served_app) with the
shipped policy section, on a faster clock (short reward window, a model version every second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recommender.settings.loading import DEFAULT_CONFIG_PATH
from tests.recommender.served_app import deep_update, service_document


def learning_document(tmp_path: Path, redis_url: str | None = None, **changes: Any) -> dict[str, Any]:
    """configs/default.yaml for a learning test: its policy section as shipped, a 0.3 s reward window and a
    model version every second (these tests check the loop's mechanics, not how much it learns: that is
    test_learning_loop.py on the shipped clock)."""
    document = service_document(
        tmp_path,
        redis_url,
        join={"reward_wait_time": 0.3, "flush_seconds": 0.1},
        trainer={"model_update_interval": 1.0, "poll_seconds": 0.2},
    )
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["policy"]
    document["policy"]["exploration"] = shipped["exploration"]  # replaced whole: other algorithms' keys go
    document["policy"]["learning"] = shipped["learning"]
    return deep_update(document, changes)
