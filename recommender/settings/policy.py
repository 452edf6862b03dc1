"""Typed settings of the policy section (``policy`` in configs/*.yaml).

Three parts:

- ``exploration``: one small immutable settings model per exploration algorithm, all VW reductions of
  ``--cb_explore_adf`` (or ``--ccb_explore_adf`` in ``mode: ccb``). The algorithm is chosen by the
  ``algorithm`` key and dispatched through ``EXPLORATION_ALGORITHMS`` (name -> settings class); each class
  knows its own VW arguments, its validation, and which of its fields VW stores inside a trained model.
- ``learning``: cb_type, learning rate, power_t, l2.
- the model's shape: ``interactions`` (named namespaces: user, context, item, slot), ``bits``, ``seed``,
  and the serving-side ``item_cache_size``.

Everything is validated when the configuration is loaded; an invalid value or combination is refused with
a message naming the key, e.g. ``policy.exploration.epsilon: must be <= 1`` or
``policy.learning.cb_type: exploration 'squarecb' supports only cb_type 'mtr'``.

Which exploration changes keep the learned weights (``Policy.with_exploration``) was established
against VW 9 by reloading trained models with new arguments; see ``ExplorationSettings.change_refusal``
(and ``rescaled``: SquareCB's gamma_scale, which the policy applies to VW's pmf itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails


def _bounded(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> AfterValidator:
    """A float check whose messages read like the docs: ``must be <= 1``, ``must be > 0``."""

    def check(value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise ValueError(f"must be {'>' if low_open else '>='} {low:g}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high:g}")
        return value

    return AfterValidator(check)


Probability = Annotated[float, _bounded(0.0, 1.0)]
NonNegative = Annotated[float, _bounded(0.0)]
Positive = Annotated[float, _bounded(0.0, low_open=True)]


def _num(value: float) -> str:
    """A float as VW reads it on its command line (shortest exact repr, no exponent surprises)."""
    return repr(float(value))


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ExplorationSettings(_Settings):
    """Base class of the exploration settings. Subclasses set the class variables below.

    - ``family``: what VW stores in a saved model about the algorithm. Two settings of the same family
      run on the same weights.
    - ``structural``: fields VW stores inside the model. Changing one on a trained model needs a new model,
      unless the policy applies it to VW's pmf itself (``rescaled``).
    - ``accepts_from``: families whose trained weights this algorithm can take over unchanged.
    - ``cb_types``: the cb_type values VW supports with this algorithm (None: all).
    """

    algorithm: str
    family: ClassVar[str]
    structural: ClassVar[tuple[str, ...]] = ()
    accepts_from: ClassVar[frozenset[str]] = frozenset()
    cb_types: ClassVar[frozenset[str] | None] = None

    def vw_args(self) -> list[str]:
        """The VW command-line arguments of this exploration (added to ``--cb_explore_adf``)."""
        raise NotImplementedError

    def ensemble_size(self) -> int:
        """How many weight vectors VW keeps for this algorithm (memory scales with it)."""
        return 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings, as logged with every decision (``Decision.exploration``)."""
        return self.model_dump(mode="json", by_alias=True)

    def rescaled(self, mode: str) -> tuple[str, ...]:
        """The structural fields the policy applies itself, in policy ``mode`` (``cb`` or ``ccb``), by rescaling
        the pmf VW predicts (``recommender.policy.squarecb_scale``). VW keeps running with the value its
        reduction was created with (the model's own, recorded with the model), so such a field changes on a
        trained model without a VW reload. None by default."""
        return ()

    def change_refusal(self, new: ExplorationSettings, *, mode: str) -> str | None:
        """Why a model trained under ``self`` in policy ``mode`` cannot switch to ``new`` keeping its weights;
        None if it can.

        Measured against VW 9 (reloading with ``-i`` and new arguments): VW keeps the reduction of an
        algorithm and its structural fields in the model, so switching families either fails to load
        ("Model content is corrupted"), silently keeps the old algorithm, or -- worse -- loads the weights
        into a different layout and predicts garbage (epsilon-greedy -> bagging or RND). The one exception
        is epsilon-greedy/greedy -> softmax, which share cb_adf's single weight vector. A structural field
        the policy applies itself (``rescaled(mode)``) may change.
        """
        if new.family != self.family and self.family not in new.accepts_from:
            return (
                f"cannot switch exploration from {self.algorithm!r} to {new.algorithm!r} on a trained model: "
                "VW keeps the exploration reduction inside the model; train a new model instead"
            )
        if new.family == self.family:
            live = set(self.rescaled(mode)) & set(new.rescaled(mode))
            for name in (field for field in self.structural if field not in live):
                old_value, new_value = getattr(self, name), getattr(new, name)
                if old_value != new_value:
                    return (
                        f"cannot change exploration.{name} from {old_value!r} to {new_value!r} on a trained "
                        f"{self.algorithm} model: VW stores it inside the model; train a new model instead"
                    )
        return None


