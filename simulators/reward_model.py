"""Reward models for DM and the DR family: scikit-learn regressors with K-fold cross-fitting.

``fit_reward_model`` predicts q_hat(x_i, a) for every row i and every candidate a at the row's position,
as Open Bandit Pipeline's ``RegressionModel.fit_predict`` does:

- one model per position (OBP's ``len_list`` models), trained on that position's rows;
- cross-fitting with ``n_folds`` > 1: rounds (not rows: the positions of one page share a context) are
  split into folds at random; each fold's predictions come from a model fitted on the other folds, so
  no row is scored by a model that saw its reward (Chernozhukov et al. 2018; OBP's ``n_folds``);
- features of (x, a): [x, f(a), vec(x f(a)^T)], with f(a) the item's features (``action_context``) or a
  one-hot of the action, and the outer product when it stays small (a linear model then fits a reward
  that is bilinear in user and item features, as the synthetic click model is);
- binary rewards use a classifier's ``predict_proba[:, 1]``, other rewards a regressor's ``predict``.

The default base model is logistic regression (binary rewards) or ridge regression, after standard
scaling. Pass any scikit-learn estimator (or a factory of one) as ``base_model`` to change it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from simulators.data import LoggedBandit
from simulators.errors import EstimatorError

# Above this many interaction features the outer product is left out (it would dominate time and memory).
MAX_INTERACTIONS = 2_000
# Rows scored per batch (each row expands to n_actions feature rows).
_PREDICT_BATCH_ROWS = 20_000

BASE_MODELS: dict[str, Callable[[], BaseEstimator]] = {
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)),
    "ridge": lambda: make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
}


def _hist_gradient_boosting(binary: bool) -> BaseEstimator:
    return HistGradientBoostingClassifier(max_iter=100) if binary else HistGradientBoostingRegressor(max_iter=100)


@dataclass(frozen=True, eq=False)
class RewardPredictions:
    """q_hat (n, K): predicted expected reward of each candidate at the row's own position.

    Entries for candidate slots a row does not have are 0. ``description`` names the model and folds.

    Open Bandit Pipeline's ``estimated_rewards_by_reg_model`` (n, K, len_list), a prediction for every
    position, is accepted too: give ``position`` (n,), the log's 0-based position of each row
    (``log.position``), and row i keeps ``q_hat[i, :, position[i]]``, the slice OBP's estimators read. With
    len_list = 1, ``position`` may be left out. After construction ``q_hat`` is always (n, K) and
    ``position`` is None.
    """

    q_hat: np.ndarray
    description: str = ""
    position: np.ndarray | None = None

    def __post_init__(self) -> None:
        q = np.asarray(self.q_hat, dtype=np.float64)
        if q.ndim == 3:
            q = _at_positions(q, self.position)
        elif self.position is not None:
            raise EstimatorError(f"position is only for (n_rows, n_actions, n_positions) q_hat, got shape {q.shape}")
        if q.ndim != 2 or not np.all(np.isfinite(q)):
            raise EstimatorError(
                f"q_hat must be a finite (n_rows, n_actions) array, or OBP's (n_rows, n_actions, n_positions) "
                f"with position=log.position, got shape {q.shape}"
            )
        q.setflags(write=False)
        object.__setattr__(self, "q_hat", q)
        object.__setattr__(self, "position", None)


def _at_positions(q: np.ndarray, position: np.ndarray | None) -> np.ndarray:
    """(n, K) rows q[i, :, position[i]] of OBP's (n, K, P) predictions."""
    n, _, n_positions = q.shape
    if position is None:
        if n_positions != 1:
            raise EstimatorError(
                f"q_hat of shape {q.shape} predicts {n_positions} positions: pass position=log.position "
                "(0-based, one per row) to keep each row's own, as OBP does with q_hat[np.arange(n), :, position]"
            )
        return q[:, :, 0]
    pos = np.asarray(position)
    if pos.shape != (n,) or not np.issubdtype(pos.dtype, np.integer):
        raise EstimatorError(f"position must be an integer array of shape ({n},), got {pos.dtype} {pos.shape}")
    if pos.size and (pos.min() < 0 or pos.max() >= n_positions):
        raise EstimatorError(f"position must lie in [0, {n_positions}) for q_hat of shape {q.shape}")
    return q[np.arange(n), :, pos]


def _action_features(log: LoggedBandit) -> tuple[np.ndarray, np.ndarray]:
    """(item feature table (m, d_a), item index per (row, candidate) (n, K))."""
    if log.candidate_items is None:
        items = np.broadcast_to(np.arange(log.n_actions, dtype=np.int64), (log.n_rounds, log.n_actions))
        m = log.n_actions
    else:
        items = log.candidate_items
        m = int(items.max()) + 1
    table = log.action_context if log.action_context is not None else np.eye(m, dtype=np.float64)
    return table, items


