"""Off-policy estimators: IPW, SNIPW, DM, DR, SNDR, Switch-DR, DR-OS.

Each estimator is a small frozen dataclass with its paper's name (``name``), a short name
(``short_name``, used on the command line and in reports) and its formula in its docstring. The
definitions and the defaults of their parameters are those of Open Bandit Pipeline's
``obp/ope/estimators.py`` (same clipping, switching and shrinkage rules; lambda = inf for IPW, DR and
Switch-DR, lambda = 0 for DR-OS), so an estimate here matches OBP's on the same arrays. ``ips`` and
``snips`` (Vowpal Wabbit's names) are accepted for ``ipw`` and ``snipw``.

Notation, for row i of a log of n rows (one row per (decision, position)):

- x_i context, a_i logged action, k_i position, r_i reward, pi_b(a_i|x_i,k_i) = ``pscore[i]``;
- w_i = w(x_i, a_i) = pi_e(a_i|x_i,k_i) / pi_b(a_i|x_i,k_i), the importance weight;
- q_hat(x, a) the reward model's prediction at the row's position;
  q_hat(x_i, pi_e) = sum_a pi_e(a|x_i,k_i) q_hat(x_i, a);
- E_n[.] the empirical mean over the n rows.

An estimator does not compute V directly: it returns per-row ``Terms`` (see ``simulators.stats``) so the
same code gives the point estimate, its intervals, and partition-wise (Dask) evaluation. Every estimator
here estimates the value of the target policy, an expected reward, which lies in the reward range
[``reward_low``, ``reward_high``]; its ``Terms`` carry that range as ``bounds`` and the intervals are
clipped to it (the point estimate is not: it is the estimator's own value, as OBP reports it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from simulators.errors import EstimatorError
from simulators.stats import Terms


@dataclass(frozen=True, eq=False)
class OPEInputs:
    """The per-row arrays every estimator reads, computed once per (log, target, reward model).

    - ``reward`` (n,): r_i. ``weight`` (n,): w_i (unclipped).
    - ``q_factual`` (n,): q_hat(x_i, a_i); ``q_pi`` (n,): q_hat(x_i, pi_e). Both None without a reward model.
    - ``weight_bound``: an upper bound on w over the log's rows and all candidates, used for interval
      ranges: max_a pi_e/pi_b over the rows when the log records full logging distributions (inf when the
      target puts mass where the logging policy had none), else the largest observed weight.
    - ``reward_low``, ``reward_high``: the range rewards (and reward predictions) lie in.
    """

    reward: np.ndarray
    weight: np.ndarray
    q_factual: np.ndarray | None
    q_pi: np.ndarray | None
    weight_bound: float
    reward_low: float
    reward_high: float

    @property
    def reward_span(self) -> float:
        return self.reward_high - self.reward_low

    @property
    def value_bounds(self) -> tuple[float, float]:
        """Where the value of any policy lies: the reward range (an expectation of rewards)."""
        return self.reward_low, self.reward_high

    def require_reward_model(self, estimator: str) -> tuple[np.ndarray, np.ndarray]:
        if self.q_factual is None or self.q_pi is None:
            raise EstimatorError(f"{estimator} needs reward-model predictions (q_hat); none were given")
        return self.q_factual, self.q_pi


def _check_lambda(name: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise EstimatorError(f"{name}: lambda_ must be a non-negative number (inf allowed), got {value!r}")


@dataclass(frozen=True)
class Estimator(ABC):
    """Base class: ``terms`` gives the per-row terms (subclasses write ``row_terms``); ``row_range``
    bounds one row's term."""

    name: ClassVar[str]
    short_name: ClassVar[str]
    needs_reward_model: ClassVar[bool] = False

    @abstractmethod
    def row_terms(self, inputs: OPEInputs) -> Terms:
        """Per-row terms whose combination (see ``simulators.stats``) is the estimate."""

    def terms(self, inputs: OPEInputs) -> Terms:
        """``row_terms`` with the estimand's range (the reward range) as ``bounds``, for the intervals."""
        return replace(self.row_terms(inputs), bounds=inputs.value_bounds)

    @abstractmethod
    def row_range(self, inputs: OPEInputs) -> float:
        """An upper bound on max - min of one row's term, for the empirical Bernstein interval."""

    def estimate(self, inputs: OPEInputs) -> float:
        """The point estimate V_hat."""
        t = self.terms(inputs)
        value = float(np.mean(t.plain))
        if t.ratio_num is not None and t.ratio_den is not None:
            den = float(np.sum(t.ratio_den))
            value += float(np.sum(t.ratio_num)) / den if den != 0 else math.nan
        return value

    @property
    def label(self) -> str:
        """Short name with non-default parameters, e.g. ``ipw(lambda=50)``."""
        defaults = type(self).__dataclass_fields__
        params = [f"{k.rstrip('_')}={v:g}" for k, v in vars(self).items() if v != defaults[k].default]
        return f"{self.short_name}({', '.join(params)})" if params else self.short_name


