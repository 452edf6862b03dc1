"""Replay of learning settings: VW's C++ driver over a converted log against a naive per-row replay.

Measured on a synthetic log with 20 candidates per decision (uniform logging):

- **driver**: ``simulators.replay.replay_probs``, one setting over the converted log (VW parses, predicts
  and learns every example in C++ and writes the pmfs with ``-p``; NumPy reads them back). The one-off
  conversion of the log (example builder + VW text) is reported apart: a sweep pays it once.
- **naive**: the same setting replayed by a Python loop over the rows, as one would write it with pyvw:
  build the row's examples with the example builder, format the VW text (``cb_text``), parse and predict,
  parse and learn (``VWModel.predict_text`` / ``learn_text``).

Both on one core, in the same run; rows/s are medians over repeats. Then the scaling of an 8-setting sweep
(``simulators.optimize.run_sweep``) on a Dask LocalCluster of 1 and of 2 single-threaded workers (cluster
start-up excluded; the converted log is read by path on the workers).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from recommender.policy.examples import ExampleBuilder, cost_from_reward
from recommender.policy.vw import VWModel, cb_text
from recommender.settings.policy import PolicyConfig
from simulators.dask_backend import replay_map
from simulators.optimize import OptimizeConfig, run_sweep, settings_from
from simulators.replay import make_setting, replay_probs
from simulators.replay_log import ReplayLog, generic_examples, generic_feature_groups
from simulators.synthetic import SyntheticEnvironment, UniformPolicy

N_CANDIDATES = 20
BASE = PolicyConfig(interactions=(("user", "item"),))
SWEEP = (
    "exploration.epsilon=0.02",
    "exploration.epsilon=0.1",
    "exploration.epsilon=0.3",
    "learning.learning_rate=0.1",
    "learning.learning_rate=2.0",
    "exploration.algorithm=squarecb",
    "exploration.algorithm=bagging,exploration.bags=4",
    "exploration.algorithm=softmax,exploration.lambda=5",
)


def _naive_rows_per_second(log, setting, rows: int) -> float:
    """A per-row Python replay: build, format, parse, predict, parse, learn, for each of ``rows`` rows."""
    bandit = log.bandit
    builder = ExampleBuilder(*generic_feature_groups(bandit))
    model = VWModel(setting.vw_args())
    try:
        start = time.perf_counter()
        for i, (shared, items) in enumerate(generic_examples(bandit, builder)):
            if i == rows:
                break
            label = (int(bandit.action[i]), cost_from_reward(bandit.reward[i]), float(bandit.pscore[i]))
            lines = cb_text(shared, items, label)
            model.predict_text(lines)
            model.learn_text(lines)
        return rows / (time.perf_counter() - start)
    finally:
        model.close()


def run(quick: bool) -> str:
    n_rows = 3_000 if quick else 20_000
    naive_rows = 1_000 if quick else 5_000
    repeats = 2 if quick else 5
    env = SyntheticEnvironment(n_users=500, n_items=N_CANDIDATES, seed=0)
    log = env.generate_log(UniformPolicy(), n_rows, seed=0)
    setting = make_setting(BASE, "exploration.epsilon=0.1")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        start = time.perf_counter()
        converted = ReplayLog.build(log.bandit, Path(tmp) / "log.vw")
        convert_rate = n_rows / (time.perf_counter() - start)
        driver, naive = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            replay_probs(converted.path, converted.counts, setting.vw_args())
            driver.append(n_rows / (time.perf_counter() - start))
            naive.append(_naive_rows_per_second(log, setting, naive_rows))
        settings = settings_from(None, [make_setting(BASE, s) for s in SWEEP], [])
        config = OptimizeConfig(estimators=("ipw", "snipw"), primary="ipw")
        timings: dict[int, list[float]] = {0: []}
        results = {}
        for _ in range(max(2, repeats - 2)):
            start = time.perf_counter()
            results[0] = run_sweep(converted, settings, config).to_dict()
            timings[0].append(time.perf_counter() - start)
        for workers in (1, 2):
            with replay_map(workers=workers) as cluster_map:
                run_sweep(converted, settings[:2], config, map_function=cluster_map)  # warm the workers
                timings[workers] = []
                for _ in range(max(2, repeats - 2)):
                    start = time.perf_counter()
                    results[workers] = run_sweep(converted, settings, config, map_function=cluster_map).to_dict()
                    timings[workers].append(time.perf_counter() - start)
        same = results[0] == results[1] == results[2]
    d, v = statistics.median(driver), statistics.median(naive)
    t0, t1, t2 = (statistics.median(timings[w]) for w in (0, 1, 2))
    return "\n".join(
        [
            "## Replay of learning settings",
            "",
            f"Synthetic log, {N_CANDIDATES} candidates per decision, setting `exploration.epsilon=0.1`, "
            f"interactions user x item; medians of {repeats} repeats{' (quick run)' if quick else ''}.",
            "",
            "| path | rows/s (one core) |",
            "|---|---|",
            f"| VW's C++ driver over the converted log ({n_rows:,} rows) | {d:,.0f} |",
            f"| naive per-row pyvw replay (build, format, parse, predict, learn; {naive_rows:,} rows) | {v:,.0f} |",
            f"| **ratio driver / naive** | **{d / v:.1f}x** |",
            f"| one-off conversion of the log (example builder + VW text) | {convert_rate:,.0f} |",
            "",
            f"An {len(SWEEP)}-setting sweep (`run_sweep`, ipw and snipw) on a Dask LocalCluster, cluster start-up "
            "excluded:",
            "",
            "| workers | sweep seconds (median) |",
            "|---|---|",
            f"| in process (no Dask) | {t0:.2f} |",
            f"| 1 | {t1:.2f} |",
            f"| 2 | {t2:.2f} |",
            f"| **speed-up** | **{t1 / t2:.2f}x** |",
            "",
            f"Results identical in process and on 1 and 2 workers: {'yes' if same else 'NO'}.",
        ]
    )


if __name__ == "__main__":
    print(run(quick=True))
