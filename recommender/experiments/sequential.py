"""Always-valid confidence sequences for a mean and for a difference of two arms' means.

The boundary is the two-sided normal mixture (Robbins 1970; Howard, Ramdas, McAuliffe and Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. (14)), written in the scale of the
estimate as in the mixture SPRT of Johari, Koomen, Pekelis and Walsh (2017/2022, "Always valid inference").
With an estimate theta_hat_t of theta whose variance is V_t (decreasing as data arrive), mixing the
likelihood ratio of N(theta, V_t) against N(theta_0, V_t) over theta ~ N(theta_0, tau^2) gives

    Lambda_t = sqrt(V_t / (V_t + tau^2)) * exp( tau^2 (theta_hat_t - theta_0)^2 / (2 V_t (V_t + tau^2)) ),

a nonnegative martingale under theta = theta_0 with Lambda_0 = 1. By Ville's inequality
P(exists t: Lambda_t >= 1/alpha) <= alpha, so the set of theta_0 with Lambda_t < 1/alpha,

    theta_hat_t +- sqrt( V_t (V_t + tau^2) / tau^2 * log( (V_t + tau^2) / (V_t alpha^2) ) ),

covers theta at every t simultaneously with probability >= 1 - alpha: ops may look after every event and stop
whenever the sequence excludes 0, without inflating the false-positive rate beyond alpha.

Assumptions, stated plainly:
- Observations are independent across decisions, each arm's rewards identically distributed (users are
  assigned to arms at random, sticky per user: a user's repeated decisions are treated as independent).
- The estimate is Gaussian with variance V_t: exact for Gaussian rewards of known variance; for bounded
  rewards (clicks) it holds asymptotically, by the strong invariance principle (the time-uniform CLT of
  Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas 2023, "Time-uniform central limit theory and asymptotic
  confidence sequences"), with the plug-in variance V_t = s_A^2 / n_A + s_B^2 / n_B. Early looks with few
  events can be anti-conservative, hence ``min_events`` in the analysis before any decision is taken.
- ``tau`` (``mixture_scale``, in reward units) is fixed before the data: it sets where the sequence is
  tightest (about where V_t is near tau^2 / (2 log(1/alpha))), never its validity. Set it near the effect
  the experiment is meant to find.
"""

from __future__ import annotations

import math

import numpy as np


def normal_mixture_half_width(variance: float, *, mixture_scale: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at an estimate of variance ``variance``.

    ``variance`` V_t > 0 (reward units squared); ``mixture_scale`` tau > 0; ``alpha`` in (0, 1). Returns
    sqrt(V (V + tau^2) / tau^2 * log((V + tau^2) / (V alpha^2))); infinity when V is not positive and finite.
    """
    return float(normal_mixture_half_widths(np.asarray([variance]), mixture_scale=mixture_scale, alpha=alpha)[0])


def normal_mixture_half_widths(variance: np.ndarray, *, mixture_scale: float, alpha: float) -> np.ndarray:
    """Vectorized ``normal_mixture_half_width`` over an array of variances (any shape, same shape out)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not mixture_scale > 0.0:
        raise ValueError(f"mixture_scale must be positive, got {mixture_scale}")
    v = np.asarray(variance, dtype=np.float64)
    tau2 = mixture_scale * mixture_scale
    ok = np.isfinite(v) & (v > 0.0)
    safe = np.where(ok, v, 1.0)
    width = np.sqrt(safe * (safe + tau2) / tau2 * np.log((safe + tau2) / (safe * alpha * alpha)))
    return np.where(ok, width, np.inf)


def mixture_likelihood_ratio(estimate: float, variance: float, *, mixture_scale: float, null: float = 0.0) -> float:
    """The mSPRT statistic Lambda_t of the module docstring for H0: theta = ``null``; reject when >= 1/alpha."""
    if not (math.isfinite(variance) and variance > 0.0):
        return 1.0
    tau2 = mixture_scale * mixture_scale
    exponent = tau2 * (estimate - null) ** 2 / (2.0 * variance * (variance + tau2))
    return math.sqrt(variance / (variance + tau2)) * math.exp(min(exponent, 700.0))


def difference_variance(
    var_control: np.ndarray, n_control: np.ndarray, var_arm: np.ndarray, n_arm: np.ndarray
) -> np.ndarray:
    """V = s_arm^2 / n_arm + s_control^2 / n_control (arrays broadcast; NaN where a count is zero)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(var_arm) / np.asarray(n_arm) + np.asarray(var_control) / np.asarray(n_control)
