"""Exceptions of the recommender package. Each message names what was wrong and where."""


class RecommenderError(Exception):
    """Base class of the recommender's own errors."""


class ConfigError(RecommenderError, ValueError):
    """A configuration file is missing, unparsable or invalid; the message names the file and key path."""


class RecordError(RecommenderError, ValueError):
    """A Decision, Reward or JoinedEvent was built with invalid fields; the message names the field."""


class EventLogError(RecommenderError):
    """The Parquet event log could not be written or read, or does not match the log schema."""


class PolicyError(RecommenderError):
    """The contextual-bandit policy could not build, score or learn from an example; says which and why."""


class ExampleError(PolicyError, ValueError):
    """A feature row cannot be turned into a VW example (wrong type, non-finite number, wrong vector length)."""


class ExplorationChangeError(PolicyError, ValueError):
    """An exploration change that cannot keep the learned weights (VW would refuse it or reset the model)."""


class ModelStoreError(RecommenderError):
    """The model store could not publish, list, load or roll back a model version."""


class ModelNotFoundError(ModelStoreError, LookupError):
    """The requested model version (or a current version) does not exist in the store."""


class ModelCorruptError(ModelStoreError):
    """A stored model or its metadata is unreadable, fails its checksum, or VW cannot load it."""


class ModelSchemaMismatchError(ModelStoreError):
    """A model was trained with a different feature schema than the one the caller serves with."""


class TrainerError(RecommenderError):
    """The trainer cannot start or continue (bad settings, unreadable model or checkpoint); says why."""