def _weighted_range(inputs: OPEInputs, w_max: float) -> float:
    """Range of w r for w in [0, w_max] and r in [reward_low, reward_high]."""
    return w_max * (max(inputs.reward_high, 0.0) - min(inputs.reward_low, 0.0))


def _dr_range(inputs: OPEInputs, w_max: float) -> float:
    """Range of q_hat(x, pi_e) + w (r - q_hat(x, a)) with |r - q_hat| <= span and w in [0, w_max]."""
    span = inputs.reward_span
    return span + 2.0 * w_max * span


@dataclass(frozen=True)
class InverseProbabilityWeighting(Estimator):
    """Inverse Probability Weighting (IPW; Strehl et al. 2010, Dudik et al. 2014), with optional clipping.

    V_IPW = E_n[ min(w_i, lambda) r_i ]

    ``lambda_`` = inf (the default) gives the unbiased IPW estimator; a finite value clips the weights
    (``np.minimum(iw, lambda_)``, as OBP), trading bias for variance.
    """

    name: ClassVar[str] = "Inverse Probability Weighting"
    short_name: ClassVar[str] = "ipw"
    lambda_: float = math.inf

    def __post_init__(self) -> None:
        _check_lambda(self.short_name, self.lambda_)

    def row_terms(self, inputs: OPEInputs) -> Terms:
        return Terms(plain=inputs.reward * np.minimum(inputs.weight, self.lambda_))

    def row_range(self, inputs: OPEInputs) -> float:
        return _weighted_range(inputs, min(inputs.weight_bound, self.lambda_))


@dataclass(frozen=True)
class SelfNormalizedInverseProbabilityWeighting(Estimator):
    """Self-Normalized Inverse Probability Weighting (SNIPW; Swaminathan and Joachims 2015).

    V_SNIPW = E_n[ w_i r_i ] / E_n[ w_i ]

    Biased but consistent; always within the range of observed rewards.
    """

    name: ClassVar[str] = "Self-Normalized Inverse Probability Weighting"
    short_name: ClassVar[str] = "snipw"

    def row_terms(self, inputs: OPEInputs) -> Terms:
        w = inputs.weight
        return Terms(plain=np.zeros_like(w), ratio_num=w * inputs.reward, ratio_den=w)

    def row_range(self, inputs: OPEInputs) -> float:
        return _weighted_range(inputs, inputs.weight_bound)


@dataclass(frozen=True)
class DirectMethod(Estimator):
    """Direct Method (DM; Beygelzimer and Langford 2009).

    V_DM = E_n[ q_hat(x_i, pi_e) ] = E_n[ sum_a pi_e(a|x_i,k_i) q_hat(x_i, a) ]

    No importance weights: low variance, biased as far as the reward model is wrong.
    """

    name: ClassVar[str] = "Direct Method"
    short_name: ClassVar[str] = "dm"
    needs_reward_model: ClassVar[bool] = True

    def row_terms(self, inputs: OPEInputs) -> Terms:
        _, q_pi = inputs.require_reward_model(self.short_name)
        return Terms(plain=np.array(q_pi, dtype=np.float64))

    def row_range(self, inputs: OPEInputs) -> float:
        return inputs.reward_span


