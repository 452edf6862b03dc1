"""VW argument strings (Azure Personalizer's learning policies, VW model headers) <-> the ``policy`` section.

Personalizer stored its learning policy as a JSON file, ``{"name": ..., "arguments": "--cb_explore_adf
--epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"}``. ``policy_from_arguments(arguments, base)``
maps such a string onto a ``PolicyConfig`` (``base`` supplies what VW arguments do not say: the item
cache, the model directory, and any key the string leaves out keeps VW's default, not ``base``'s):

============================================  ======================================================
VW argument                                   ``policy`` key
============================================  ======================================================
``--cb_explore_adf`` / ``--ccb_explore_adf``  ``mode: cb`` / ``ccb`` (one of them is required)
``--epsilon E``                               ``exploration`` epsilon (epsilon_greedy: VW's default 0.05
                                              when absent; 0 is ``greedy``)
``--softmax [--lambda L]``                    ``softmax`` {lambda, epsilon}
``--bag N [--greedify]``                      ``bagging`` {bags, greedify, epsilon}
``--cover N [--psi P] [--nounif]``            ``online_cover`` {policies, psi, nounif, epsilon}
``--squarecb [--gamma_scale G]``              ``squarecb`` {gamma_scale, gamma_exponent, elim}
``[--gamma_exponent X] [--elim]``
``--rnd N [--rnd_alpha A]``                   ``rnd`` {networks, alpha, invlambda, epsilon}
``[--rnd_invlambda I]``
``--first T``                                 ``explore_first`` {tau, epsilon}
``--cb_type mtr|ips|dr``                      ``learning.cb_type`` (VW's default mtr)
``-l``/``--learning_rate``, ``--power_t``,    ``learning.learning_rate`` (0.5), ``power_t`` (0.5), ``l2`` (0)
``--l2``
``-q``/``--quadratic``, ``--cubic``,          ``interactions``: namespace letters U (user), C (context),
``--interactions``                            I (item), S (slot, ccb only); ``:`` (VW's wildcard, every
                                              namespace, the JSON ones of schema-free features included)
                                              is ``any``: ``-q ::`` is ``[[any, any]]``, ``-q U:``
                                              ``[[user, any]]`` (see ``_expand``)
``-b``/``--bit_precision``                    ``bits`` (VW's default 18)
``--random_seed``                             ``seed``
============================================  ======================================================

Accepted and ignored, because they say nothing about learning: ``--quiet``, ``--dsjson``, ``--json``,
``--no_stdin``, ``--preserve_performance_counters``, ``--save_resume``, and what VW adds to a model's
stored arguments by itself (``--cb_adf``, ``--csoaa_ldf``, ``--csoaa_rank``, ``--cb_sample``,
``-i``/``--initial_regressor``). Every other argument is refused: ``VWArgumentsError`` names each one.

``arguments_from_policy(config)`` is the inverse: the string of ``config`` (without ``--quiet``; ``[any, any]``
as ``-q ::``, Personalizer's spelling); mapping it back gives ``config`` again (with ``base`` = ``config``).
"""

from __future__ import annotations

import itertools
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from recommender.errors import ConfigError
from recommender.settings.policy import (
    ANY_NAMESPACE,
    NAMESPACES,
    RND,
    Bagging,
    EpsilonGreedy,
    ExplorationSettings,
    ExploreFirst,
    Greedy,
    LearningSettings,
    OnlineCover,
    PolicyConfig,
    Softmax,
    SquareCB,
)


class VWArgumentsError(ConfigError):
    """VW arguments that do not map onto the policy section (the message names every one)."""


# Options that take a value, by every spelling VW accepts, -> one canonical name.
_VALUED = {
    "--epsilon": "epsilon", "--lambda": "lambda", "--bag": "bag", "--cover": "cover", "--psi": "psi",
    "--gamma_scale": "gamma_scale", "--gamma_exponent": "gamma_exponent", "--rnd": "rnd",
    "--rnd_alpha": "rnd_alpha", "--rnd_invlambda": "rnd_invlambda", "--first": "first",
    "--cb_type": "cb_type", "-l": "learning_rate", "--learning_rate": "learning_rate", "--power_t": "power_t",
    "--l2": "l2", "-b": "bits", "--bit_precision": "bits", "--random_seed": "seed",
}  # fmt: skip
_INTERACTIONS = {"-q": 2, "--quadratic": 2, "--cubic": 3, "--interactions": 0}
_FLAGS = {
    "--cb_explore_adf": "cb", "--ccb_explore_adf": "ccb", "--softmax": "softmax", "--squarecb": "squarecb",
    "--elim": "elim", "--greedify": "greedify", "--nounif": "nounif",
}  # fmt: skip
_IGNORED_FLAGS = frozenset(
    {"--quiet", "--dsjson", "--json", "--no_stdin", "--preserve_performance_counters", "--save_resume"}
    | {"--cb_adf", "--csoaa_rank", "--cb_sample"}
)
_IGNORED_VALUED = frozenset({"--csoaa_ldf", "-i", "--initial_regressor"})
# Each algorithm's own options (beyond epsilon): an option of another algorithm is refused.
_ALGORITHM_OPTIONS = {
    "softmax": {"lambda"}, "bag": {"greedify"}, "cover": {"psi", "nounif"},
    "squarecb": {"gamma_scale", "gamma_exponent", "elim"}, "rnd": {"rnd_alpha", "rnd_invlambda"}, "first": set(),
}  # fmt: skip
_LETTERS = {vw[0]: name for name, vw in NAMESPACES.items()}


