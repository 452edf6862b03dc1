"""Exceptions raised by the feature store. Every message says what was wrong and where."""


class FeatureStoreError(Exception):
    """Base class of every feature-store error."""


class FeatureSchemaError(FeatureStoreError, ValueError):
    """A value, row or frame does not match its feature group's declared schema."""


class FeatureLoadError(FeatureStoreError):
    """A batch load failed part way; ``rows_written`` says how far it got.

    The group's live version is never touched by a failed load: the partial version is dropped.
    """

    def __init__(self, message: str, *, rows_written: int = 0) -> None:
        super().__init__(message)
        self.rows_written = rows_written


class FeatureStoreUnavailable(FeatureStoreError, ConnectionError):
    """The backend (Redis) could not be reached or answered too slowly. The URL is redacted."""


class UnsupportedRedisVersion(FeatureStoreError):
    """The installed redis-py lacks an internal that ``features.redis_store.DirectCommands`` relies on.

    The message names the installed redis-py version and each missing internal; setup.cfg pins redis-py to
    the range these internals were tested with.
    """
