"""Evaluating a large log partition by partition on a Dask cluster.

This is the only module that imports ``dask``. Each partition (a LoggedBandit, or a path a worker reads,
e.g. one ``date=/hour=`` directory of the event log) is turned into mergeable statistics on a worker
(``simulators.evaluate.evaluate_one_partition``); the statistics are merged and finalized on the client.
The numbers equal ``simulators.evaluate.evaluate_partitioned`` run in process: partition i always draws
its bootstrap replicates from the stream (seed, i), and the statistics add exactly.

Settings of a sweep (``simulators.optimize``) are independent tasks: ``replay_map`` gives a map function
that runs each on a worker (``simulators.replay_tasks``). A task carries *paths* (the converted log's
partition files, the saved evaluator) and the setting, never the log: the files are written once and read by
the workers (on a cluster beyond this machine, put them on a shared filesystem with ``workdir``). Each task
replays *and* estimates, and returns the setting's result (a few hundred numbers, not its (n, K) pmfs). A
replay is deterministic in (files, arguments), so the results equal the in-process run. The conversion of
the log runs through the same map, one task per partition (``simulators.replay_log.convert_partition``),
each reading its rows from a file and writing its VW file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from distributed import Client, LocalCluster

from simulators.errors import SimulatorError
from simulators.estimators import Estimator
from simulators.evaluate import EvaluationConfig, Partition, PartitionStats, evaluate_partitioned
from simulators.results import PolicyEvaluation
from simulators.targets import Target

T = TypeVar("T")
R = TypeVar("R")


def list_event_log_partitions(root: str | Path) -> list[Path]:
    """The ``date=YYYY-MM-DD/hour=HH`` directories under an event-log root, in time order."""
    root = Path(root)
    if not root.is_dir():
        raise SimulatorError(f"event log root {root} is not a directory")
    parts = sorted(p for p in root.glob("date=*/hour=*") if p.is_dir())
    if not parts:
        raise SimulatorError(f"no date=/hour= partitions under {root}")
    return parts


def evaluate_on_cluster(
    client: Client,
    partitions: Sequence[Partition],
    target: Target | str,
    estimators: Sequence[str | Estimator] | None = None,
    config: EvaluationConfig | None = None,
) -> PolicyEvaluation:
    """``evaluate_partitioned`` with the partitions evaluated as tasks on ``client``'s cluster."""

    def cluster_map(function: Callable[..., PartitionStats], jobs: Iterable[tuple]) -> list[PartitionStats]:
        jobs = list(jobs)
        futures = client.map(function, jobs, key=[f"ope-partition-{job[0]}-{id(jobs)}" for job in jobs])
        return client.gather(futures)

    return evaluate_partitioned(partitions, target, estimators, config, map_function=cluster_map)


@contextmanager
def replay_map(*, workers: int = 0, scheduler: str | None = None) -> Iterator[Callable[..., list[Any]]]:
    """A map function running replay jobs on a Dask cluster: a LocalCluster of ``workers`` single-threaded
    processes (a VW run holds the GIL), or the existing cluster at ``scheduler``. Closed on exit."""
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        if workers < 1:
            raise SimulatorError(f"a local cluster needs >= 1 worker, got {workers}")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)

    def cluster_map(function: Callable[[T], R], jobs: Iterable[T]) -> list[R]:
        jobs = list(jobs)
        futures = client.map(function, jobs, key=[f"replay-{i}-{id(jobs)}" for i in range(len(jobs))], pure=False)
        return client.gather(futures)

    try:
        yield cluster_map
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
