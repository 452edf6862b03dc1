"""Deterministic sampling from a pmf, seeded by the event id.

A decision's chosen item is drawn from the exact pmf that is logged with it, and the same event id always
gives the same choice (a retried request shows the same item; a replay reproduces the log). The event id
is hashed (BLAKE2b, 64 bits) to a uniform ``u`` in [0, 1) with 53 bits of resolution, and the item is
found by inverting the cumulative distribution: item ``i`` is chosen iff ``cdf[i-1] <= u < cdf[i]``, so it
is chosen with probability exactly ``pmf[i]`` (up to the 2^-53 grid), and an item with probability 0
(an empty interval) never is.

``ccb_seed`` derives the per-slot seeds that VW's own multi-slot sampler uses (see vw_adapter).
"""

from __future__ import annotations

import hashlib

import numpy as np

_TWO_TO_MINUS_53 = 2.0**-53


def uniform_from_event_id(event_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) determined by ``event_id`` (and ``salt``, for independent draws)."""
    digest = hashlib.blake2b(f"{salt}\x1f{event_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) * _TWO_TO_MINUS_53


def sample_index(pmf: np.ndarray, u: float) -> int:
    """The index chosen by inverting the CDF of ``pmf`` (shape (K,), non-negative, sum 1) at ``u``.

    Never returns an index with probability 0.
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), got {u}")
    cdf = np.cumsum(pmf, dtype=np.float64)
    index = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    if index >= len(pmf) or pmf[index] <= 0.0:
        # Only reachable by float rounding at the very top of the CDF: take the last positive entry.
        index = int(np.flatnonzero(pmf > 0.0)[-1])
    return index


def sample_from_event_id(pmf: np.ndarray, event_id: str) -> int:
    """``sample_index(pmf, uniform_from_event_id(event_id))``."""
    return sample_index(pmf, uniform_from_event_id(event_id))


def ccb_seed(event_id: str, slot: int) -> str:
    """A tag-safe seed string for VW's sampling of ``slot`` in the decision ``event_id``."""
    digest = hashlib.blake2b(f"ccb\x1f{event_id}".encode(), digest_size=8).hexdigest()
    return f"{digest}-{slot}"


def ranking_from(pmf: np.ndarray, first: tuple[int, ...]) -> tuple[int, ...]:
    """The storefront order: the items in ``first`` (the chosen ones, by slot), then the others by
    descending probability, ties kept in candidate order (the caller's own relevance order)."""
    placed = set(first)
    rest = [i for i in np.argsort(-pmf, kind="stable").tolist() if i not in placed]
    return tuple(first) + tuple(rest)
