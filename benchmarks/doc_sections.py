"""docs/benchmarks.md and its sections: each benchmark's figures live between ``<!-- bench:<name> -->`` and
``<!-- /bench:<name> -->``, so one benchmark can be rerun alone without touching the others' figures.

Apart from ``benchmarks.run`` so that a single benchmark (``make soak``, ``make chaos``) can store its section
without importing every other benchmark.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def replace_section(document: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in document and end in document:
        before, rest = document.split(start, 1)
        _, after = rest.split(end, 1)
        return before + block + after
    return document.rstrip() + "\n\n" + block + "\n"


def store_section(document: str, name: str, section: str) -> str:
    """``document`` with benchmark ``name``'s section replaced by ``section`` (heading first), stamped with the
    time and machine of the measurement under its heading."""
    now = datetime.now(UTC)
    stamp = f"_Measured {now:%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python {platform.python_version()}._"
    heading, _, rest = section.strip().partition("\n")
    return replace_section(document, name, f"{heading}\n\n{stamp}\n{rest}")