class EpsilonGreedy(ExplorationSettings):
    """Epsilon-greedy: the greedy action gets 1 - epsilon + epsilon/K, every other action epsilon/K."""

    algorithm: Literal["epsilon_greedy"] = "epsilon_greedy"
    epsilon: Probability = 0.1
    family: ClassVar[str] = "epsilon"

    def vw_args(self) -> list[str]:
        return ["--epsilon", _num(self.epsilon)]


class Greedy(ExplorationSettings):
    """Always the greedy action (epsilon-greedy with epsilon 0); for evaluation and fully exploited slots."""

    algorithm: Literal["greedy"] = "greedy"
    family: ClassVar[str] = "epsilon"

    def vw_args(self) -> list[str]:
        # VW's cb_explore_adf defaults to epsilon 0.05 when none is given: greedy must say 0 explicitly.
        return ["--epsilon", "0"]


class Softmax(ExplorationSettings):
    """Softmax over the predicted costs: p(a) ~ exp(-lambda * cost(a)), floored at epsilon/K."""

    algorithm: Literal["softmax"] = "softmax"
    lambda_: NonNegative = Field(default=1.0, alias="lambda")
    epsilon: Probability = 0.0
    family: ClassVar[str] = "softmax"
    accepts_from: ClassVar[frozenset[str]] = frozenset({"epsilon"})

    def vw_args(self) -> list[str]:
        return ["--softmax", "--lambda", _num(self.lambda_), "--epsilon", _num(self.epsilon)]


class Bagging(ExplorationSettings):
    """Bootstrap Thompson-like exploration: ``bags`` policies trained on resampled data vote."""

    algorithm: Literal["bagging"] = "bagging"
    bags: int = Field(default=5, ge=2, le=64)
    epsilon: Probability = 0.0
    greedify: bool = False  # always give the first policy's choice at least its greedy share
    family: ClassVar[str] = "bagging"
    structural: ClassVar[tuple[str, ...]] = ("bags", "greedify")

    def vw_args(self) -> list[str]:
        args = ["--bag", str(self.bags), "--epsilon", _num(self.epsilon)]
        return args + (["--greedify"] if self.greedify else [])

    def ensemble_size(self) -> int:
        return self.bags


class OnlineCover(ExplorationSettings):
    """Online cover (Agarwal et al. 2014): ``policies`` policies trained to disagree, psi-regularised.

    ``epsilon`` None (the default) is VW's own cover exploration: no ``--epsilon`` is passed, and VW
    floors each action's probability at min(1/K, 1/sqrt(t K)) after t learned examples (epsilon 1,
    decaying; cb_explore_adf_cover.cc). A number fixes the floor at epsilon/K instead. VW stores a given
    epsilon inside the model, so a model trained with one cannot go back to the decaying default (see
    ``change_refusal``); a model trained without one takes a fixed epsilon on reload.
    """

    algorithm: Literal["online_cover"] = "online_cover"
    policies: int = Field(default=3, ge=1, le=64)
    psi: NonNegative = 1.0
    nounif: bool = False  # do not explore uniformly over the zero-probability actions
    # None: VW's decaying epsilon (1/sqrt(t)); VW uses it only when --epsilon is absent.
    epsilon: Probability | None = None
    family: ClassVar[str] = "cover"
    structural: ClassVar[tuple[str, ...]] = ("policies", "psi")

    def vw_args(self) -> list[str]:
        args = ["--cover", str(self.policies), "--psi", _num(self.psi)]
        if self.epsilon is not None:
            args += ["--epsilon", _num(self.epsilon)]
        return args + (["--nounif"] if self.nounif else [])

    def change_refusal(self, new: ExplorationSettings, *, mode: str) -> str | None:
        """As the base class; also refuses dropping a fixed epsilon: VW keeps the model's stored epsilon
        when ``--epsilon`` is absent (measured with VW 9.11), so the decaying default would not apply."""
        refusal = super().change_refusal(new, mode=mode)
        if refusal is None and isinstance(new, OnlineCover) and self.epsilon is not None and new.epsilon is None:
            return (
                f"cannot change exploration.epsilon from {self.epsilon!r} to unset (VW's decaying default) on a "
                "trained online_cover model: VW stores a given epsilon inside the model; set an epsilon or "
                "train a new model instead"
            )
        return refusal

    def ensemble_size(self) -> int:
        return self.policies + 1


