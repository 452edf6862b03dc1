"""API keys for the endpoints that change state (rewards, activation, admin; /v1/score optionally).

A client sends ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or ``Ocp-Apim-Subscription-Key: <key>``
(the header Azure Personalizer's clients send their subscription key in). Keys come from
``service.api_keys`` / ``RECOMMENDER_API_KEYS``; they are compared in constant time (against every
configured key, so timing does not tell which one nearly matched) and never logged or echoed.
With no key configured the guarded endpoints are open (a warning is logged at start).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from flask import Request

from recommender.service.errors import ApiError

SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"


def presented_key(request: Request) -> bytes | None:
    """The key a request carries, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip().encode("utf-8", "surrogateescape")
    key = request.headers.get("X-API-Key") or request.headers.get(SUBSCRIPTION_KEY_HEADER)
    return key.encode("utf-8", "surrogateescape") if key else None


def key_is_valid(keys: Sequence[bytes], presented: bytes | None) -> bool:
    """Constant-time membership: every configured key is compared, whatever the outcome."""
    if presented is None:
        return False
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(key, presented)
    return valid


def require_key(keys: Sequence[bytes], request: Request) -> None:
    """Raise a 401 ApiError unless the request carries one of ``keys`` (no keys: open)."""
    if not keys:
        return
    if not key_is_valid(keys, presented_key(request)):
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
            field="Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="recommender"'},
        )
