"""``EventRange``: which logged events a model has learned from (kept with each model version)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class EventRange:
    """Which logged events a model has learned from (timestamps are decision times, UTC)."""

    count: int
    first_event_id: str
    last_event_id: str
    first_timestamp: datetime
    last_timestamp: datetime

    def merged(self, other: EventRange | None) -> EventRange:
        """The range covering both ``self`` and ``other`` (counts add up)."""
        if other is None:
            return self
        first = self if self.first_timestamp <= other.first_timestamp else other
        last = self if self.last_timestamp >= other.last_timestamp else other
        return EventRange(
            count=self.count + other.count,
            first_event_id=first.first_event_id,
            last_event_id=last.last_event_id,
            first_timestamp=first.first_timestamp,
            last_timestamp=last.last_timestamp,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first_event_id": self.first_event_id,
            "last_event_id": self.last_event_id,
            "first_timestamp": self.first_timestamp.isoformat(),
            "last_timestamp": self.last_timestamp.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventRange:
        return cls(
            count=int(data["count"]),
            first_event_id=str(data["first_event_id"]),
            last_event_id=str(data["last_event_id"]),
            first_timestamp=datetime.fromisoformat(data["first_timestamp"]),
            last_timestamp=datetime.fromisoformat(data["last_timestamp"]),
        )