class SquareCB(ExplorationSettings):
    """SquareCB (Foster & Rakhlin 2020): inverse-gap weighting with gamma = gamma_scale * t^gamma_exponent.

    VW stores all three fields in the model (measured with VW 9.11): a reload with another ``gamma_scale`` or
    ``gamma_exponent`` is refused ("Disagreeing option values"); a model trained with ``elim`` keeps it when
    reloaded without (so that change is refused), while one trained without takes it. ``gamma_scale`` is
    nevertheless a live dial in mode ``cb`` without ``elim``: gamma is linear in it, so the policy turns the pmf
    of VW's own gamma_scale into the configured one exactly (``recommender.policy.squarecb_scale``). With
    ``elim`` (VW's count of surviving actions is not recoverable from the pmf) or in mode ``ccb`` (VW samples
    each slot from its own pmf) it needs a new model.
    """

    algorithm: Literal["squarecb"] = "squarecb"
    gamma_scale: Positive = 10.0
    gamma_exponent: NonNegative = 0.5
    elim: bool = False  # restrict to actions not eliminated by a confidence bound (RegCB-elim style)
    family: ClassVar[str] = "squarecb"
    structural: ClassVar[tuple[str, ...]] = ("gamma_scale", "gamma_exponent")
    cb_types: ClassVar[frozenset[str] | None] = frozenset({"mtr"})

    def rescaled(self, mode: str) -> tuple[str, ...]:
        return ("gamma_scale",) if mode == "cb" and not self.elim else ()

    def change_refusal(self, new: ExplorationSettings, *, mode: str) -> str | None:
        """As the base class (gamma_scale may change only where both settings rescale it); also refuses
        dropping ``elim``, which VW would keep."""
        refusal = super().change_refusal(new, mode=mode)
        if refusal is None and isinstance(new, SquareCB) and self.elim and not new.elim:
            return (
                "cannot change exploration.elim from True to False on a trained squarecb model: VW keeps elim "
                "inside the model; train a new model instead"
            )
        return refusal

    def vw_args(self) -> list[str]:
        args = ["--squarecb", "--gamma_scale", _num(self.gamma_scale), "--gamma_exponent", _num(self.gamma_exponent)]
        return args + (["--elim"] if self.elim else [])


class RND(ExplorationSettings):
    """Random network distillation: an exploration bonus from ``networks`` random projections."""

    algorithm: Literal["rnd"] = "rnd"
    networks: int = Field(default=3, ge=1, le=64)
    alpha: NonNegative = 0.1
    invlambda: Positive = 0.1
    epsilon: Probability = 0.0
    family: ClassVar[str] = "rnd"
    structural: ClassVar[tuple[str, ...]] = ("networks",)

    def vw_args(self) -> list[str]:
        return [
            "--rnd", str(self.networks),
            "--rnd_alpha", _num(self.alpha),
            "--rnd_invlambda", _num(self.invlambda),
            "--epsilon", _num(self.epsilon),
        ]  # fmt: skip

    def ensemble_size(self) -> int:
        return self.networks + 1


class ExploreFirst(ExplorationSettings):
    """Explore-first: uniform over the candidates for the first ``tau`` learned examples, then greedy."""

    algorithm: Literal["explore_first"] = "explore_first"
    tau: int = Field(default=1000, ge=1)
    epsilon: Probability = 0.0
    family: ClassVar[str] = "first"
    structural: ClassVar[tuple[str, ...]] = ("tau",)

    def vw_args(self) -> list[str]:
        return ["--first", str(self.tau), "--epsilon", _num(self.epsilon)]


