"""A learning setting run truly live against a synthetic world: the value a replay estimates, measured.

A replay (``simulators.replay``) runs a fresh learner through a *logged* stream: it learns from the logging
policy's choices. Run live, the setting would serve the same users in the same order, choose its own actions
(sampled from its own pmf), see their rewards and learn from those. ``run_live`` does exactly that on a
``SyntheticEnvironment``: the users of ``log`` (same seed, same event stream), per row the examples the
replay's converted log holds for that row (``simulators.replay_log.generic_examples``, the one builder),
predict, sample, draw the click from the world's click model, learn (cost from ``cost_from_reward``, the
setting's own probability), in that order. The live value is

    V_live = (1/n) sum_t sum_a pi_t(a | x_t) p(u_t, a),

the exact expected reward of the policies the live run served (pi_t depends on its own history), the number
the replay's estimate is checked against (tests/simulators/test_replay_live.py, ``benchmarks/bench_replay_live``).

This is the naive per-row pyvw loop (build, format, parse, predict, parse, learn): fine for checks on a few
thousand rows, not a replay path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.policy.examples import ExampleBuilder, cost_from_reward
from recommender.policy.vw import VWModel, cb_text
from simulators.replay import ReplaySetting
from simulators.replay_log import generic_examples, generic_feature_groups
from simulators.synthetic import SyntheticEnvironment, SyntheticLog


@dataclass(frozen=True)
class LiveRun:
    """A live run: ``probs`` (n, K) the pmf served at each row, ``action`` (n,) the sampled actions,
    ``reward`` (n,) their clicks, ``value`` = V_live (module docstring)."""

    probs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    value: float


def run_live(env: SyntheticEnvironment, log: SyntheticLog, setting: ReplaySetting, seed: int = 0) -> LiveRun:
    """Run ``setting`` live over ``log``'s users (single-position logs). ``seed`` seeds the live run's action
    sampling and clicks (a stream of its own: the logged actions and rewards are not used)."""
    bandit = log.bandit
    builder = ExampleBuilder(*generic_feature_groups(bandit))
    rng = np.random.default_rng([seed, 7])
    n, k = bandit.n_rounds, bandit.n_actions
    probs = np.zeros((n, k))
    action = np.zeros(n, dtype=np.int64)
    reward = np.zeros(n)
    model = VWModel(setting.vw_args())
    try:
        for t, (shared, items) in enumerate(generic_examples(bandit, builder)):
            pmf = np.asarray(model.predict_text(cb_text(shared, items)), dtype=np.float64)
            pmf = pmf / pmf.sum()
            a = int(min(np.searchsorted(np.cumsum(pmf), rng.random() * pmf.sum(), side="right"), k - 1))
            click = float(rng.random() < env.click_prob[log.users[t], a, 0])
            model.learn_text(cb_text(shared, items, (a, cost_from_reward(click), float(pmf[a]))))
            probs[t], action[t], reward[t] = pmf, a, click
    finally:
        model.close()
    value = float(np.mean(np.sum(probs * env.click_prob[log.users, :, 0], axis=1)))
    return LiveRun(probs, action, reward, value)
