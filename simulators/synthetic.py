"""Synthetic environments with a known click model, logs drawn from any logging policy, and exact truth.

The world: ``n_users`` users with features x_u in R^{d_x} and ``n_items`` items with features y_a in
R^{d_a}, drawn once from N(0, 1) by ``seed``. The click probability of item a shown to user u at
position k is

    p(u, a, k) = beta_k * sigmoid(b0 + x_u^T Theta y_a + b_a)

with Theta (d_x, d_a) drawn from N(0, scale^2 / (d_x d_a)) (so the bilinear term has variance about
scale^2 whatever the dimensions), item offsets b_a from N(0, (scale / 2)^2), and position bias beta_k (beta_0 = 1,
decreasing). Users arrive uniformly at random; every round fills all ``n_positions`` positions, each drawn
independently from the policy's distribution for that position (OBP's independence assumption, so the
estimators' per-position estimand is exactly the quantity below).

Because the user population is finite, a policy is a table pi[u, a, k] and its value is computed exactly:

    V(pi) = (1 / (n_users n_positions)) sum_u sum_k sum_a pi[u, a, k] p(u, a, k),

the expected click rate per shown (round, position) row. That is the estimand of every estimator here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np

from recommender.records import Decision, JoinedEvent
from simulators.data import ActionDist, LoggedBandit
from simulators.errors import BanditDataError
from simulators.reward_model import RewardPredictions


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True, eq=False)
class SyntheticEnvironment:
    """A finite population of users and items with a logistic click model and position bias."""

    n_users: int = 200
    n_items: int = 10
    user_dim: int = 5
    item_dim: int = 5
    n_positions: int = 1
    position_bias: tuple[float, ...] | None = None  # None: beta_k = 1 / (1 + k) ** 0.5
    scale: float = 1.5
    base_logit: float = -1.0
    seed: int = 0
    user_features: np.ndarray = field(init=False, repr=False)
    item_features: np.ndarray = field(init=False, repr=False)
    theta: np.ndarray = field(init=False, repr=False)
    item_offset: np.ndarray = field(init=False, repr=False)
    click_prob: np.ndarray = field(init=False, repr=False)  # (n_users, n_items, n_positions)

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_positions) < 1 or min(self.user_dim, self.item_dim) < 0:
            raise BanditDataError("the environment needs at least one user, item and position")
        bias = self.position_bias
        if bias is None:
            bias = tuple(1.0 / (1.0 + k) ** 0.5 for k in range(self.n_positions))
        if len(bias) != self.n_positions or not all(0.0 < b <= 1.0 for b in bias):
            raise BanditDataError(f"position_bias needs {self.n_positions} values in (0, 1], got {bias}")
        rng = np.random.default_rng(self.seed)
        users = rng.normal(size=(self.n_users, self.user_dim))
        items = rng.normal(size=(self.n_items, self.item_dim))
        theta = rng.normal(
            scale=self.scale / np.sqrt(max(self.user_dim * self.item_dim, 1)), size=(self.user_dim, self.item_dim)
        )
        offset = rng.normal(scale=self.scale / 2.0, size=self.n_items)
        logits = self.base_logit + users @ theta @ items.T + offset  # (U, m)
        prob = _sigmoid(logits)[:, :, None] * np.asarray(bias)[None, None, :]
        for name, value in (
            ("position_bias", tuple(float(b) for b in bias)),
            ("user_features", users),
            ("item_features", items),
            ("theta", theta),
            ("item_offset", offset),
            ("click_prob", prob),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    def logits(self) -> np.ndarray:
        """(n_users, n_items) position-free click logits b0 + x^T Theta y + b."""
        return self.base_logit + self.user_features @ self.theta @ self.item_features.T + self.item_offset

    def policy_value(self, table: np.ndarray) -> float:
        """Exact value of the policy ``table`` (n_users, n_items, n_positions): see the module docstring."""
        table = self._check_table(table)
        return float(np.sum(table * self.click_prob) / (self.n_users * self.n_positions))

    def _check_table(self, table: np.ndarray) -> np.ndarray:
        table = np.asarray(table, dtype=np.float64)
        expected = (self.n_users, self.n_items, self.n_positions)
        if table.shape != expected:
            raise BanditDataError(f"a policy table must have shape {expected}, got {table.shape}")
        if np.any(table < 0) or not np.allclose(table.sum(axis=1), 1.0, atol=1e-9):
            raise BanditDataError("a policy table must hold distributions over items")
        return table

    def action_dist(self, table: np.ndarray, log: SyntheticLog, name: str = "target") -> ActionDist:
        """The policy ``table``'s distribution on the rows of ``log`` (rows of user u get table[u])."""
        return ActionDist(probs=self._check_table(table)[log.users], name=name)

    def expected_rewards(self, log: SyntheticLog) -> RewardPredictions:
        """The true q(x_i, a) at each row's position: a perfect reward model (for tests and baselines)."""
        q = self.click_prob[log.users, :, log.bandit.position]
        return RewardPredictions(q_hat=q, description="true click model")

    def generate_log(self, logging: Policy | np.ndarray, n_rounds: int, seed: int = 0) -> SyntheticLog:
        """Draw ``n_rounds`` rounds (each filling every position) from the logging policy.

        ``logging`` is a Policy or a table (n_users, n_items, n_positions). Rows of a round share its
        ``round_id``; timestamps advance one second per round from 2024-01-01 UTC.
        """
        table = self._check_table(logging if isinstance(logging, np.ndarray) else logging.table(self))
        if n_rounds < 1:
            raise BanditDataError("n_rounds must be positive")
        rng = np.random.default_rng(seed)
        p = self.n_positions
        round_users = rng.integers(0, self.n_users, size=n_rounds)
        users = np.repeat(round_users, p)
        position = np.tile(np.arange(p), n_rounds)
        dist = table[users, :, position]  # (n, m)
        # Inverse-CDF sampling, vectorized over rows.
        cdf = np.cumsum(dist, axis=1)
        draws = rng.random(users.shape[0])[:, None] * cdf[:, -1:]
        action = np.minimum((cdf < draws).sum(axis=1), self.n_items - 1)
        # A draw can land on a zero-probability action only through float rounding; move it to a valid one.
        zero = dist[np.arange(action.shape[0]), action] <= 0.0
        if np.any(zero):
            action[zero] = np.argmax(dist[zero] > 0.0, axis=1)
        reward = (rng.random(users.shape[0]) < self.click_prob[users, action, position]).astype(np.float64)
        start = np.datetime64(datetime(2024, 1, 1), "us")
        timestamp = start + np.repeat(np.arange(n_rounds), p).astype("timedelta64[s]")
        bandit = LoggedBandit(
            context=self.user_features[users],
            action=action,
            position=position,
            reward=reward,
            pscore=dist[np.arange(action.shape[0]), action],
            n_actions=self.n_items,
            action_context=self.item_features,
            round_id=np.repeat(np.arange(n_rounds), p),
            timestamp=timestamp,
            logging_dist=dist,
            item_ids=tuple(f"item-{a:04d}" for a in range(self.n_items)),
            source=f"synthetic(seed={self.seed}, log_seed={seed})",
        )
        return SyntheticLog(bandit=bandit, users=users)


