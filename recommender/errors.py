"""Exceptions of the recommender package. Each message names what was wrong and where."""


class RecommenderError(Exception):
    """Base class of the recommender's own errors."""


class ConfigError(RecommenderError, ValueError):
    """A configuration file is missing, unparsable or invalid; the message names the file and key path."""


class RecordError(RecommenderError, ValueError):
    """A Decision, Reward or JoinedEvent was built with invalid fields; the message names the field."""


class EventLogError(RecommenderError):
    """The Parquet event log could not be written or read, or does not match the log schema."""
