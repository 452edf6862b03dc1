"""A synthetic storefront that drives the real scoring service over HTTP, with a known click model.

Users and items are the sample catalog's (``features.sample_catalog``, the catalog the embedded service
loads): users and items share an 8-dimensional embedding space, and users have preferred categories. A
shopper ``u`` clicks item ``a`` shown at position ``k`` (0 = the top) with probability

    p(u, a, k) = beta_k * sigmoid(base_logit + affinity * <e_u, e_a> + category_bonus * [category(a) in pref(u)]
                                  + popularity * pop_a)

with position bias beta_k (beta_0 = 1, decreasing) and an item popularity pop_a (a fixed function of the
item's own features, standardised over the catalog's first ``n_items``: the part of the signal a model
without user x item crosses can learn). The service's chosen item is shown at position ``slot`` of the page
(``ClickModel.slot``, 0 = the top), so its reward is a click drawn from p(u, a, slot).

Per event the storefront draws a user and ``candidates`` distinct items from the first ``n_items`` of the
catalog (seeded), asks ``POST /v1/score`` (event id ``<prefix>-<i>``), draws the click, and reports it with
``POST /v1/reward`` (no click: no call, the service's default reward 0 applies after its wait time).
``run(n, rate=100)`` sends the events open loop: event i is due ``i / rate`` seconds after the start and is
sent by the first free one of a few connections, whatever the answers before it took (``EventOutcome.late``
says how late it went out).

Ground truth per context, exact: the **uniform** policy's click rate is the mean of p(u, a, slot) over the
candidates, the **oracle**'s is their maximum, and the **served** policy's is the sum of p(u, a, slot) weighted
by the probabilities the service answered with (per event: ``EventOutcome.p_policy``; ``tail_rates`` averages
the last events'). ``evaluate`` measures them on held-out contexts with ``defer_activation`` requests, which
the service never activates: they are not logged and nothing learns from them. Storefronts of other shapes:
``simulators.storefronts``.

This module only talks HTTP (http.client) to a service on the loopback interface; it never imports the
service.
"""

from __future__ import annotations

