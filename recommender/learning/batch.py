"""Batch mode: learn a chosen part of the event log once and publish (``recommender policy train`` and
``recommender train --batch`` run it; warm starts and backfills)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recommender.errors import EventLogError, PolicyError
from recommender.learning.checkpoint import (
    HOUR,
    ROOT_PARTITION,
    Checkpoint,
    LogCheckpoint,
    LogFile,
    due_partitions,
    list_log_files,
    log_root_of,
    partition_start,
    read_files,
)
from recommender.policy.model_dir import ModelVersion
from recommender.policy.model_store import ModelStore, load_serving_model, open_model_store
from recommender.policy.policy import EventRange, Policy
from recommender.settings.app import AppConfig


@dataclass(frozen=True)
class BatchReport:
    """What ``train_batch`` did."""

    learned: int  # examples learned (events x passes)
    passes: int
    events: EventRange | None  # the range of the events learned (each counted once)
    files: int  # files learned
    skipped_files: int  # files the starting checkpoint already covered
    version: ModelVersion


def _select(path: Path, since: datetime | None, until: datetime | None) -> tuple[Path, list[LogFile]]:
    if not path.exists():
        raise EventLogError(f"event log {path} does not exist")
    root = log_root_of(path)
    resolved = path.resolve()
    if resolved.is_file():
        parent = resolved.parent
        partition = ROOT_PARTITION if parent == root else parent.relative_to(root).as_posix()
        files = [LogFile(partition, resolved.name, resolved)]
    else:
        files = [f for f in list_log_files(root, LogCheckpoint()) if f.path.resolve().is_relative_to(resolved)]
    if since is not None or until is not None:
        kept = []
        for file in files:
            start = partition_start(file.partition)
            if start is None:
                continue  # not an hour partition: outside any time range
            if since is not None and start + HOUR <= since:
                continue
            if until is not None and start >= until:
                continue
            kept.append(file)
        files = kept
    return root, files


def train_batch(
    config: AppConfig,
    log_path: str | Path,
    *,
    store: ModelStore | None = None,
    passes: int = 1,
    resume: bool = False,
    make_current: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> BatchReport:
    """Learn a part of a Parquet event log once (``passes`` times) and publish the model.

    ``log_path``: a log root, an hour partition or one file. ``since``/``until`` (UTC) select whole hour
    partitions: those overlapping [since, until). Starts from a fresh model of ``config.policy``, or with
    ``resume`` from the store's current version and its checkpoint (files it covers are skipped, so a
    backfill never learns an event twice). The published version's checkpoint adds the files learned.
    Raises EventLogError (missing or unreadable log), PolicyError (an event cannot be learned),
    ModelStoreError.
    """
    if passes < 1:
        raise PolicyError(f"passes must be >= 1, got {passes}")
    store = store or open_model_store(config)
    root, selected = _select(Path(log_path), since, until)
    if resume:
        policy, version = load_serving_model(store, config)
        checkpoint = Checkpoint() if version is None else Checkpoint.of_version(version)
    else:
        policy, checkpoint = Policy.create(config.policy, config.user_group, config.item_group), Checkpoint()
    try:
        log_checkpoint = checkpoint.for_log(root)
        files = [f for f in selected if not log_checkpoint.covers(f)]
        events = read_files(files)
        range_before = policy.events_seen
        learned = 0
        for _ in range(passes):
            learned += policy.learn(events)
        learned_range = None
        if events:
            first, last = events[0].decision, events[-1].decision
            learned_range = EventRange(len(events), first.event_id, last.event_id, first.timestamp, last.timestamp)
        log_checkpoint.add(files)
        horizon = (now or datetime.now(UTC)) - timedelta(seconds=config.trainer.seal_after_seconds)
        log_checkpoint.seal(due_partitions(files, (), horizon))
        event_range = learned_range.merged(range_before) if learned_range else range_before
        version = store.publish(
            policy, event_range=event_range, make_current=make_current, checkpoint=checkpoint.as_dict()
        )
    finally:
        policy.close()
    return BatchReport(learned, passes, learned_range, len(files), len(selected) - len(files), version)
