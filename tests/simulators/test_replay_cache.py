"""Replays read VW's binary cache of each partition: the same pmfs as the text, the cache written once per
partition and bits, safely when several processes build it at once, and rebuilt when its partition changes."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from recommender.policy.vw import read_action_probs, run_driver
from recommender.settings.policy import PolicyConfig
from simulators.batch_scheduling import batch_scheduling
from simulators.replay import make_setting, replay_probs
from simulators.replay_cache import cache_bits, cache_jobs, cache_path, caches_of, ensure_cache
from simulators.replay_log import ReplayLog
from simulators.synthetic import SyntheticEnvironment, UniformPolicy

BASE = PolicyConfig(interactions=(("user", "item"),))
SETTINGS = (
    "default",
    "exploration.algorithm=bagging,exploration.bags=3",
    "exploration.algorithm=squarecb",
    "exploration.algorithm=softmax,exploration.lambda=5",
    "exploration.algorithm=online_cover,exploration.policies=3",
    "learning.cb_type=dr,learning.learning_rate=2.0",
    "bits=12",
)


def _log(tmp_path, rows: int = 600, per_partition: int = 200, name: str = "log", seed: int = 1) -> ReplayLog:
    env = SyntheticEnvironment(n_users=40, n_items=6, seed=3)
    return ReplayLog.build(env.generate_log(UniformPolicy(), rows, seed=seed).bandit, tmp_path / name,
                           rows_per_partition=per_partition)  # fmt: skip


def _text_replay(log: ReplayLog, args: list[str], tmp_path) -> np.ndarray:
    """The replay over the text (one concatenated file), as before caches."""
    whole = tmp_path / "whole.vw"
    whole.write_text("".join(p.read_text() for p in log.paths))
    run_driver(args, whole, tmp_path / "text.pred")
    return read_action_probs(tmp_path / "text.pred", log.counts)


def test_a_replay_from_the_caches_gives_the_pmfs_of_the_text_to_the_last_digit(tmp_path):
    log = _log(tmp_path)
    for overrides in SETTINGS:
        setting = make_setting(BASE, {} if overrides == "default" else overrides)
        for ignore in ((), ("user",)):
            args = setting.vw_args() + [a for ns in ignore for a in ("--ignore", ns[0].upper())]
            assert cache_bits(args) == setting.config.bits
            assert np.array_equal(replay_probs(log.paths, log.counts, args), _text_replay(log, args, tmp_path)), args
    assert sorted(p.name for p in caches_of(log.paths[0])) == sorted(
        cache_path(log.paths[0], bits).name for bits in (12, BASE.bits)
    )


def test_each_partition_is_cached_once_per_bits_next_to_it(tmp_path):
    log = _log(tmp_path)
    args = make_setting(BASE, {}).vw_args()
    replay_probs(log.paths, log.counts, args)
    caches = [cache_path(p, BASE.bits) for p in log.paths]
    assert all(c.parent == p.parent and c.is_file() for c, p in zip(caches, log.paths, strict=True))
    written = [c.stat().st_mtime_ns for c in caches]
    replay_probs(log.paths, log.counts, make_setting(BASE, "exploration.epsilon=0.3").vw_args())
    assert [c.stat().st_mtime_ns for c in caches] == written  # read again, not rewritten
    jobs = cache_jobs([(log.paths, args), (log.paths, make_setting(BASE, "bits=12").vw_args()), (log.paths, args)])
    assert len(jobs) == 2 * len(log.paths)  # distinct (partition, bits) only
    assert not list(log.directory.glob("*.tmp")) and not list(log.directory.glob("*.writing"))


def test_arguments_that_change_parsing_read_the_text():
    args = make_setting(BASE, {}).vw_args()
    assert cache_bits(args) == 18
    assert cache_bits([*args, "--hash", "all"]) is None
    assert cache_bits([*args, "--sort_features"]) is None
    assert cache_bits(["--ccb_explore_adf", "-b", "18"]) is None
    assert cache_bits(["--cb_explore_adf", "-b", "twenty"]) is None
    assert cache_bits(["--cb_explore_adf", "--bit_precision=20"]) == 20


def _build(partition: str) -> tuple[str, int]:
    path = ensure_cache(partition, 18)
    return str(path), os.getpid()


def test_processes_building_the_same_cache_at_once_leave_one_whole_file(tmp_path):
    log = _log(tmp_path, rows=1500, per_partition=1500)
    partition = str(log.paths[0])
    with ProcessPoolExecutor(max_workers=3) as pool:
        built = list(pool.map(_build, [partition] * 6))
    assert {path for path, _ in built} == {str(cache_path(partition, 18))}
    assert not list(log.directory.glob("*.tmp")) and not list(log.directory.glob("*.writing"))
    args = make_setting(BASE, {}).vw_args()
    assert np.array_equal(replay_probs(log.paths, log.counts, args), _text_replay(log, args, tmp_path))


def test_a_reconverted_partition_is_not_read_through_its_old_cache(tmp_path):
    first = _log(tmp_path, seed=1)
    args = make_setting(BASE, {}).vw_args()
    replay_probs(first.paths, first.counts, args)
    second = _log(tmp_path, seed=2)  # other rows, into the same files
    assert all(not caches_of(p) for p in second.paths)  # conversion removed them
    assert np.array_equal(replay_probs(second.paths, second.counts, args), _text_replay(second, args, tmp_path))
    # a cache older than its partition (written there by other means) is rebuilt too
    os.utime(second.paths[0], ns=(cache_path(second.paths[0], 18).stat().st_mtime_ns + 10**9,) * 2)
    before = cache_path(second.paths[0], 18).stat().st_mtime_ns
    ensure_cache(second.paths[0], 18)
    assert cache_path(second.paths[0], 18).stat().st_mtime_ns > before


def test_batch_scheduling_covers_the_threads_started_inside_and_is_undone():
    # Linux, where the project runs and CI runs it: a test process starts under the default policy.
    seen: list[int] = []
    before = os.sched_getscheduler(0)
    assert before == os.SCHED_OTHER
    with batch_scheduling():
        inner = os.sched_getscheduler(0)
        thread = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
        thread.start()
        thread.join()
    assert os.sched_getscheduler(0) == before
    assert inner == os.SCHED_BATCH and seen == [os.SCHED_BATCH]


def test_prediction_files_are_read_exactly_as_float_reads_them(tmp_path):
    counts = np.array([3, 2, 3])
    text = "0:0.333333,1:0.333333,2:0.333334\n\n1:0.9995,0:0.0005\n\n2:1e-06,0:0.999998,1:1e-06\n\n"
    (tmp_path / "p.txt").write_text(text)
    probs = read_action_probs(tmp_path / "p.txt", counts, normalise=False)
    expected = np.array([[0.333333, 0.333333, 0.333334], [0.0005, 0.9995, 0.0], [0.999998, 1e-06, 1e-06]])
    assert np.array_equal(probs, expected)
