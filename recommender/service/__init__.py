"""The scoring service: /v1/score and /v1/reward over HTTP (Flask; served by gunicorn).

``flask`` is imported only inside this package. See docs/service.md for the contract and operations.
"""

from recommender.service.app import create_app

__all__ = ["create_app"]