@dataclass(frozen=True)
class DoublyRobust(Estimator):
    """Doubly Robust (DR; Dudik, Erhan, Langford and Li 2014), with optional weight clipping.

    V_DR = E_n[ q_hat(x_i, pi_e) + min(w_i, lambda) (r_i - q_hat(x_i, a_i)) ]

    Unbiased when the propensities are right (lambda = inf), whatever the reward model; a good reward
    model lowers its variance below IPW's. A finite ``lambda_`` is DR with pessimistic shrinkage
    (Su et al. 2020), as OBP's ``DoublyRobust(lambda_=...)``.
    """

    name: ClassVar[str] = "Doubly Robust"
    short_name: ClassVar[str] = "dr"
    needs_reward_model: ClassVar[bool] = True
    lambda_: float = math.inf

    def __post_init__(self) -> None:
        _check_lambda(self.short_name, self.lambda_)

    def row_terms(self, inputs: OPEInputs) -> Terms:
        q_factual, q_pi = inputs.require_reward_model(self.short_name)
        w = np.minimum(inputs.weight, self.lambda_)
        return Terms(plain=q_pi + w * (inputs.reward - q_factual))

    def row_range(self, inputs: OPEInputs) -> float:
        return _dr_range(inputs, min(inputs.weight_bound, self.lambda_))


@dataclass(frozen=True)
class SelfNormalizedDoublyRobust(Estimator):
    """Self-Normalized Doubly Robust (SNDR; Kallus and Uehara 2019).

    V_SNDR = E_n[ q_hat(x_i, pi_e) + w_i (r_i - q_hat(x_i, a_i)) / E_n[w_i] ]
           = E_n[ q_hat(x_i, pi_e) ] + E_n[ w_i (r_i - q_hat(x_i, a_i)) ] / E_n[ w_i ]
    """

    name: ClassVar[str] = "Self-Normalized Doubly Robust"
    short_name: ClassVar[str] = "sndr"
    needs_reward_model: ClassVar[bool] = True

    def row_terms(self, inputs: OPEInputs) -> Terms:
        q_factual, q_pi = inputs.require_reward_model(self.short_name)
        w = inputs.weight
        return Terms(plain=np.array(q_pi, dtype=np.float64), ratio_num=w * (inputs.reward - q_factual), ratio_den=w)

    def row_range(self, inputs: OPEInputs) -> float:
        return _dr_range(inputs, inputs.weight_bound)


@dataclass(frozen=True)
class SwitchDoublyRobust(Estimator):
    """Switch Doubly Robust (Switch-DR; Wang, Agarwal and Dudik 2017), as OBP defines it.

    V_SwitchDR = E_n[ q_hat(x_i, pi_e) + w_i 1{w_i <= lambda} (r_i - q_hat(x_i, a_i)) ]

    Rows whose weight exceeds ``lambda_`` (tau in the paper) fall back to the reward model alone.
    lambda = inf is DR; lambda = 0 is DM. The default is OBP's, inf: by default Switch-DR *is* DR, and a
    threshold must be given to make it switch (``switch-dr:lambda=100`` drops the correction only for
    weights above 100).
    """

    name: ClassVar[str] = "Switch Doubly Robust"
    short_name: ClassVar[str] = "switch-dr"
    needs_reward_model: ClassVar[bool] = True
    lambda_: float = math.inf  # OBP's default (no switching); see the docstring

    def __post_init__(self) -> None:
        _check_lambda(self.short_name, self.lambda_)

    def row_terms(self, inputs: OPEInputs) -> Terms:
        q_factual, q_pi = inputs.require_reward_model(self.short_name)
        w = inputs.weight
        switch = (w <= self.lambda_).astype(np.float64)
        return Terms(plain=q_pi + switch * w * (inputs.reward - q_factual))

    def row_range(self, inputs: OPEInputs) -> float:
        return _dr_range(inputs, min(inputs.weight_bound, self.lambda_))


