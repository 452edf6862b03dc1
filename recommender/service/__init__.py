"""The scoring service: /v1/score and /v1/reward over HTTP (Flask; served by gunicorn).

``flask`` is imported only inside this package. See docs/service.md for the contract and operations.

``create_app`` is imported on first use, not with the package, because gunicorn's master imports this
package (``recommender.service.gunicorn``: the server and the worker class) and must not import
``prometheus_client`` before it has set ``PROMETHEUS_MULTIPROC_DIR`` for the workers: prometheus_client
chooses its value store at import. Measured with a plain ``from recommender.service.app import create_app``
here: importing the server then loads prometheus_client, Flask and VW in the master (967 modules instead of
751, 0.78 s instead of 0.60 s), and ``/metrics`` of a two-worker service no longer sums the workers' counts
(``tests/recommender/service/test_gunicorn.py`` fails).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the package exports, for readers and type checkers; loaded by __getattr__
    from recommender.service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from recommender.service.app import create_app  # see the module docstring

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
