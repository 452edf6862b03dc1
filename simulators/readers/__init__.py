"""Log readers: our Parquet event log, the Open Bandit Dataset layout, VW DSJSON.

``read_log(path, format="auto")`` picks the reader: ``obd`` for a ``.csv`` file or a directory holding
``item_context.csv``; ``dsjson`` for a ``.json``/``.jsonl``/``.dsjson`` file or a directory of them;
``event-log`` otherwise (a Parquet file or a hive-partitioned directory). Every reader returns a
``LoadedLog`` (the ``LoggedBandit`` and a ``ReadReport`` of excluded rows).
"""

from __future__ import annotations

from pathlib import Path

from simulators.errors import LogReadError
from simulators.readers.bad_rows import BadRow, LoadedLog, ReadReport
from simulators.readers.dsjson import read_dsjson
from simulators.readers.event_log import read_event_log
from simulators.readers.obd import read_obd

FORMATS = ("auto", "event-log", "obd", "dsjson")
_JSON_SUFFIXES = (".json", ".jsonl", ".dsjson")

__all__ = ["FORMATS", "BadRow", "LoadedLog", "ReadReport", "detect_format", "read_log"]


def detect_format(path: str | Path) -> str:
    """The format ``read_log`` would use for ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise LogReadError(f"log {path} does not exist")
    if path.is_file():
        if path.suffix == ".csv":
            return "obd"
        if path.suffix in _JSON_SUFFIXES:
            return "dsjson"
        return "event-log"
    if (path / "item_context.csv").exists():
        return "obd"
    if any(p.suffix in _JSON_SUFFIXES for p in path.rglob("*")) and not any(path.rglob("*.parquet")):
        return "dsjson"
    return "event-log"


def read_log(path: str | Path, format: str = "auto", *, strict: bool = False) -> LoadedLog:
    """Read a log of any supported format. ``strict`` raises on any bad row instead of excluding it."""
    if format not in FORMATS:
        raise LogReadError(f"unknown log format {format!r}; choose from {', '.join(FORMATS)}")
    if format == "auto":
        format = detect_format(path)
    if format == "obd":
        return read_obd(path, strict=strict)
    if format == "dsjson":
        return read_dsjson(path, strict=strict)
    return read_event_log(path, strict=strict)
