"""Replay of learning settings: VW's C++ driver over a converted log against a naive per-row replay.

Measured on a synthetic log with 20 candidates per decision (uniform logging):

- **driver**: ``simulators.replay.replay_probs``, one setting over the converted log (VW reads each
  partition's binary cache, predicts and learns every example in C++ and writes the pmfs with ``-p``;
  Arrow's CSV reader reads them back). The one-off conversion of the log (example builder + VW text) and
  the one-off VW caches of its partitions (``simulators.replay_cache``) are reported apart: a sweep pays
  them once.
- **naive**: the same setting replayed by a Python loop over the rows, as one would write it with pyvw:
  build the row's examples with the example builder, format the VW text (``cb_text``), parse and predict,
  parse and learn (``VWModel.predict_text`` / ``learn_text``).

Both on one core, in the same run; rows/s are medians over repeats. The converted log is written as 4
partition files, which the driver streams in order through one VW process.

Then the scaling of an 8-setting sweep (``simulators.optimize.run_sweep``: each task replays *and*
estimates its setting) on a Dask LocalCluster of 1 and of 2 single-threaded workers: warm (the cluster
started and one small sweep run before timing; medians) and cold (cluster start-up and the first sweep
timed together). Alongside, the same 8 replays alone (``replay_probs`` as tasks, no estimation): the
ceiling the sweep's scaling can reach, with the CPU seconds each replay used on its worker (``getrusage``
of the worker process around the replay: VW's parser and learning threads together). Tasks carry paths
(partition files, the saved evaluator) only.
"""

from __future__ import annotations

import os
import resource
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
from simulators.replay_cache import cache_jobs, cache_task
from simulators.replay_log import ReplayLog, generic_examples, generic_feature_groups
from simulators.replay_tasks import RowEvaluator
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