@dataclass(frozen=True)
class LearningPolicy:
    """A Personalizer learning-policy file: its ``name`` and the ``policy`` section it maps to."""

    name: str
    policy: PolicyConfig

    def to_json(self) -> str:
        """The file's JSON, ``{"name": ..., "arguments": ...}``."""
        return json.dumps({"name": self.name, "arguments": arguments_from_policy(self.policy)}, indent=2)


def _number(text: str) -> float:
    # VW prints a stored float32 with 15 digits (0.2 as 0.200000002980232): 7 significant digits undo that.
    return float(f"{float(text):.7g}")


def _tokens(arguments: str) -> list[tuple[str, str | None]]:
    """(option, value) pairs; ``--opt=value`` and ``--opt value`` alike. Unknown options keep a following
    non-option token as their value, so the refusal names both."""
    try:
        words = shlex.split(arguments)
    except ValueError as exc:
        raise VWArgumentsError(f"cannot split the VW arguments {arguments!r}: {exc}") from exc
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        option, eq, inline = word.partition("=")
        takes_value = option in _VALUED or option in _INTERACTIONS or option in _IGNORED_VALUED
        known = takes_value or option in _FLAGS or option in _IGNORED_FLAGS
        if eq and option.startswith("-"):
            pairs.append((option, inline))
        elif (takes_value or not known) and i + 1 < len(words) and _is_value(words[i + 1]):
            pairs.append((word, words[i + 1]))
            i += 1
        else:
            pairs.append((word, None))
        i += 1
    return pairs


def _is_value(word: str) -> bool:
    if not word.startswith("-"):
        return True
    try:
        float(word)
    except ValueError:
        return False
    return True


def _expand(term: str, mode: str) -> list[tuple[str, ...]]:
    """The interaction of one term (``UI``, ``U:``, ``::``): a letter is its namespace, ``:`` is ``any``.

    A wildcard stays a wildcard (``policy.interactions`` renders ``any`` as ``:`` again): VW expands it per
    example over the namespaces the example has, the JSON ones of schema-free features included, and in its
    own order, which decides the hashes. Spelling ``-q ::`` out as the pairs of User, Context and Item
    would miss the JSON namespaces and, passed beside the ``--quadratic ::`` a model file stores, change
    the model's scores (tests/recommender/settings/test_vw_arguments.py reloads a ``-q ::`` model under
    both). Raises KeyError on an unknown letter."""
    names = [n for n in NAMESPACES if mode == "ccb" or n != "slot"]
    allowed = {NAMESPACES[n][0]: n for n in names}
    return [tuple(ANY_NAMESPACE if letter == ":" else allowed[letter] for letter in term)]


