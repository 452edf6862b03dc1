"""A synthetic storefront that drives the real scoring service over HTTP, with a known click model.

Users and items are the sample catalog's (``features.sample_catalog``, the catalog the embedded service
loads): users and items share an 8-dimensional embedding space, and users have preferred categories. A
shopper ``u`` clicks item ``a`` shown at position ``k`` (0 = the top) with probability

    p(u, a, k) = beta_k * sigmoid(base_logit + affinity * <e_u, e_a> + category_bonus * [category(a) in pref(u)])

with position bias beta_k (beta_0 = 1, decreasing). The service's chosen item is shown at the top (slot s at
position s in multi-slot pages), so its reward is a click drawn from p(u, a, 0).

Per event the storefront draws a user and ``candidates`` distinct items from the first ``n_items`` of the
catalog (seeded), asks ``POST /v1/score`` (event id ``<prefix>-<i>``), draws the click, and reports it with
``POST /v1/reward`` (no click: no call, the service's default reward 0 applies after its wait time).

Ground truth per context, exact: the **uniform** policy's click rate is the mean of p(u, a, 0) over the
candidates, the **oracle**'s is their maximum, and the **served** policy's is the sum of p(u, a, 0) weighted
by the probabilities the service answered with. ``evaluate`` measures them on held-out contexts with
``defer_activation`` requests, which the service never activates: they are not logged and nothing learns
from them.

This module only talks HTTP (http.client) to a service on the loopback interface; it never imports the
service.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from features.sample_catalog import items_frame, users_frame

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_EVENTS = 1_000_000


class StorefrontError(RuntimeError):
    """The storefront cannot run: a bad setting, a non-loopback URL, or a service answering wrongly."""


@dataclass(frozen=True)
class ClickModel:
    """The known click model (see the module docstring). Defaults give click rates of about 0.18 for a
    uniform choice among 10 random items and 0.57 for the best of them."""

    base_logit: float = -2.5
    affinity: float = 3.0
    category_bonus: float = 2.5
    position_bias: tuple[float, ...] = (1.0, 0.7, 0.5, 0.4, 0.3)

    def beta(self, position: int) -> float:
        bias = self.position_bias
        return bias[position] if position < len(bias) else bias[-1]


@dataclass(frozen=True, eq=False)
class Catalog:
    """The sample catalog's users and first ``n_items`` items, as arrays for the click model."""

    n_items: int = 100
    user_ids: tuple[str, ...] = field(init=False)
    item_ids: tuple[str, ...] = field(init=False)
    user_embeddings: np.ndarray = field(init=False, repr=False)
    item_embeddings: np.ndarray = field(init=False, repr=False)
    # [u, a] = 1 when item a's category is one of user u's preferred categories
    preferred: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        items = items_frame().iloc[: self.n_items]
        users = users_frame()
        if len(items) < self.n_items or self.n_items < 2:
            raise StorefrontError(f"n_items must be between 2 and {len(items_frame())}, got {self.n_items}")
        categories = list(items["category"])
        preferred = np.array([[c in set(p) for c in categories] for p in users["preferred_categories"]], dtype=float)
        values = {
            "user_ids": tuple(users["user_id"]),
            "item_ids": tuple(items["item_id"]),
            "user_embeddings": np.stack(users["embedding"].to_numpy()),
            "item_embeddings": np.stack(items["embedding"].to_numpy()),
            "preferred": preferred,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def click_prob(
        self, model: ClickModel, user: int, items: Sequence[int] | np.ndarray, position: int = 0
    ) -> np.ndarray:
        """p(user, a, position) for each item index a (see the module docstring)."""
        items = np.asarray(items)
        logit = (
            model.base_logit
            + model.affinity * self.item_embeddings[items] @ self.user_embeddings[user]
            + model.category_bonus * self.preferred[user, items]
        )
        return model.beta(position) / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class EventOutcome:
    """One storefront event: the model version that decided, the click, and the exact click rates of the
    served item, a uniform choice and the oracle's choice in that context."""

    index: int
    model_version: str
    clicked: bool
    p_served: float  # p(u, served item, 0): the expected reward of what was shown
    p_uniform: float
    p_oracle: float
    elapsed: float  # seconds since the run started


@dataclass(frozen=True)
class ClickRates:
    """Exact expected click rates on a set of contexts, and how far the served policy is from uniform to
    the oracle (0 = uniform, 1 = oracle)."""

    contexts: int
    uniform: float
    oracle: float
    served: float

    @property
    def fraction(self) -> float:
        return (self.served - self.uniform) / (self.oracle - self.uniform)


class Storefront:
    """Drives one scoring service at ``base_url`` (loopback only) with shoppers of a known click model."""

    def __init__(
        self,
        base_url: str,
        *,
        catalog: Catalog | None = None,
        click_model: ClickModel | None = None,
        candidates: int = 10,
        seed: int = 0,
        event_prefix: str = "sf",
        api_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.port is None:
            raise StorefrontError(f"the storefront drives a service on the loopback interface only, got {base_url!r}")
        self.catalog = catalog or Catalog()
        if not 2 <= candidates <= self.catalog.n_items:
            raise StorefrontError(f"candidates must be between 2 and {self.catalog.n_items}, got {candidates}")
        self.host, self.port = parts.hostname, parts.port
        self.click_model = click_model or ClickModel()
        self.candidates = candidates
        self.seed = seed
        self.event_prefix = event_prefix
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self._rng = np.random.default_rng(seed)
        self._next = 0
        self._conn: http.client.HTTPConnection | None = None

    # ----- HTTP -----------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", path, body=payload, headers=self.headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ----- shoppers -------------------------------------------------------------------------------------
    def _context(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        user = int(rng.integers(len(self.catalog.user_ids)))
        items = rng.choice(self.catalog.n_items, size=self.candidates, replace=False)
        return user, items

    def _score(self, event_id: str, user: int, items: np.ndarray, *, deferred: bool = False) -> dict:
        body = {
            "event_id": event_id,
            "user_id": self.catalog.user_ids[user],
            "candidates": [self.catalog.item_ids[a] for a in items],
        }
        if deferred:
            body["defer_activation"] = True
        status, raw = self._post("/v1/score", body)
        if status != 200:
            raise StorefrontError(f"/v1/score answered {status}: {raw[:200]!r}")
        return json.loads(raw)

    def run(
        self,
        n_events: int,
        *,
        max_seconds: float = 600.0,
        on_event: Callable[[EventOutcome], None] | None = None,
    ) -> list[EventOutcome]:
        """Send ``n_events`` shoppers (at most MAX_EVENTS, stopping after ``max_seconds``); returns what happened.

        Event ids continue across calls (``<prefix>-0``, ``<prefix>-1``, ...), and so does the seeded stream
        of users, candidates and clicks.
        """
        if not 1 <= n_events <= MAX_EVENTS:
            raise StorefrontError(f"n_events must be between 1 and {MAX_EVENTS}, got {n_events}")
        outcomes = []
        started = time.monotonic()
        index_of = {item_id: i for i, item_id in enumerate(self.catalog.item_ids)}
        for _ in range(n_events):
            if time.monotonic() - started > max_seconds:
                break
            index = self._next
            self._next += 1
            user, items = self._context(self._rng)
            answer = self._score(f"{self.event_prefix}-{index}", user, items)
            probs = self.catalog.click_prob(self.click_model, user, items)
            shown = index_of[answer["reward_action_id"]]
            p_served = float(self.catalog.click_prob(self.click_model, user, [shown])[0])
            clicked = bool(self._rng.random() < p_served)
            if clicked:
                status, raw = self._post("/v1/reward", {"event_id": answer["event_id"], "reward": 1.0})
                if status != 204:
                    raise StorefrontError(f"/v1/reward answered {status}: {raw[:200]!r}")
            outcome = EventOutcome(
                index, answer["model_version"], clicked, p_served, float(probs.mean()), float(probs.max()),
                time.monotonic() - started,
            )  # fmt: skip
            outcomes.append(outcome)
            if on_event is not None:
                on_event(outcome)
        return outcomes

    def evaluate(self, n_contexts: int = 500, *, seed: int = 12345) -> ClickRates:
        """Exact click rates of uniform, oracle and the served policy on ``n_contexts`` held-out contexts
        (their own seed), asked with ``defer_activation`` so that nothing is logged or learned from them."""
        if not 1 <= n_contexts <= 100_000:
            raise StorefrontError(f"n_contexts must be between 1 and 100000, got {n_contexts}")
        rng = np.random.default_rng(seed)
        uniform = oracle = served = 0.0
        for i in range(n_contexts):
            user, items = self._context(rng)
            answer = self._score(f"{self.event_prefix}-eval-{seed}-{i}-{self._next}", user, items, deferred=True)
            ids = [self.catalog.item_ids[a] for a in items]
            probs = dict(zip(ids, self.catalog.click_prob(self.click_model, user, items).tolist(), strict=True))
            uniform += float(np.mean(list(probs.values())))
            oracle += max(probs.values())
            served += math.fsum(entry["probability"] * probs[entry["id"]] for entry in answer["ranking"])
        return ClickRates(n_contexts, uniform / n_contexts, oracle / n_contexts, served / n_contexts)