def _features(context: np.ndarray, item_features: np.ndarray, interactions: bool) -> np.ndarray:
    parts = [context, item_features]
    if interactions and context.shape[1] and item_features.shape[1]:
        parts.append(np.einsum("ij,ik->ijk", context, item_features).reshape(context.shape[0], -1))
    return np.hstack(parts)


def _make_model(base_model: Any, binary: bool) -> BaseEstimator:
    if base_model is None:
        return BASE_MODELS["logistic" if binary else "ridge"]()
    if isinstance(base_model, str):
        if base_model == "hgb":
            return _hist_gradient_boosting(binary)
        if base_model not in BASE_MODELS:
            raise EstimatorError(f"unknown reward model {base_model!r}; choose from logistic, ridge, hgb")
        if base_model == "logistic" and not binary:
            raise EstimatorError("the logistic reward model needs 0/1 rewards; use ridge or hgb")
        return BASE_MODELS[base_model]()
    if callable(base_model) and not isinstance(base_model, BaseEstimator):
        return base_model()
    return clone(base_model)


class _Constant:
    """Stand-in when a training set has a single reward value (e.g. no click at a rare position)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.full(features.shape[0], self.value)


def _fit(model: BaseEstimator, features: np.ndarray, reward: np.ndarray, binary: bool) -> Any:
    if np.unique(reward).shape[0] < 2:
        return _Constant(float(reward[0]) if reward.size else 0.0)
    if binary and is_classifier(model):
        return model.fit(features, reward.astype(np.int64))
    return model.fit(features, reward)


def _predict(model: Any, features: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(features)
        classes = list(model.classes_)
        return proba[:, classes.index(1)] if 1 in classes else np.zeros(features.shape[0])
    return np.asarray(model.predict(features), dtype=np.float64)


def fit_reward_model(
    log: LoggedBandit,
    base_model: Any = None,
    *,
    n_folds: int = 3,
    random_state: int = 0,
    interactions: bool | None = None,
) -> RewardPredictions:
    """Cross-fitted reward predictions q_hat (n, K) for ``log``.

    ``base_model``: None (logistic or ridge by reward type), "logistic", "ridge", "hgb", a scikit-learn
    estimator (cloned per fit) or a zero-argument factory. ``n_folds`` >= 1 (1 fits and predicts on all
    rows, as OBP's default; >= 2 cross-fits). ``interactions``: include x f(a)^T features; None decides
    by size (at most ``MAX_INTERACTIONS``).
    """
    if not isinstance(n_folds, int) or n_folds < 1:
        raise EstimatorError(f"n_folds must be a positive integer, got {n_folds!r}")
    binary = bool(np.all(np.isin(log.reward, (0.0, 1.0))))
    table, items = _action_features(log)
    if interactions is None:
        interactions = log.context.shape[1] * table.shape[1] <= MAX_INTERACTIONS
    rounds, round_index = np.unique(log.round_id, return_inverse=True)
    if n_folds > 1 and rounds.shape[0] < n_folds:
        raise EstimatorError(
            f"{rounds.shape[0]} rounds cannot be split into {n_folds} folds to cross-fit the reward model (DM, DR and "
            "their variants need one): use fewer folds (n_folds, the CLI's --folds) or only estimators without a "
            "reward model (ipw, snipw)"
        )
    rng = np.random.default_rng(random_state)
    fold_of_round = rng.permutation(rounds.shape[0]) % n_folds
    fold = fold_of_round[round_index]
    n, k = log.n_rounds, log.n_actions
    mask = log.candidate_mask
    logged_items = items[np.arange(n), log.action]
    q_hat = np.zeros((n, k), dtype=np.float64)
    for position in range(log.n_positions):
        at_position = log.position == position
        for f in range(n_folds):
            test = at_position & (fold == f)
            if not np.any(test):
                continue
            train = at_position & (fold != f) if n_folds > 1 else at_position
            if not np.any(train):
                # Every row of this position is in one fold; fall back to all rows of the position.
                train = at_position
            train_x = _features(log.context[train], table[logged_items[train]], interactions)
            model = _fit(_make_model(base_model, binary), train_x, log.reward[train], binary)
            test_rows = np.flatnonzero(test)
            for start in range(0, test_rows.shape[0], _PREDICT_BATCH_ROWS):
                batch = test_rows[start : start + _PREDICT_BATCH_ROWS]
                batch_items = items[batch]  # (b, K)
                contexts = np.repeat(log.context[batch], k, axis=0)
                item_rows = table[np.maximum(batch_items, 0).reshape(-1)]
                pred = _predict(model, _features(contexts, item_rows, interactions)).reshape(batch.shape[0], k)
                q_hat[batch] = np.where(mask[batch], pred, 0.0)
    name = base_model if isinstance(base_model, str) else type(_make_model(base_model, binary)).__name__
    if base_model is None:
        name = "logistic" if binary else "ridge"
    return RewardPredictions(q_hat=q_hat, description=f"{name}, {n_folds}-fold cross-fit, per position")
