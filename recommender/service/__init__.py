"""The scoring service: /v1/score and /v1/reward over HTTP (Flask; served by gunicorn).

``flask`` is imported only inside this package. See docs/service.md for the contract and operations.

``create_app`` is imported on first use, not with the package: ``recommender serve`` imports
``recommender.service.gunicorn.server`` in gunicorn's master, which must not import ``prometheus_client`` before
it has set ``PROMETHEUS_MULTIPROC_DIR`` for the workers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from recommender.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
