"""What a log reader found: rows read and kept, and every bad row counted by reason, with examples.

Readers never drop a row silently: each excluded row is counted under one reason, and the first few of
each reason are kept as examples (where in the file, and what was wrong). ``strict`` readers raise
instead of excluding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from simulators.errors import LogReadError

# Reasons a row is excluded (one per row: the first problem found).
MISSING_PROPENSITY = "missing_propensity"
PROPENSITY_OUT_OF_RANGE = "propensity_out_of_range"
UNKNOWN_ACTION = "unknown_action"
MISSING_REWARD = "missing_reward"
BAD_DISTRIBUTION = "bad_distribution"
MALFORMED = "malformed"

EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class BadRow:
    """One excluded row: ``location`` (e.g. ``line 17`` or ``row 3 (event_id=...)``), ``reason``, ``detail``."""

    location: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ReadReport:
    """Outcome of reading one log. ``counts`` maps reason -> number of excluded rows."""

    source: str
    format: str
    rows_read: int
    rows_kept: int
    counts: Mapping[str, int]
    examples: tuple[BadRow, ...]
    notes: tuple[str, ...] = ()

    @property
    def rows_bad(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One paragraph: kept/read, then each reason with its count and first example."""
        text = f"{self.source} ({self.format}): kept {self.rows_kept} of {self.rows_read} rows"
        if self.rows_bad:
            parts = []
            for reason, count in sorted(self.counts.items()):
                example = next((e for e in self.examples if e.reason == reason), None)
                parts.append(f"{count} {reason}" + (f" (e.g. {example.location}: {example.detail})" if example else ""))
            text += "; excluded " + "; ".join(parts)
        for note in self.notes:
            text += f"; {note}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "bad_rows": dict(self.counts),
            "examples": [{"location": e.location, "reason": e.reason, "detail": e.detail} for e in self.examples],
            "notes": list(self.notes),
        }


@dataclass
class BadRowCollector:
    """Accumulates bad rows while a reader scans a file."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)

    def add(self, location: str, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= EXAMPLES_PER_REASON:
            self.examples.append(BadRow(location, reason, detail))

    def add_many(self, locations: list[str], reason: str, details: list[str]) -> None:
        """Add several rows of one reason (vectorized readers)."""
        for location, detail in zip(locations[:EXAMPLES_PER_REASON], details[:EXAMPLES_PER_REASON], strict=False):
            self.examples.append(BadRow(location, reason, detail))
        self.counts[reason] += len(locations)

    def report(
        self, source: str, format: str, rows_read: int, rows_kept: int, *, strict: bool, notes: tuple[str, ...] = ()
    ) -> ReadReport:
        report = ReadReport(
            source=source,
            format=format,
            rows_read=rows_read,
            rows_kept=rows_kept,
            counts=MappingProxyType(dict(self.counts)),
            examples=tuple(self.examples),
            notes=notes,
        )
        if strict and report.rows_bad:
            raise LogReadError(f"bad rows in strict mode: {report.summary()}")
        if rows_kept == 0:
            raise LogReadError(f"no usable rows: {report.summary()}")
        return report


@dataclass(frozen=True, eq=False)
class LoadedLog:
    """A reader's result: the validated ``bandit`` data and the ``report`` of what was excluded."""

    bandit: Any  # simulators.data.LoggedBandit (Any here to keep this module free of numpy)
    report: ReadReport