@dataclass(frozen=True)
class DoublyRobustWithShrinkage(Estimator):
    """Doubly Robust with Optimistic Shrinkage (DR-OS; Su, Dimakopoulou, Krishnamurthy and Dudik 2020).

    V_DRos = E_n[ q_hat(x_i, pi_e) + w_hat_i (r_i - q_hat(x_i, a_i)) ],
    w_hat_i = lambda w_i / (w_i^2 + lambda)

    lambda = inf is DR (w_hat = w); lambda = 0 is DM (w_hat = 0). Shrinks large weights smoothly;
    w_hat <= sqrt(lambda)/2. The default is OBP's, 0: by default DR-OS *is* DM, and a lambda must be given
    to make it shrink (``dr-os:lambda=100`` shrinks weights near 1 by about 1%; Su et al. tune lambda per
    log).
    """

    name: ClassVar[str] = "Doubly Robust with Optimistic Shrinkage"
    short_name: ClassVar[str] = "dr-os"
    needs_reward_model: ClassVar[bool] = True
    lambda_: float = 0.0  # OBP's default (full shrinkage, i.e. DM); see the docstring

    def __post_init__(self) -> None:
        _check_lambda(self.short_name, self.lambda_)

    def shrunk_weight(self, w: np.ndarray) -> np.ndarray:
        if math.isinf(self.lambda_):
            return w
        if self.lambda_ == 0.0:
            return np.zeros_like(w)  # the formula is 0 / 0 at w = 0 (where OBP returns NaN)
        return (self.lambda_ * w) / (w**2 + self.lambda_)

    def row_terms(self, inputs: OPEInputs) -> Terms:
        q_factual, q_pi = inputs.require_reward_model(self.short_name)
        return Terms(plain=q_pi + self.shrunk_weight(inputs.weight) * (inputs.reward - q_factual))

    def row_range(self, inputs: OPEInputs) -> float:
        w_max = inputs.weight_bound
        if not math.isinf(self.lambda_):
            # lambda w / (w^2 + lambda) rises up to w = sqrt(lambda), where it is sqrt(lambda) / 2.
            peak = math.sqrt(self.lambda_)
            w_max = peak / 2.0 if w_max >= peak else float(self.shrunk_weight(np.array(w_max)))
        return _dr_range(inputs, w_max)


ESTIMATORS: dict[str, Callable[..., Estimator]] = {
    cls.short_name: cls
    for cls in (
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
        DirectMethod,
        DoublyRobust,
        SelfNormalizedDoublyRobust,
        SwitchDoublyRobust,
        DoublyRobustWithShrinkage,
    )
}
ALL_ESTIMATORS: tuple[str, ...] = tuple(ESTIMATORS)
# Other names of the same estimators: Vowpal Wabbit (and much of the literature) says IPS and SNIPS.
ALIASES: dict[str, str] = {"ips": "ipw", "snips": "snipw"}


def make_estimator(spec: str) -> Estimator:
    """Build an estimator from ``name`` or ``name:lambda=VALUE`` (e.g. ``ipw:lambda=50``, ``dr-os:lambda=10``).

    ``name`` is a short name of ``ESTIMATORS`` or one of ``ALIASES`` (``ips`` is ``ipw``), in any case.
    Raises EstimatorError for an unknown name or a bad parameter.
    """
    name, _, params = spec.strip().partition(":")
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    if name not in ESTIMATORS:
        known = ", ".join([*ALL_ESTIMATORS, *(f"{alias} (= {to})" for alias, to in ALIASES.items())])
        raise EstimatorError(f"unknown estimator {name!r}; choose from {known}")
    kwargs: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in params.split(";"))):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in ("lambda", "lambda_"):
            raise EstimatorError(f"estimator {name}: unknown parameter {part!r} (only lambda=VALUE)")
        try:
            kwargs["lambda_"] = float(value)
        except ValueError as exc:
            raise EstimatorError(f"estimator {name}: lambda must be a number, got {value!r}") from exc
    try:
        return ESTIMATORS[name](**kwargs)
    except TypeError as exc:
        raise EstimatorError(f"estimator {name} takes no parameters") from exc