# The dispatch table: the ``algorithm`` key of the YAML -> its settings class.
EXPLORATION_ALGORITHMS: dict[str, type[ExplorationSettings]] = {
    cls.model_fields["algorithm"].default: cls
    for cls in (EpsilonGreedy, Greedy, Softmax, Bagging, OnlineCover, SquareCB, RND, ExploreFirst)
}


def _default_algorithm(value: Any) -> Any:
    # ``exploration: {epsilon: 0.1}`` (no algorithm) keeps meaning epsilon-greedy.
    if isinstance(value, Mapping) and "algorithm" not in value:
        return {"algorithm": "epsilon_greedy", **value}
    return value


Exploration = Annotated[
    Union[EpsilonGreedy, Greedy, Softmax, Bagging, OnlineCover, SquareCB, RND, ExploreFirst],  # noqa: UP007
    Field(discriminator="algorithm"),
    BeforeValidator(_default_algorithm),
]


class LearningSettings(_Settings):
    """How VW learns (all of these can change on a trained model; VW does not store them)."""

    # Off-policy estimator turning logged (chosen, cost, probability) into a regression target:
    # mtr (importance-weighted regression on the chosen action only; VW's default and usually best),
    # ips, or dr (doubly robust).
    cb_type: Literal["mtr", "ips", "dr"] = "mtr"
    learning_rate: Positive = 0.5  # VW's default -l
    power_t: NonNegative = 0.5  # learning-rate decay exponent; 0 for non-stationary traffic
    l2: NonNegative = 0.0

    def vw_args(self) -> list[str]:
        args = ["--cb_type", self.cb_type, "-l", _num(self.learning_rate), "--power_t", _num(self.power_t)]
        return args + (["--l2", _num(self.l2)] if self.l2 else [])


# Logical namespace name -> the VW namespace (VW keys interactions on the first character).
NAMESPACES: dict[str, str] = {"user": "User", "context": "Context", "item": "Item", "slot": "Slot"}
# In an interaction, every namespace (VW's wildcard ``:``), the JSON ones of schema-free features included, whose
# names are the JSON keys (recommender.policy.examples): ``[any, any]`` is Personalizer's ``-q ::``.
ANY_NAMESPACE = "any"

# VW keeps adaptive and normalized accumulators next to each weight (stride 4 floats of 4 bytes).
_BYTES_PER_WEIGHT = 4 * 4
# A typo like ``bits: 32`` would make every worker allocate tens of GiB and be OOM-killed at start.
MAX_WEIGHTS_BYTES = 4 * 2**30


