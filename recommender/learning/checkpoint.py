"""The trainer's position in the event log, and listing and reading the log's files.

Checkpoint format (JSON, in the version's ``metadata.json``)::

    {"format": 1, "logs": {"<absolute log root>": {
        "files": {"date=2024-05-01/hour=13": ["part-....parquet", ...], ...},
        "marks": {"date=2024-05-01/hour=13": "part-20240501T134500000000", ...},
        "sealed": [["date=2024-04-01/hour=00", "date=2024-04-30/hour=23"], ...]}}}

A log is identified by its resolved directory. ``files`` lists the learned files of partitions still open
that are newer than the partition's **mark**: every file of an open partition whose name sorts before its
mark has been learned. A file's name starts with the time its joiner named it (``part-<UTC time>-...``,
``recommender.events.log``), and a file appears within seconds of being named; so once a file was named
more than ``trainer.mark_after_seconds`` ago and nothing older is unlearned, its name is replaced by the
mark. That keeps the checkpoint (and each model version's metadata) bounded by the files of the last
``mark_after_seconds``, whatever the traffic and ``seal_after_seconds``. A file that nevertheless appears
below a mark is not learned, like one in a sealed partition.
An hour partition is **sealed** once it ended more than ``trainer.seal_after_seconds`` ago and every file in
it has been learned: its file names are dropped and the partition joins a run of sealed hours, which keeps
the checkpoint small (a run per stretch of hours with traffic). No joiner writes into an hour later than
``join.reward_wait_time + join.recovery_seconds`` after it, which ``seal_after_seconds`` must exceed; a file
that nevertheless appears in a sealed partition is not learned (logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recommender.errors import TrainerError
from recommender.events.log import read_table, table_to_events
from recommender.policy.model_dir import ModelVersion
from recommender.records import JoinedEvent

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
ROOT_PARTITION = ""  # files directly under the log root (not in a date=/hour= partition)
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")
HOUR = timedelta(hours=1)


# ----- partitions -----------------------------------------------------------------------------------------


def partition_start(partition: str) -> datetime | None:
    """The start (UTC) of an hour partition ``date=YYYY-MM-DD/hour=HH``; None for anything else."""
    match = _PARTITION.match(partition)
    if match is None:
        return None
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}:00:00+00:00")


def mark_of(moment: datetime) -> str:
    """A mark sorting just before the names of the files a joiner named at ``moment`` or later."""
    return f"part-{moment.astimezone(UTC):%Y%m%dT%H%M%S%f}"


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
        self.marks: dict[str, str] = {}
        self._sealed: list[tuple[datetime, datetime]] = []
        for first, last in sealed:
            start, end = partition_start(first), partition_start(last)
            if start is None or end is None or end < start:
                raise TrainerError(f"checkpoint: invalid sealed run {[first, last]!r}")
            self._sealed.append((start, end))
        self._sealed.sort()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogCheckpoint:
        checkpoint = cls(data.get("files", {}), data.get("sealed", ()))
        checkpoint.marks = {str(p): str(mark) for p, mark in data.get("marks", {}).items()}
        return checkpoint

    def is_sealed(self, partition: str) -> bool:
        start = partition_start(partition)
        return start is not None and any(first <= start <= last for first, last in self._sealed)

    def covers(self, file: LogFile) -> bool:
        """True when ``file`` was learned (or lies in a sealed partition)."""
        return (file.name < self.marks.get(file.partition, "") or file.name in self.files.get(file.partition, ())
                or self.is_sealed(file.partition))  # fmt: skip

    def advance_marks(self, pending: Iterable[LogFile], horizon: datetime) -> None:
        """Raise each open partition's mark to the name of a file written at ``horizon``, or to its oldest
        ``pending`` (not yet learned) file if that is older, and drop the learned names below it."""
        first_pending: dict[str, str] = {}
        for file in pending:
            if file.name < first_pending.get(file.partition, "\uffff"):
                first_pending[file.partition] = file.name
        limit = mark_of(horizon)
        for partition, names in self.files.items():
            mark = min(limit, first_pending.get(partition, limit))
            if mark > self.marks.get(partition, ""):
                self.marks[partition] = mark
                names.difference_update([name for name in names if name < mark])

    def add(self, files: Iterable[LogFile]) -> None:
        for file in files:
            self.files.setdefault(file.partition, set()).add(file.name)

    def seal(self, partitions: Iterable[str]) -> None:
        """Seal hour partitions (every file in them learned): drop their names, extend the sealed runs."""
        hours = sorted({start for p in partitions if (start := partition_start(p)) is not None})
        for start in hours:
            self.files.pop(partition_of(start), None)
            self.marks.pop(partition_of(start), None)
        runs = sorted(self._sealed + [(h, h) for h in hours])
        merged: list[tuple[datetime, datetime]] = []
        for first, last in runs:
            if merged and first <= merged[-1][1] + HOUR:
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
        document: dict[str, Any] = {
            "files": {p: sorted(names) for p, names in sorted(self.files.items()) if names},
            "sealed": [[partition_of(first), partition_of(last)] for first, last in self._sealed],
        }
        if self.marks:
            document["marks"] = dict(sorted(self.marks.items()))
        return document


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
            return cls({root: LogCheckpoint.from_dict(entry) for root, entry in logs.items()})
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
    events: list[JoinedEvent] = []
    for file in files:
        events.extend(table_to_events(read_table(file.path)))
    events.sort(key=lambda e: (e.decision.timestamp, e.decision.event_id))
    return events


def due_partitions(files: Iterable[LogFile], pending: Iterable[LogFile], horizon: datetime) -> set[str]:
    """Hour partitions among ``files`` that ended before ``horizon`` and have no file in ``pending``."""
    blocked = {f.partition for f in pending}
    due = set()
    for file in files:
        start = partition_start(file.partition)
        if start is not None and start + HOUR <= horizon and file.partition not in blocked:
            due.add(file.partition)
    return due
