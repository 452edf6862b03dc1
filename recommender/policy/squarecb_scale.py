"""SquareCB served at another ``gamma_scale`` than the one VW's reduction was built with, exactly.

VW's SquareCB without ``--elim`` (``cb_explore_adf_squarecb.cc``, unchanged from VW 9.11.0 on) takes the
predicted costs yhat of the K actions, the best action b (the lowest cost; on equal costs the lowest action
index, since csoaa_ldf sorts (score, action) pairs before SquareCB takes the first strict minimum) and gives

    p_a = 1 / (K + gamma * (yhat_a - yhat_b))    for every a != b,      p_b = 1 - sum_{a != b} p_a,

with gamma = gamma_scale * t^gamma_exponent (t: examples learned). It neither clips nor floors them (its
epsilon floor is 0: this project never passes ``--epsilon`` to SquareCB), and learning does not depend on
gamma (SquareCB learns without importance weights). gamma is linear in gamma_scale, so the pmf of the model's
own scale s_model gives the pmf of any scale s:

    p'_a = 1 / (K + (s / s_model) * (1/p_a - K))    for every a != b,     p'_b = 1 - sum_{a != b} p'_a.

Every p_a of a != b is <= 1/K, so p_b >= 1/K is the largest probability; a tie for the largest happens only
when the pmf is uniform, which the rescale keeps. An action that ties with b on cost has p_a = 1/K and keeps
it, whichever of them VW took as b. The result matches VW built at s up to VW's float32 rounding (~1e-7).

Not with ``--elim`` (VW divides by a count of surviving actions the pmf does not reveal, and eliminated
actions get 0) nor in ``mode: ccb`` (VW samples each slot from its own pmf): there ``gamma_scale`` stays
structural (``recommender.settings.policy.SquareCB.rescaled``).
"""

from __future__ import annotations

import numpy as np

from recommender.settings.policy import ExplorationSettings, SquareCB


def vw_exploration(served: ExplorationSettings, own: ExplorationSettings, mode: str) -> ExplorationSettings:
    """The settings VW's reduction runs with when ``served`` is served from a model whose reduction was built
    with ``own``: ``served`` with the model's own value of every field it rescales (``rescaled(mode)``)."""
    if served.family != own.family:
        return served
    kept = {name: getattr(own, name) for name in served.rescaled(mode)}
    return served.model_copy(update=kept) if kept else served


def gamma_ratio(served: ExplorationSettings, vw: ExplorationSettings) -> float | None:
    """s / s_model: the served ``gamma_scale`` over the one VW runs with, or None when the pmf VW predicts is
    served as it is (not SquareCB, or the same scale)."""
    if not isinstance(served, SquareCB) or not isinstance(vw, SquareCB) or served.gamma_scale == vw.gamma_scale:
        return None
    # VW holds gamma_scale as a float32: the ratio of the float32 values is the ratio of VW's gammas.
    return float(np.float32(served.gamma_scale)) / float(np.float32(vw.gamma_scale))


def rescale_pmf(pmf: np.ndarray, ratio: float) -> np.ndarray:
    """The SquareCB pmf under ``ratio`` times the gamma that produced ``pmf`` (see the module docstring).

    ``pmf``: shape (K,), float64, VW's SquareCB pmf (K >= 1, sums to 1); ``ratio`` > 0. Returns a new array of
    shape (K,), float64, summing to 1 (the best action takes the rest).
    """
    k = pmf.shape[0]
    if k < 2:
        return pmf.copy()
    best = int(np.argmax(pmf))
    with np.errstate(divide="ignore"):
        # gamma * (yhat_a - yhat_b); VW's float32 rounding can put 1/p a hair below K for a tie with b.
        gap = np.maximum(1.0 / pmf - k, 0.0)
    out = 1.0 / (k + ratio * gap)  # p_a == 0 (an overflowed gap): 1/inf = 0, as VW would give
    out[best] = 0.0
    out[best] = 1.0 - out.sum()
    return out