import http.client
import json
import math
import queue
import threading
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
    uniform choice among 10 random items and 0.57 for the best of them. ``slot``: the page position the
    recommended item is shown at (its ``beta`` scales every click probability)."""

    base_logit: float = -2.5
    affinity: float = 3.0
    category_bonus: float = 2.5
    popularity: float = 0.0
    position_bias: tuple[float, ...] = (1.0, 0.7, 0.5, 0.4, 0.3)
    slot: int = 0

    def beta(self, position: int) -> float:
        bias = self.position_bias
        return bias[position] if position < len(bias) else bias[-1]


@dataclass(frozen=True, eq=False)
class Catalog:
    """The sample catalog's users and first ``n_items`` items, as arrays for the click model."""

    n_items: int = 100
    # pop_a: a fixed seeded direction in the item embedding space plus a seeded effect per brand, standardised
    popularity_seed: int = 0
    user_ids: tuple[str, ...] = field(init=False)
    item_ids: tuple[str, ...] = field(init=False)
    user_embeddings: np.ndarray = field(init=False, repr=False)
    item_embeddings: np.ndarray = field(init=False, repr=False)
    # [u, a] = 1 when item a's category is one of user u's preferred categories
    preferred: np.ndarray = field(init=False, repr=False)
    popularity: np.ndarray = field(init=False, repr=False)  # (n_items,), mean 0, standard deviation 1

    def __post_init__(self) -> None:
        items = items_frame().iloc[: self.n_items]
        users = users_frame()
        if len(items) < self.n_items or self.n_items < 2:
            raise StorefrontError(f"n_items must be between 2 and {len(items_frame())}, got {self.n_items}")
        categories = list(items["category"])
        preferred = np.array([[c in set(p) for c in categories] for p in users["preferred_categories"]], dtype=float)
        item_embeddings = np.stack(items["embedding"].to_numpy())
        rng = np.random.default_rng(self.popularity_seed)
        brands = sorted(set(items["brand"]))
        brand_effect = dict(zip(brands, rng.normal(size=len(brands)), strict=True))
        direction = rng.normal(size=item_embeddings.shape[1])
        by_brand = np.array([brand_effect[b] for b in items["brand"]])
        raw = item_embeddings @ direction / np.linalg.norm(direction) + by_brand
        values = {
            "user_ids": tuple(users["user_id"]),
            "item_ids": tuple(items["item_id"]),
            "user_embeddings": np.stack(users["embedding"].to_numpy()),
            "item_embeddings": item_embeddings,
            "preferred": preferred,
            "popularity": (raw - raw.mean()) / raw.std(),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def click_prob(
        self, model: ClickModel, user: int, items: Sequence[int] | np.ndarray, position: int | None = None
    ) -> np.ndarray:
        """p(user, a, position) for each item index a (see the module docstring); position None: ``model.slot``."""
        items = np.asarray(items)
        logit = (
            model.base_logit
            + model.affinity * self.item_embeddings[items] @ self.user_embeddings[user]
            + model.category_bonus * self.preferred[user, items]
            + model.popularity * self.popularity[items]
        )
        return model.beta(model.slot if position is None else position) / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class EventOutcome:
    """One storefront event: the model version that decided, the click, and the exact click rates of the
    served item, of the answered probabilities, of a uniform choice and of the oracle's choice in that context."""

    index: int
    model_version: str
    clicked: bool
    p_served: float  # p(u, served item, slot): the expected reward of what was shown
    p_uniform: float
    p_oracle: float
    elapsed: float  # seconds since the run started, when the answer came
    p_policy: float = math.nan  # sum over the ranking of probability x p(u, item, slot): the policy's value here
    late: float = 0.0  # open loop: seconds between the event's due time and its request going out


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


def tail_rates(outcomes: Sequence[EventOutcome], last: int = 2000) -> ClickRates:
    """The exact click rates of the ``last`` events' contexts: uniform, oracle, and what the service's
    answered probabilities were worth (``p_policy``, so exploration counts against it)."""
    tail = list(outcomes)[-last:]
    if not tail:
        raise StorefrontError("no events to rate")
    mean = lambda values: math.fsum(values) / len(tail)  # noqa: E731
    return ClickRates(
        len(tail), mean(o.p_uniform for o in tail), mean(o.p_oracle for o in tail), mean(o.p_policy for o in tail)
    )


class _Connection:
    """One keep-alive HTTP/1.1 connection to the service (one per sending thread)."""

    def __init__(self, host: str, port: int, headers: dict[str, str], timeout: float) -> None:
        self.host, self.port, self.headers, self.timeout = host, port, headers, timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
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


@dataclass(frozen=True)
class _Shopper:
    """One event's draws, made in event order from the storefront's seeded stream."""

    index: int
    user: int
    items: np.ndarray
    draw: float  # uniform in [0, 1): clicked when below the shown item's click probability


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
        self._conn = self._connection()
        self._index_of = {item_id: i for i, item_id in enumerate(self.catalog.item_ids)}

    def _connection(self) -> _Connection:
        return _Connection(self.host, self.port, self.headers, self.timeout)

    def close(self) -> None:
        self._conn.close()

    # ----- shoppers -------------------------------------------------------------------------------------
    def _context(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        user = int(rng.integers(len(self.catalog.user_ids)))
        items = rng.choice(self.catalog.n_items, size=self.candidates, replace=False)
        return user, items

    def _shopper(self) -> _Shopper:
        index = self._next
        self._next += 1
        user, items = self._context(self._rng)
        return _Shopper(index, user, items, float(self._rng.random()))

    def _score(self, conn: _Connection, event_id: str, user: int, items: np.ndarray, *, deferred: bool = False) -> dict:
        body = {
            "event_id": event_id,
            "user_id": self.catalog.user_ids[user],
            "candidates": [self.catalog.item_ids[a] for a in items],
        }
        if deferred:
            body["defer_activation"] = True
        status, raw = conn.post("/v1/score", body)
        if status != 200:
            raise StorefrontError(f"/v1/score answered {status}: {raw[:200]!r}")
        return json.loads(raw)

    def _visit(self, conn: _Connection, shopper: _Shopper, started: float, late: float) -> EventOutcome:
        """Score, click or not, report the click: one event on ``conn``."""
        answer = self._score(conn, f"{self.event_prefix}-{shopper.index}", shopper.user, shopper.items)
        probs = self.catalog.click_prob(self.click_model, shopper.user, shopper.items)
        by_id = dict(zip((self.catalog.item_ids[a] for a in shopper.items), probs.tolist(), strict=True))
        p_served = by_id[answer["reward_action_id"]]
        clicked = shopper.draw < p_served
        if clicked:
            status, raw = conn.post("/v1/reward", {"event_id": answer["event_id"], "reward": 1.0})
            if status != 204:
                raise StorefrontError(f"/v1/reward answered {status}: {raw[:200]!r}")
        p_policy = math.fsum(entry["probability"] * by_id[entry["id"]] for entry in answer["ranking"])
        return EventOutcome(
            shopper.index, answer["model_version"], clicked, p_served, float(probs.mean()), float(probs.max()),
            time.monotonic() - started, p_policy, late,
        )  # fmt: skip

    def run(
        self,
        n_events: int,
        *,
        max_seconds: float = 600.0,
        on_event: Callable[[EventOutcome], None] | None = None,
        rate: float | None = None,
        connections: int = 4,
    ) -> list[EventOutcome]:
        """Send ``n_events`` shoppers (at most MAX_EVENTS, stopping after ``max_seconds``); returns what happened,
        in event order.

        ``rate`` None: one after the other on one connection (closed loop). ``rate`` R (events/s): open loop,
        event i due i / R seconds after the start, sent by the first free of ``connections`` threads (each
        with its own connection; ``on_event`` is then called from them). Event ids continue across calls
        (``<prefix>-0``, ``<prefix>-1``, ...), and so does the seeded stream of users, candidates and clicks
        (the same stream whatever the rate).
        """
        if not 1 <= n_events <= MAX_EVENTS:
            raise StorefrontError(f"n_events must be between 1 and {MAX_EVENTS}, got {n_events}")
        if rate is not None and not (0 < rate <= 10_000 and 1 <= connections <= 64):
            raise StorefrontError(f"rate must be in (0, 10000] and connections in [1, 64], got {rate}, {connections}")
        started = time.monotonic()
        if rate is None:
            outcomes = []
            for _ in range(n_events):
                if time.monotonic() - started > max_seconds:
                    break
                outcome = self._visit(self._conn, self._shopper(), started, 0.0)
                outcomes.append(outcome)
                if on_event is not None:
                    on_event(outcome)
            return outcomes
        return self._run_open_loop(n_events, started, max_seconds, on_event, rate, connections)

    def _run_open_loop(self, n_events: int, started: float, max_seconds: float,
                       on_event: Callable[[EventOutcome], None] | None, rate: float,
                       connections: int) -> list[EventOutcome]:  # fmt: skip
        due: queue.Queue[tuple[_Shopper, float] | None] = queue.Queue()
        outcomes: list[EventOutcome] = []
        failures: list[BaseException] = []

        def sender() -> None:
            conn = self._connection()
            try:
                while (item := due.get()) is not None:
                    if failures:
                        continue  # drain: the run is failing
                    shopper, due_at = item
                    try:
                        outcome = self._visit(conn, shopper, started, time.monotonic() - due_at)
                    except BaseException as exc:  # noqa: BLE001 - re-raised by run() on the caller's thread
                        failures.append(exc)
                        continue
                    outcomes.append(outcome)  # list.append is atomic
                    if on_event is not None:
                        on_event(outcome)
            finally:
                conn.close()

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(connections)]
        for thread in threads:
            thread.start()
        try:
            for i in range(n_events):
                due_at = started + i / rate
                if due_at - started > max_seconds or failures:
                    break
                delay = due_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                due.put((self._shopper(), due_at))
        finally:
            for _ in threads:
                due.put(None)
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]
        return sorted(outcomes, key=lambda o: o.index)

    def evaluate(self, n_contexts: int = 500, *, seed: int = 12345) -> ClickRates:
        """Exact click rates of uniform, oracle and the served policy on ``n_contexts`` held-out contexts
        (their own seed), asked with ``defer_activation`` so that nothing is logged or learned from them."""
        if not 1 <= n_contexts <= 100_000:
            raise StorefrontError(f"n_contexts must be between 1 and 100000, got {n_contexts}")
        rng = np.random.default_rng(seed)
        uniform = oracle = served = 0.0
        for i in range(n_contexts):
            user, items = self._context(rng)
            answer = self._score(
                self._conn, f"{self.event_prefix}-eval-{seed}-{i}-{self._next}", user, items, deferred=True
            )
            ids = [self.catalog.item_ids[a] for a in items]
            probs = dict(zip(ids, self.catalog.click_prob(self.click_model, user, items).tolist(), strict=True))
            uniform += float(np.mean(list(probs.values())))
            oracle += max(probs.values())
            served += math.fsum(entry["probability"] * probs[entry["id"]] for entry in answer["ranking"])
        return ClickRates(n_contexts, uniform / n_contexts, oracle / n_contexts, served / n_contexts)
