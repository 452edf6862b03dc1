"""The command line's own error: printed as one line, exit status 2."""

from __future__ import annotations

from recommender.errors import RecommenderError


class CliError(RecommenderError):
    """A user-facing command-line error: printed as one line, ``recommender: error: <message>``, exit status 2."""
