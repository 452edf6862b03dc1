"""The log format of the project's long-running processes (service workers, joiner, trainer), in one place."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Send log records of ``level`` and above to stderr in ``LOG_FORMAT`` (a no-op once configured)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