def _cpu_seconds() -> float:
    """CPU seconds this process has used, every thread counted (finished ones too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _replay_only(job: tuple[tuple[str, ...], object, list[str]]) -> float:
    """A task that replays and drops the pmfs: the CPU seconds the replay used (the replays-alone ceiling)."""
    start = _cpu_seconds()
    replay_probs(*job)
    return _cpu_seconds() - start


def _timed_sweeps(converted, settings, config, workers: int, repeats: int) -> tuple[float, list, list, float, dict]:
    """(cold seconds, warm sweep seconds, warm replays-alone (seconds, CPU seconds per replay), conversion
    seconds, the last result) on ``workers`` workers; the conversion of the log as partition tasks, on the
    started cluster."""
    jobs = [(tuple(map(str, converted.paths)), converted.counts, s.vw_args()) for _, s in settings]
    start = time.perf_counter()
    with replay_map(workers=workers) as cluster_map:
        run_sweep(converted, settings, config, map_function=cluster_map)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        ReplayLog.build(
            converted.bandit,
            converted.directory.with_name(f"converted-on-{workers}"),
            rows_per_partition=converted.rows_per_partition,
            map_function=cluster_map,
        )
        conversion = time.perf_counter() - start
        sweeps, replays = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            result = run_sweep(converted, settings, config, map_function=cluster_map).to_dict()
            sweeps.append(time.perf_counter() - start)
            start = time.perf_counter()
            cpu = list(cluster_map(_replay_only, jobs))
            replays.append((time.perf_counter() - start, statistics.median(cpu)))
    return cold, sweeps, replays, conversion, result


def run(quick: bool) -> str:
    n_rows = 3_000 if quick else 20_000
    naive_rows = 1_000 if quick else 5_000
    repeats = 2 if quick else 5
    env = SyntheticEnvironment(n_users=500, n_items=N_CANDIDATES, seed=0)
    log = env.generate_log(UniformPolicy(), n_rows, seed=0)
    setting = make_setting(BASE, "exploration.epsilon=0.1")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        start = time.perf_counter()
        converted = ReplayLog.build(log.bandit, Path(tmp) / "log", rows_per_partition=n_rows // 4)
        convert_rate = n_rows / (time.perf_counter() - start)
        start = time.perf_counter()
        list(map(cache_task, cache_jobs([(converted.paths, setting.vw_args())])))
        cache_rate = n_rows / (time.perf_counter() - start)
        driver, driver_cpu, naive = [], [], []
        for _ in range(repeats):
            start, cpu = time.perf_counter(), _cpu_seconds()
            replay_probs(converted.paths, converted.counts, setting.vw_args())
            driver.append(n_rows / (time.perf_counter() - start))
            driver_cpu.append(_cpu_seconds() - cpu)
            naive.append(_naive_rows_per_second(log, setting, naive_rows))
        settings = settings_from(None, [make_setting(BASE, s) for s in SWEEP], [])
        config = OptimizeConfig(estimators=("ipw", "snipw"), primary="ipw")
        sweep_repeats = max(2, repeats - 2)
        in_process, client_side = [], []
        for _ in range(sweep_repeats):
            start = time.perf_counter()
            local = run_sweep(converted, settings, config).to_dict()
            in_process.append(time.perf_counter() - start)
            start = time.perf_counter()
            RowEvaluator.build(converted, config).save(tmp)  # the client's serial share of a sweep
            client_side.append(time.perf_counter() - start)
        runs = {w: _timed_sweeps(converted, settings, config, w, sweep_repeats) for w in (1, 2)}
        same = local == runs[1][4] == runs[2][4]
    d, v = statistics.median(driver), statistics.median(naive)
    t0 = statistics.median(in_process)
    cold = {w: runs[w][0] for w in (1, 2)}
    warm = {w: statistics.median(runs[w][1]) for w in (1, 2)}
    alone = {w: statistics.median(t for t, _ in runs[w][2]) for w in (1, 2)}
    alone_cpu = {w: statistics.median(c for _, c in runs[w][2]) for w in (1, 2)}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            "## Replay of learning settings",
            "",
            f"Synthetic log, {N_CANDIDATES} candidates per decision, setting `exploration.epsilon=0.1`, "
            f"interactions user x item; medians of {repeats} repeats{' (quick run)' if quick else ''}.",
            "",
            "| path | rows/s (one core) |",
            "|---|---|",
            f"| VW's C++ driver over the converted log ({n_rows:,} rows, 4 partition files, from their VW caches) "
            f"| {d:,.0f} |",
            f"| naive per-row pyvw replay (build, format, parse, predict, learn; {naive_rows:,} rows) | {v:,.0f} |",
            f"| **ratio driver / naive** | **{d / v:.1f}x** |",
            f"| one-off conversion of the log (example builder + VW text) | {convert_rate:,.0f} |",
            f"| one-off VW caches of the 4 partitions (one parse of the text) | {cache_rate:,.0f} |",
            "",
            f"CPU seconds of one replay of the {n_rows:,} rows in process (VW's parser and learning threads, the "
            f"pmfs read back): {statistics.median(driver_cpu):.2f} s in {n_rows / d:.2f} s.",
            "",
            f"An {len(SWEEP)}-setting sweep (`run_sweep`, ipw and snipw; each task replays and estimates its "
            f"setting) on a Dask LocalCluster; warm: medians of {sweep_repeats} sweeps on a started cluster; "
            "cold: cluster start-up plus the first sweep. Replays alone: the same 8 replays as tasks, without "
            "estimation.",
            "",
            "| workers | sweep seconds, warm | sweep seconds, cold | replays alone, seconds | CPU s per replay |",
            "|---|---|---|---|---|",
            f"| in process (no Dask) | {t0:.2f} | - | - | - |",
            f"| 1 | {warm[1]:.2f} | {cold[1]:.2f} | {alone[1]:.2f} | {alone_cpu[1]:.2f} |",
            f"| 2 | {warm[2]:.2f} | {cold[2]:.2f} | {alone[2]:.2f} | {alone_cpu[2]:.2f} |",
            f"| **speed-up 1 -> 2 workers** | **{warm[1] / warm[2]:.2f}x** | {cold[1] / cold[2]:.2f}x | "
            f"{alone[1] / alone[2]:.2f}x | |",
            "",
            f"The conversion of the log as 4 partition tasks: {runs[1][3]:.2f} s on 1 worker, {runs[2][3]:.2f} s on "
            f"2 ({runs[1][3] / runs[2][3]:.2f}x; in process {n_rows / convert_rate:.2f} s).",
            "",
            f"The client's serial share of a sweep (reward model, evaluator saved for the workers): "
            f"{statistics.median(client_side):.2f} s. Results identical in process and on 1 and 2 workers: "
            f"{'yes' if same else 'NO'}. Load average (1, 5, 15 min) at the end of the run: {load}.",
        ]
    )


if __name__ == "__main__":
    print(run(quick=True))
