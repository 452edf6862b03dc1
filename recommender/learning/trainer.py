"""The trainer: learns from the Parquet event log and publishes model versions (docs/learning.md).

Continuous mode (``Trainer``) follows the event log the joiners write: every ``trainer.poll_seconds`` it
lists the log's files, learns the ones it has not learned yet (their events in timestamp order), and every
``trainer.model_update_interval`` seconds publishes the model to the model store together with its
**checkpoint**: which files of which log these weights have learned. Serving workers follow the store's
``current`` pointer. Batch mode (``train_batch``) learns a chosen part of a log once and publishes; it is
what ``recommender policy train`` and ``recommender train --batch`` run.

Exactly once. The unit of progress is a log file. The joiners write each joined event into exactly one
file and make a file visible by an atomic rename once it is complete (``recommender.events.joiner``); files are
never modified afterwards. The trainer learns a file's events and only then adds the file to its in-memory
checkpoint; publishing writes the model and that checkpoint into one version directory, renamed into
place atomically (``recommender.policy.model_store``). So in every published version, the weights have learned
exactly the files its checkpoint lists, each once. A (re)started trainer loads the current version and
learns only files its checkpoint does not cover: events learned after the last publish and lost in a crash
are learned again from the files, never twice into a published model, never skipped.

Checkpoint format (JSON, in the version's ``metadata.json``)::

    {"format": 1, "logs": {"<absolute log root>": {
        "files": {"date=2024-05-01/hour=13": ["part-....parquet", ...], ...},
        "sealed": [["date=2024-04-01/hour=00", "date=2024-04-30/hour=23"], ...]}}}

A log is identified by its resolved directory. ``files`` lists the learned files of partitions still open.
An hour partition is **sealed** once it ended more than ``trainer.seal_after_seconds`` ago and every file in
it has been learned: its file names are dropped and the partition joins a run of sealed hours, which keeps
the checkpoint small (a run per stretch of hours with traffic). No joiner writes into an hour later than
``join.reward_wait_time + join.recovery_seconds`` after it, which ``seal_after_seconds`` must exceed; a file
that nevertheless appears in a sealed partition is not learned (logged).

Learning modes (``trainer.mode``): ``online`` and ``apprentice`` learn every joined event (apprentice
events are the baseline's, logged with probability 1); ``logging_only`` pauses learning: the trainer keeps
its position, and the events are learned if the mode goes back to ``online`` or ``apprentice``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recommender.errors import ExplorationChangeError, PolicyError, RecommenderError
from recommender.policy.model_store import ModelStore, ModelVersion
from recommender.policy.policy import EventRange, Policy
from recommender.records import JoinedEvent
from recommender.settings.loading import AppConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
ROOT_PARTITION = ""  # files directly under the log root (not in a date=/hour= partition)
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")
_HOUR = timedelta(hours=1)


class TrainerError(RecommenderError):
    """The trainer cannot start or continue (bad settings, unreadable model or checkpoint); says why."""


# ----- partitions -----------------------------------------------------------------------------------------


def partition_start(partition: str) -> datetime | None:
    """The start (UTC) of an hour partition ``date=YYYY-MM-DD/hour=HH``; None for anything else."""
    match = _PARTITION.match(partition)
    if match is None:
        return None
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}:00:00+00:00")


def partition_of(start: datetime) -> str:
    """The partition key of the hour starting at ``start`` (UTC)."""
    start = start.astimezone(UTC)
    return f"date={start:%Y-%m-%d}/hour={start:%H}"


@dataclass(frozen=True, order=True)
class LogFile:
    """One file of the event log: its partition (relative directory) and file name, and where it is."""

    partition: str
    name: str
    path: Path = field(compare=False)


def log_root_of(path: str | Path) -> Path:
    """The root of the event log holding ``path`` (a root, a partition directory or one file), resolved."""
    path = Path(path).resolve()
    if path.is_file():
        path = path.parent
    while path.name.startswith(("hour=", "date=")):
        path = path.parent
    return path


def _is_data_file(path: Path) -> bool:
    # Joiners write "<part>.parquet" under a temporary dot-name and rename it; "_staging" is theirs too.
    return path.suffix == ".parquet" and not path.name.startswith((".", "_")) and path.is_file()


def _is_data_dir(path: Path, prefix: str) -> bool:
    return path.name.startswith(prefix) and path.is_dir()


# ----- the checkpoint -------------------------------------------------------------------------------------


class LogCheckpoint:
    """Which files of one event log have been learned: open partitions by file name, sealed ones by hour."""

    def __init__(self, files: Mapping[str, Iterable[str]] | None = None, sealed: Iterable[Sequence[str]] = ()) -> None:
        self.files: dict[str, set[str]] = {p: set(names) for p, names in (files or {}).items()}
        self._sealed: list[tuple[datetime, datetime]] = []
        for first, last in sealed:
            start, end = partition_start(first), partition_start(last)
            if start is None or end is None or end < start:
                raise TrainerError(f"checkpoint: invalid sealed run {[first, last]!r}")
            self._sealed.append((start, end))
        self._sealed.sort()

    def is_sealed(self, partition: str) -> bool:
        start = partition_start(partition)
        return start is not None and any(first <= start <= last for first, last in self._sealed)

    def covers(self, file: LogFile) -> bool:
        """True when ``file`` was learned (or lies in a sealed partition)."""
        return file.name in self.files.get(file.partition, ()) or self.is_sealed(file.partition)

    def add(self, files: Iterable[LogFile]) -> None:
        for file in files:
            self.files.setdefault(file.partition, set()).add(file.name)

    def seal(self, partitions: Iterable[str]) -> None:
        """Seal hour partitions (every file in them learned): drop their names, extend the sealed runs."""
        hours = sorted({start for p in partitions if (start := partition_start(p)) is not None})
        for start in hours:
            self.files.pop(partition_of(start), None)
        runs = sorted(self._sealed + [(h, h) for h in hours])
        merged: list[tuple[datetime, datetime]] = []
        for first, last in runs:
            if merged and first <= merged[-1][1] + _HOUR:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        self._sealed = merged

    def date_fully_sealed(self, date: str, hours: Iterable[str]) -> bool:
        return all(self.is_sealed(f"date={date}/{hour}") for hour in hours)

    @property
    def file_count(self) -> int:
        return sum(len(names) for names in self.files.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": {p: sorted(names) for p, names in sorted(self.files.items()) if names},
            "sealed": [[partition_of(first), partition_of(last)] for first, last in self._sealed],
        }


class Checkpoint:
    """The trainer's checkpoint over every log it has learned from (keyed by resolved log root)."""

    def __init__(self, logs: Mapping[str, LogCheckpoint] | None = None) -> None:
        self.logs: dict[str, LogCheckpoint] = dict(logs or {})

    def for_log(self, root: str | Path) -> LogCheckpoint:
        return self.logs.setdefault(str(Path(root).resolve()), LogCheckpoint())

    def as_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "logs": {root: cp.as_dict() for root, cp in sorted(self.logs.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Checkpoint:
        if data is None:
            return cls()
        try:
            if data.get("format") != CHECKPOINT_FORMAT:
                raise TrainerError(f"checkpoint format {data.get('format')!r} is not {CHECKPOINT_FORMAT}")
            logs = data["logs"]
            return cls({root: LogCheckpoint(e.get("files", {}), e.get("sealed", ())) for root, e in logs.items()})
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise TrainerError(f"unreadable trainer checkpoint: {exc!r}") from exc

    @classmethod
    def of_version(cls, version: ModelVersion) -> Checkpoint:
        if version.checkpoint is None:
            log.warning("model version %s has no trainer checkpoint: every event-log file counts as not learned",
                        version.id)  # fmt: skip
        try:
            return cls.from_dict(version.checkpoint)
        except TrainerError as exc:
            raise TrainerError(f"model version {version.id}: {exc}") from exc


# ----- listing and reading the log ------------------------------------------------------------------------


def list_log_files(root: Path, checkpoint: LogCheckpoint, skip_dates: set[str] | None = None) -> list[LogFile]:
    """Files of the log at ``root`` not covered by ``checkpoint``, sorted by partition and name.

    ``skip_dates`` (optional cache, updated here): dates whose hours are all sealed are not listed again.
    """
    if not root.is_dir():
        return []
    found = [LogFile(ROOT_PARTITION, p.name, p) for p in root.iterdir() if _is_data_file(p)]
    for date_dir in root.iterdir():
        if not _is_data_dir(date_dir, "date="):
            continue
        date = date_dir.name.removeprefix("date=")
        if skip_dates is not None and date in skip_dates:
            continue
        hour_dirs = [h for h in date_dir.iterdir() if _is_data_dir(h, "hour=")]
        for hour_dir in hour_dirs:
            partition = f"{date_dir.name}/{hour_dir.name}"
            if checkpoint.is_sealed(partition):
                continue
            found.extend(LogFile(partition, p.name, p) for p in hour_dir.iterdir() if _is_data_file(p))
        if skip_dates is not None and hour_dirs and checkpoint.date_fully_sealed(date, (h.name for h in hour_dirs)):
            skip_dates.add(date)
    return sorted(f for f in found if not checkpoint.covers(f))


def read_files(files: Sequence[LogFile]) -> list[JoinedEvent]:
    """The joined events of ``files``, in timestamp order (then event id), as the log reader sorts them."""
    from recommender.events.log import read_table, table_to_events

    events: list[JoinedEvent] = []
    for file in files:
        events.extend(table_to_events(read_table(file.path)))
    events.sort(key=lambda e: (e.decision.timestamp, e.decision.event_id))
    return events


def _due_partitions(files: Iterable[LogFile], pending: Iterable[LogFile], horizon: datetime) -> set[str]:
    """Hour partitions among ``files`` that ended before ``horizon`` and have no file in ``pending``."""
    blocked = {f.partition for f in pending}
    due = set()
    for file in files:
        start = partition_start(file.partition)
        if start is not None and start + _HOUR <= horizon and file.partition not in blocked:
            due.add(file.partition)
    return due


def _groups(config: AppConfig) -> tuple[Any, Any]:
    features = config.features
    return features.groups[features.user_group], features.groups[features.item_group]


def model_store_for(config: AppConfig, root: str | Path | None = None) -> ModelStore:
    """The model store (``policy.model_dir`` unless ``root``) checking the configured feature schema."""
    user_group, item_group = _groups(config)
    return ModelStore(root or config.policy.model_dir, user_group=user_group, item_group=item_group)


def load_start(store: ModelStore, config: AppConfig) -> tuple[Policy, Checkpoint, str | None]:
    """The policy, checkpoint and version to continue from: the store's current version (under the
    configured exploration when VW can apply it), else a fresh model with an empty checkpoint."""
    current = store.current_version()
    if current is None:
        user_group, item_group = _groups(config)
        return Policy.create(config.policy, user_group, item_group), Checkpoint(), None
    version = store.version(current)
    checkpoint = Checkpoint.of_version(version)
    try:
        policy = store.load(current, exploration=config.policy.exploration)
    except ExplorationChangeError as exc:
        log.error("the configured exploration cannot apply to model %s, keeping its own: %s", current, exc)
        policy = store.load(current)
    return policy, checkpoint, current


# ----- batch mode -----------------------------------------------------------------------------------------


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
    from recommender.errors import EventLogError

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
            if since is not None and start + _HOUR <= since:
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
    store = store or model_store_for(config)
    root, selected = _select(Path(log_path), since, until)
    if resume and store.current_version() is not None:
        policy, checkpoint, _ = load_start(store, config)
    else:
        user_group, item_group = _groups(config)
        policy, checkpoint = Policy.create(config.policy, user_group, item_group), Checkpoint()
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
        log_checkpoint.seal(_due_partitions(files, (), horizon))
        event_range = learned_range.merged(range_before) if learned_range else range_before
        version = store.publish(
            policy, event_range=event_range, make_current=make_current, checkpoint=checkpoint.as_dict()
        )
    finally:
        policy.close()
    return BatchReport(learned, passes, learned_range, len(files), len(selected) - len(files), version)


# ----- continuous mode ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleReport:
    """One trainer cycle: events learned, events skipped as invalid, and the version published (if any)."""

    learned: int = 0
    skipped: int = 0
    published: ModelVersion | None = None


class Trainer:
    """Follows one event log, learns, and publishes versions to one model store (see the module docstring).

    ``settings`` is called at every cycle: the trainer section (mode, interval) and the exploration apply
    as they change. Run ``run_once`` yourself, or ``start``/``stop`` a background thread. One trainer per
    model store: a second one would publish over the first (the model store stays consistent, the
    learning does not).
    """

    def __init__(
        self,
        store: ModelStore,
        log_dir: str | Path,
        settings: Callable[[], AppConfig],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.log_root = Path(log_dir).resolve()
        self.settings = settings
        self.clock = clock
        config = settings()
        floor = config.join.reward_wait_time + config.join.recovery_seconds
        if config.trainer.seal_after_seconds <= floor:
            raise TrainerError(
                f"trainer.seal_after_seconds ({config.trainer.seal_after_seconds:g}) must exceed "
                f"join.reward_wait_time + join.recovery_seconds ({floor:g}): joiners may still write into an "
                "hour partition that long after it"
            )
        self.policy, self.checkpoint, self.version = load_start(store, config)
        self._skip_dates: set[str] = set()
        self._learned_since_publish = 0
        self._last_publish = clock()
        self._refused_exploration: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.cycles = 0
        log.info("trainer following %s from model %s (%d files learned in open partitions)", self.log_root,
                 self.version or "(fresh)", self._log_checkpoint.file_count)  # fmt: skip

    @property
    def _log_checkpoint(self) -> LogCheckpoint:
        return self.checkpoint.for_log(self.log_root)

    @property
    def pending_events(self) -> int:
        """Events learned since the last publish (lost, and learned again from the log, if the process dies)."""
        return self._learned_since_publish

    def run_once(self, *, publish: bool | None = None) -> CycleReport:
        """Learn the files not learned yet (unless the mode is ``logging_only``), then publish when the
        interval has passed (``publish=True``: now, if anything was learned; ``False``: not now)."""
        with self._lock:
            config = self.settings()
            self._follow_current(config)
            self._apply_exploration(config)
            learned = skipped = 0
            if config.trainer.mode != "logging_only":
                files = list_log_files(self.log_root, self._log_checkpoint, self._skip_dates)
                learned, skipped = self._learn_files(files)
            due = self.clock() - self._last_publish >= config.trainer.model_update_interval
            published = None
            if self._learned_since_publish and (publish or (publish is None and due)):
                published = self._publish(config)
            self.cycles += 1
            return CycleReport(learned, skipped, published)

    def _learn_files(self, files: list[LogFile]) -> tuple[int, int]:
        if not files:
            return 0, 0
        learned = skipped = 0
        for event in read_files(files):
            try:
                learned += self.policy.learn([event])
            except PolicyError as exc:
                # A record the policy cannot learn (e.g. a feature VW refuses) stays skipped: learning it
                # again after a restart would fail the same way. Logged, never silent.
                skipped += 1
                log.warning("event not learned: %s", exc)
        self._log_checkpoint.add(files)
        self._learned_since_publish += learned
        return learned, skipped

    def _publish(self, config: AppConfig) -> ModelVersion:
        horizon = datetime.fromtimestamp(self.clock(), UTC) - timedelta(seconds=config.trainer.seal_after_seconds)
        checkpoint = self._log_checkpoint
        candidates = [LogFile(p, n, self.log_root / p / n) for p, names in checkpoint.files.items() for n in names]
        # A partition is sealed only if a fresh listing finds nothing unlearned in it.
        pending = list_log_files(self.log_root, checkpoint) if candidates else []
        checkpoint.seal(_due_partitions(candidates, pending, horizon))
        document = self.checkpoint.as_dict()
        version = self.store.publish(self.policy, checkpoint=document)
        if version.checkpoint != document:  # same bytes published before with another position: say so
            log.error("model version %s already existed with another checkpoint; restarts resume from that one",
                      version.id)  # fmt: skip
        self.version = version.id
        self._learned_since_publish = 0
        self._last_publish = self.clock()
        log.info("published model version %s (%s events learned in total)", version.id,
                 version.event_range.count if version.event_range else 0)  # fmt: skip
        return version

    def _follow_current(self, config: AppConfig) -> None:
        """Someone else moved ``current`` (a rollback): continue from that version and its checkpoint."""
        current = self.store.current_version()
        if current is None or current == self.version:
            return
        log.warning("the current model is now %s (was %s): continuing from it and its checkpoint; %d events "
                    "learned since the last publish are dropped and learned again from the log", current,
                    self.version, self._learned_since_publish)  # fmt: skip
        policy, checkpoint, version = load_start(self.store, config)
        self.policy.close()
        self.policy, self.checkpoint, self.version = policy, checkpoint, version
        self._skip_dates.clear()
        self._learned_since_publish = 0

    def _apply_exploration(self, config: AppConfig) -> None:
        wanted = config.policy.exploration
        if wanted == self.policy.config.exploration or wanted == self._refused_exploration:
            return
        try:
            policy = self.policy.with_exploration(wanted)
        except ExplorationChangeError as exc:
            self._refused_exploration = wanted
            log.error("exploration change not applied to the trained model (it keeps %s): %s",
                      self.policy.exploration_settings(), exc)  # fmt: skip
            return
        if policy is not self.policy:
            self.policy.close()
            self.policy = policy

    # ----- background thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Run cycles every ``trainer.poll_seconds`` in a daemon thread until ``stop``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run_forever, name="trainer", daemon=True)
            self._thread.start()

    def run_forever(self) -> None:
        """Cycle until ``stop`` is called; failures are logged and retried with backoff."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = None
                backoff = 0.5
                self._stop.wait(self.settings().trainer.poll_seconds)
            except (RecommenderError, OSError) as exc:
                # Nothing is marked learned unless its file was learned whole: retrying is safe.
                self.last_error = str(exc)
                log.error("trainer cycle failed, retrying in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # the loop must outlive surprises; the published model is safe
                self.last_error = str(exc)
                log.exception("trainer cycle failed unexpectedly")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def stop(self, *, publish: bool = True, timeout: float = 30.0) -> ModelVersion | None:
        """Stop the thread; with ``publish``, one last cycle learns the files not learned yet and publishes
        everything learned since the last publish (returns that version, or None)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if not publish:
            return None
        try:
            return self.run_once(publish=True).published
        except (RecommenderError, OSError) as exc:
            log.error("could not learn and publish the last events on stop: %s", exc)
            return None

    def close(self) -> None:
        self.policy.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
