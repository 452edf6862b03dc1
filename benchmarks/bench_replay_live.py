"""The replay against settings run truly live: interval coverage and the bias, over many seeds.

The large version of tests/simulators/test_replay_live.py. Per seed: a synthetic world (60 users, 8 items),
a log drawn by the logger, each setting replayed over it (``simulators.replay``) and run live over the same
users (``simulators.replay_live.run_live``: it chooses, is rewarded and learns by itself). Per logger, log
length and setting: how often the replay's 95% normal IPS interval covers the live value, the mean of
(estimate - live value), and the mean of (exact value of the replayed policies - live value), the
estimator's bias against a live run (the replay's estimation noise removed), with its standard error over
seeds.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import numpy as np

from recommender.settings.policy import PolicyConfig
from simulators.optimize import OptimizeConfig
from simulators.replay import as_action_dist, make_setting, replay_probs
from simulators.replay_live import run_live
from simulators.replay_log import ReplayLog
from simulators.replay_tasks import RowEvaluator
from simulators.synthetic import EpsilonGreedyPolicy, Policy, SyntheticEnvironment, UniformPolicy

BASE = PolicyConfig(interactions=(("user", "item"),))
SETTINGS = (
    "exploration.epsilon=0.1",
    "exploration.epsilon=0.4,learning.learning_rate=0.05",
    "exploration.algorithm=squarecb,learning.learning_rate=1.0",
    "exploration.algorithm=bagging,exploration.bags=3,exploration.epsilon=0.05",
)


def _measure(logger: Policy, rows: int, seeds: int, tmp: Path) -> dict[str, list[tuple[bool, float, float]]]:
    """Per setting, per seed: (interval covers the live value, estimate - live, replayed exact - live)."""
    config = OptimizeConfig(estimators=("ipw",), primary="ipw", time_bins=1)
    settings = [make_setting(BASE, s) for s in SETTINGS]
    out: dict[str, list[tuple[bool, float, float]]] = {s: [] for s in SETTINGS}
    for seed in range(seeds):
        env = SyntheticEnvironment(n_users=60, n_items=8, seed=100 + seed)
        log = env.generate_log(logger, rows, seed=seed)
        replay_log = ReplayLog.build(log.bandit, tmp / f"log-{rows}-{seed}")
        evaluator = RowEvaluator.build(replay_log, config)
        for setting in settings:
            probs = replay_probs(replay_log.paths, replay_log.counts, setting.vw_args())
            estimate = evaluator.evaluate(as_action_dist(replay_log, probs, setting.label)).estimate("ipw")
            live = run_live(env, log, setting, seed=seed).value
            exact = float(np.mean(np.sum(probs * env.click_prob[log.users, :, 0], axis=1)))
            out[setting.label].append((estimate.interval("normal").covers(live), estimate.value - live, exact - live))
    return out


def run(quick: bool) -> str:
    seeds = 6 if quick else 30
    cases = [
        ("uniform", UniformPolicy(), 600),
        ("uniform", UniformPolicy(), 2000),
        ("epsilon 0.5", EpsilonGreedyPolicy(epsilon=0.5), 600),
    ]
    lines = [
        "## Replay against settings run live",
        "",
        f"{seeds} seeds per row; 60 users, 8 items; 95% normal IPS interval. *bias*: mean over seeds of "
        "(exact value of the replayed policies - live value), +- its standard error; *error*: mean of "
        f"(estimate - live value){' (quick run)' if quick else ''}.",
        "",
        "| logger | rows | setting | covers live | bias +- s.e. | error |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-replay-live-") as tmp:
        for name, logger, rows in cases:
            for setting, runs in _measure(logger, rows, seeds, Path(tmp)).items():
                cover = sum(r[0] for r in runs) / len(runs)
                bias = [r[2] for r in runs]
                se = statistics.stdev(bias) / math.sqrt(len(bias))
                error = statistics.mean(r[1] for r in runs)
                lines.append(
                    f"| {name} | {rows:,} | `{setting}` | {cover:.0%} | {statistics.mean(bias):+.4f} +- {se:.4f} "
                    f"| {error:+.4f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