class PolicyConfig(_Settings):
    """The ``policy`` section. Frozen; build a changed copy with ``model_copy(update=...)``."""

    # cb: one item per page (--cb_explore_adf). ccb: multi-slot pages, conditional contextual bandits
    # (--ccb_explore_adf); each slot gets its own item and probability, no item twice.
    mode: Literal["cb", "ccb"] = "cb"
    exploration: Exploration = EpsilonGreedy()
    learning: LearningSettings = LearningSettings()
    # Feature crosses between namespaces; without user x item the model cannot personalise.
    interactions: tuple[tuple[str, ...], ...] = (("user", "item"), ("context", "item"))
    bits: int = Field(default=18, ge=1, le=32)  # 2^bits hashed weights (per ensemble member)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)  # VW --random_seed (bagging, cover, RND init)
    # Per-worker LRU of built item examples (each ~32 KiB inside VW): predicting over cached items costs
    # VW's scoring time only, not re-building and re-parsing 200 items per request.
    item_cache_size: int = Field(default=4096, ge=0, le=1_000_000)
    model_dir: str = Field(default="var/models", min_length=1)  # the model store root (relative: to cwd)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_with_key_paths(cls, data: Any, handler: Any) -> PolicyConfig:
        # Two things pydantic does not do by itself: the discriminated union puts the algorithm tag into
        # error locations ("exploration.epsilon_greedy.epsilon"), which is dropped so messages name the
        # YAML key path; and cross-field checks blame the key they are about, not the whole section.
        try:
            config = handler(data)
        except ValidationError as exc:
            errors = []
            for error in exc.errors():
                loc = error["loc"]
                if len(loc) >= 2 and loc[0] == "exploration" and loc[1] in EXPLORATION_ALGORITHMS:
                    loc = (loc[0], *loc[2:])
                details: dict[str, Any] = {"type": error["type"], "loc": loc, "input": error["input"]}
                if "ctx" in error:
                    details["ctx"] = error["ctx"]
                errors.append(InitErrorDetails(**details))  # type: ignore[typeddict-item]
            raise ValidationError.from_exception_data(exc.title, errors) from None
        problem = config._combination_problem()
        if problem is not None:
            key, message = problem
            error = InitErrorDetails(type="value_error", loc=key, input=data, ctx={"error": ValueError(message)})
            raise ValidationError.from_exception_data(cls.__name__, [error])
        return config

    @field_validator("interactions")
    @classmethod
    def _known_namespaces(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        seen = set()
        for interaction in value:
            if not 2 <= len(interaction) <= 3:
                raise ValueError(f"{list(interaction)}: an interaction crosses 2 or 3 namespaces")
            unknown = [name for name in interaction if name not in NAMESPACES and name != ANY_NAMESPACE]
            if unknown:
                names = [*sorted(NAMESPACES), ANY_NAMESPACE]
                raise ValueError(f"{list(interaction)}: unknown namespace {unknown[0]!r}; use {names}")
            key = tuple(sorted(interaction))
            if key in seen:
                raise ValueError(f"{list(interaction)} is listed twice")
            seen.add(key)
        return value

    def _combination_problem(self) -> tuple[tuple[str, ...], str] | None:
        """The first invalid combination of otherwise valid keys, as (key path, message)."""
        allowed = self.exploration.cb_types
        if allowed is not None and self.learning.cb_type not in allowed:
            return ("learning", "cb_type"), (
                f"exploration {self.exploration.algorithm!r} supports only cb_type "
                f"{' or '.join(repr(t) for t in sorted(allowed))}, not {self.learning.cb_type!r}"
            )
        if self.mode == "cb" and any("slot" in interaction for interaction in self.interactions):
            return ("interactions",), "the 'slot' namespace exists only in mode 'ccb'"
        size = self.weights_bytes()
        if size > MAX_WEIGHTS_BYTES:
            return ("bits",), (
                f"2^{self.bits} weights x {self.exploration.ensemble_size()} ensemble member(s) need "
                f"{size / 2**30:.1f} GiB per worker, above the {MAX_WEIGHTS_BYTES // 2**30} GiB limit"
            )
        return None

    def weights_bytes(self) -> int:
        """Approximate memory of the weight table in bytes (per worker process)."""
        return 2**self.bits * _BYTES_PER_WEIGHT * self.exploration.ensemble_size()

    def interaction_args(self) -> list[str]:
        args = []
        for interaction in self.interactions:
            args += ["--interactions", "".join(NAMESPACES.get(name, ":")[0] for name in interaction)]
        return args

    def vw_args(self, *, reload: bool = False) -> list[str]:
        """The full VW command line (without ``-i``), as a token list.

        ``reload=True`` leaves out ``--random_seed``: VW stores a derived seed inside models that use it
        (bagging, RND) and refuses a different one on reload ("Disagreeing option values").
        """
        reduction = "--ccb_explore_adf" if self.mode == "ccb" else "--cb_explore_adf"
        args = [reduction, *self.exploration.vw_args(), *self.learning.vw_args(), *self.interaction_args()]
        args += ["-b", str(self.bits), "--quiet"]
        if not reload:
            args += ["--random_seed", str(self.seed)]
        return args


_EXPLORATION_ADAPTER: TypeAdapter[Any] = TypeAdapter(Exploration)


def parse_exploration(value: ExplorationSettings | Mapping[str, Any]) -> ExplorationSettings:
    """Exploration settings from a mapping (the YAML ``exploration`` block) or an existing object.

    Raises ``pydantic.ValidationError`` (a ValueError) naming the offending key.
    """
    if isinstance(value, ExplorationSettings):
        return value
    return _EXPLORATION_ADAPTER.validate_python(_default_algorithm(value))


def exploration_errors(exc: ValidationError) -> str:
    """The errors of validating exploration settings as one line naming each key, e.g.
    ``exploration.epsilon: must be <= 1``."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if str(part) not in EXPLORATION_ALGORITHMS]
        if loc and loc[0] != "exploration":
            loc.insert(0, "exploration")
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{'.'.join(loc) or 'exploration'}: {message}")
    return "; ".join(lines)