@dataclass(frozen=True, eq=False)
class SyntheticLog:
    """A generated log and, per row, the user index it was drawn for (the key to exact truth)."""

    bandit: LoggedBandit
    users: np.ndarray


class Policy(Protocol):
    """A policy in a synthetic environment: a distribution over items per user and position."""

    def table(self, env: SyntheticEnvironment) -> np.ndarray:
        """(n_users, n_items, n_positions) distributions."""
        ...


def _greedy_ranking_table(scores: np.ndarray, n_positions: int, epsilon: float) -> np.ndarray:
    """(U, m, P): position k shows the k-th best item by ``scores`` w.p. 1 - epsilon, else a uniform item."""
    users, items = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    table = np.full((users, items, n_positions), epsilon / items)
    for k in range(n_positions):
        table[np.arange(users), order[:, min(k, items - 1)], k] += 1.0 - epsilon
    return table


@dataclass(frozen=True)
class UniformPolicy:
    """Every item equally likely at every position."""

    def table(self, env: SyntheticEnvironment) -> np.ndarray:
        return np.full((env.n_users, env.n_items, env.n_positions), 1.0 / env.n_items)


@dataclass(frozen=True)
class EpsilonGreedyPolicy:
    """Epsilon-greedy on a model of the click logits: the model is the true logit plus N(0, noise^2) error
    (drawn once by ``seed``); position k shows the model's k-th best item w.p. 1 - epsilon."""

    epsilon: float = 0.1
    noise: float = 0.5
    seed: int = 1

    def table(self, env: SyntheticEnvironment) -> np.ndarray:
        if not 0.0 <= self.epsilon <= 1.0:
            raise BanditDataError(f"epsilon must lie in [0, 1], got {self.epsilon}")
        rng = np.random.default_rng(self.seed)
        scores = env.logits() + rng.normal(scale=self.noise, size=(env.n_users, env.n_items))
        return _greedy_ranking_table(scores, env.n_positions, self.epsilon)


@dataclass(frozen=True)
class SoftmaxPolicy:
    """Softmax over a noisy model of the click logits, at ``temperature``; the same at every position."""

    temperature: float = 1.0
    noise: float = 0.5
    seed: int = 2

    def table(self, env: SyntheticEnvironment) -> np.ndarray:
        if self.temperature <= 0:
            raise BanditDataError(f"temperature must be positive, got {self.temperature}")
        rng = np.random.default_rng(self.seed)
        scores = (env.logits() + rng.normal(scale=self.noise, size=(env.n_users, env.n_items))) / self.temperature
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        return np.repeat(probs[:, :, None], env.n_positions, axis=2)


def to_joined_events(
    env: SyntheticEnvironment, log: SyntheticLog, model_version: str = "synthetic"
) -> list[JoinedEvent]:
    """The log as ``recommender.records.JoinedEvent`` records (single-position logs only), so it can be
    written with ``recommender.events.log.write_events`` and read back like production data."""
    bandit = log.bandit
    if env.n_positions != 1:
        raise BanditDataError("only single-position synthetic logs can be written as event-log decisions")
    ids = bandit.item_ids or tuple(f"item-{a:04d}" for a in range(env.n_items))
    candidate_features = tuple({"embedding": [float(v) for v in row]} for row in env.item_features)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events = []
    for i in range(bandit.n_rounds):
        u, a = int(log.users[i]), int(bandit.action[i])
        pmf = tuple(float(p) for p in bandit.logging_dist[i])  # type: ignore[index]
        ranking = (a, *[j for j in np.argsort(-np.asarray(pmf), kind="stable") if j != a])
        ts = start + timedelta(seconds=i)
        decision = Decision(
            event_id=f"sim-{i:08d}",
            timestamp=ts,
            user_id=f"user-{u:05d}",
            user_features={"embedding": [float(v) for v in env.user_features[u]]},
            context={},
            candidate_ids=ids,
            candidate_features=candidate_features,
            pmfs=(pmf,),
            chosen=(a,),
            ranking=tuple(int(j) for j in ranking),
            model_version=model_version,
        )
        events.append(JoinedEvent(decision, (float(bandit.reward[i]),), (False,), ts + timedelta(seconds=1)))
    return events
