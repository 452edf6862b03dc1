"""Evaluating a large log partition by partition on a Dask cluster.

This is the only module that imports ``dask``. Each partition (a LoggedBandit, or a path a worker reads,
e.g. one ``date=/hour=`` directory of the event log) is turned into mergeable statistics on a worker
(``simulators.evaluate.evaluate_one_partition``); the statistics are merged and finalized on the client.
The numbers equal ``simulators.evaluate.evaluate_partitioned`` run in process: partition i always draws
its bootstrap replicates from the stream (seed, i), and the statistics add exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from distributed import Client

from simulators.errors import SimulatorError
from simulators.estimators import Estimator
from simulators.evaluate import EvaluationConfig, Partition, PartitionStats, evaluate_partitioned
from simulators.results import PolicyEvaluation
from simulators.targets import Target


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
