"""Exceptions of the offline evaluation package.

All subclass ``recommender.errors.RecommenderError`` so the command line prints them as one line and exits
with status 2. Messages say what was wrong and where (file, row, field).
"""

from __future__ import annotations

from recommender.errors import RecommenderError


class SimulatorError(RecommenderError):
    """Base class of the errors raised by ``simulators``."""


class BanditDataError(SimulatorError, ValueError):
    """A ``LoggedBandit`` or ``ActionDist`` was built from inconsistent arrays (shape, range, sum)."""


class LogReadError(SimulatorError):
    """A log could not be read: missing file, unknown format, missing columns, or (when strict) bad rows."""


class TargetSpecError(SimulatorError, ValueError):
    """A target-policy specification could not be parsed or does not fit the log it is applied to."""


class TargetUnavailableError(SimulatorError):
    """A target policy needs a component that is not available (e.g. a model store or a policy module)."""


class EstimatorError(SimulatorError, ValueError):
    """An estimator was configured with invalid parameters or given inputs it cannot use."""
