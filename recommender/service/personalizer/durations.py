"""ISO 8601 durations (``PT5M``, ``P1DT2H``, ``PT0.5S``), as Personalizer's service configuration spells
times, to and from seconds. Years and months have no fixed length and are refused."""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_SECONDS = {"weeks": 604_800.0, "days": 86_400.0, "hours": 3_600.0, "minutes": 60.0, "seconds": 1.0}


def parse_duration(text: str) -> float:
    """Seconds of an ISO 8601 duration. Raises ValueError naming the text."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT5M, PT30S or P1D")
    return sum(float(value) * _SECONDS[unit] for unit, value in match.groupdict().items() if value is not None)


def format_duration(seconds: float) -> str:
    """The ISO 8601 duration of ``seconds`` (``PT1M``, ``PT1.5S``, ``P1DT1H``)."""
    days, rest = divmod(float(seconds), 86_400.0)
    hours, rest = divmod(rest, 3_600.0)
    minutes, secs = divmod(rest, 60.0)
    date = f"{int(days)}D" if days else ""
    parts = [f"{int(hours)}H" if hours else "", f"{int(minutes)}M" if minutes else ""]
    if secs or not (date or any(parts)):
        parts.append(f"{secs:g}S")
    time_part = "".join(parts)
    return f"P{date}" + (f"T{time_part}" if time_part else "")