def policy_from_arguments(arguments: str, base: PolicyConfig) -> PolicyConfig:
    """The ``policy`` section of a VW argument string (see the module docstring). Raises VWArgumentsError
    naming every argument that does not map, or the key whose value is invalid."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    terms: list[tuple[str, str, int]] = []
    refused: list[str] = []
    for option, value in _tokens(arguments):
        if option in _VALUED and value is not None:
            values[_VALUED[option]] = value
        elif option in _INTERACTIONS and value is not None:
            terms.append((option, value, _INTERACTIONS[option]))
        elif option in _FLAGS and value is None:
            flags.add(_FLAGS[option])
        elif (option in _IGNORED_FLAGS and value is None) or (option in _IGNORED_VALUED and value is not None):
            continue
        else:
            refused.append(option if value is None else f"{option} {value}")
    modes = flags & {"cb", "ccb"}
    if len(modes) != 1:
        refused.append("one of --cb_explore_adf or --ccb_explore_adf is required" if not modes else "both modes")
    mode = "ccb" if "ccb" in modes else "cb"
    algorithms = [a for a in _ALGORITHM_OPTIONS if a in flags or a in values]
    if len(algorithms) > 1:
        refused.append(f"more than one exploration algorithm ({', '.join('--' + a for a in algorithms)})")
    algorithm = algorithms[0] if algorithms else "epsilon"
    for name, options in _ALGORITHM_OPTIONS.items():
        for option in options - (_ALGORITHM_OPTIONS.get(algorithm, set())):
            if option in flags or option in values:
                refused.append(f"--{option} (an option of --{name}, which is not used)")
    interactions: dict[tuple[str, ...], tuple[str, ...]] = {}
    for option, term, width in terms:
        if (width and len(term) != width) or not 2 <= len(term) <= 3:
            refused.append(f"{option} {term} (an interaction of {width or '2 or 3'} namespaces)")
            continue
        try:
            for combo in _expand(term, mode):
                interactions.setdefault(tuple(sorted(combo)), combo)
        except KeyError:
            letters = ", ".join(f"{k} ({v})" for k, v in _LETTERS.items() if mode == "ccb" or v != "slot")
            refused.append(f"{option} {term} (namespaces here are {letters})")
    if refused:
        raise VWArgumentsError("VW arguments not supported by the policy section: " + "; ".join(refused))
    try:
        exploration = _exploration(algorithm, values, flags)
        learning = LearningSettings(
            cb_type=values.get("cb_type", "mtr"),
            learning_rate=_number(values.get("learning_rate", "0.5")),
            power_t=_number(values.get("power_t", "0.5")),
            l2=_number(values.get("l2", "0")),
        )
        update: dict[str, Any] = {
            "mode": mode,
            "exploration": exploration,
            "learning": learning,
            "interactions": tuple(interactions.values()),
            "bits": int(values.get("bits", "18")),
            "seed": int(values.get("seed", "0")),
        }
        return PolicyConfig.model_validate({**base.model_dump(by_alias=True), **update})
    except (ValidationError, ValueError) as exc:
        raise VWArgumentsError(f"VW arguments {arguments!r}: {exc}") from exc


def _exploration(algorithm: str, values: Mapping[str, str], flags: set[str]) -> ExplorationSettings:
    epsilon = values.get("epsilon")
    eps = {"epsilon": _number(epsilon)} if epsilon is not None else {}
    if algorithm == "softmax":
        return Softmax(lambda_=_number(values.get("lambda", "1")), **eps)
    if algorithm == "bag":
        return Bagging(bags=int(values["bag"]), greedify="greedify" in flags, **eps)
    if algorithm == "cover":
        psi = _number(values.get("psi", "1"))
        return OnlineCover(policies=int(values["cover"]), psi=psi, nounif="nounif" in flags, **eps)
    if algorithm == "squarecb":
        scale, exponent = _number(values.get("gamma_scale", "10")), _number(values.get("gamma_exponent", "0.5"))
        return SquareCB(gamma_scale=scale, gamma_exponent=exponent, elim="elim" in flags)
    if algorithm == "rnd":
        alpha, invlambda = _number(values.get("rnd_alpha", "0.1")), _number(values.get("rnd_invlambda", "0.1"))
        return RND(networks=int(values["rnd"]), alpha=alpha, invlambda=invlambda, **eps)
    if algorithm == "first":
        return ExploreFirst(tau=int(values["first"]), **eps)
    value = eps.get("epsilon", 0.05)  # cb_explore_adf's own default
    return Greedy() if value == 0 else EpsilonGreedy(epsilon=value)


def arguments_from_policy(config: PolicyConfig) -> str:
    """The VW argument string of ``config`` (its VW command line without ``--quiet``), ``[any, any]`` written
    as ``-q ::`` at the end, where Personalizer's learning policies have it."""
    args = [a for a in config.vw_args() if a != "--quiet"]
    pairs = list(itertools.pairwise(args))
    if ("--interactions", "::") in pairs:
        at = pairs.index(("--interactions", "::"))
        args = [*args[:at], *args[at + 2 :], "-q", "::"]
    return shlex.join(args)


def learning_policy_from_json(text: str, base: PolicyConfig) -> LearningPolicy:
    """A Personalizer learning-policy file's content -> LearningPolicy. Raises VWArgumentsError."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VWArgumentsError(f"a learning-policy file is a JSON object: {exc}") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("arguments"), str):
        raise VWArgumentsError('a learning-policy file is {"name": ..., "arguments": "<VW arguments>"}')
    unknown = sorted(set(document) - {"name", "arguments"})
    if unknown:
        raise VWArgumentsError(f"unknown keys in the learning-policy file: {', '.join(unknown)}")
    name = document.get("name")
    return LearningPolicy(str(name) if name is not None else "", policy_from_arguments(document["arguments"], base))
