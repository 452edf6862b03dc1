"""Target SPECs: the strings that name a target policy (``recommender evaluate --target SPEC``), and
``parse_target``, which knows every kind of target (``simulators.targets``, and ``simulators.vw_targets``
imported when a SPEC names one of them).

==========================================  ===============================================================
``uniform``                                 every available candidate equally likely
``logged``                                  the logging policy itself (needs full logged distributions)
``greedy``                                  the logging policy without exploration: its most likely
                                            candidate (needs full logged distributions)
``epsilon:EPS``                             epsilon-greedy around ``greedy``: (1 - EPS) on the logged
                                            argmax plus EPS spread uniformly (0 <= EPS <= 1)
``dist:PATH``                               per-row distributions from a file (see ``DistributionFile``)
``model:STORE[@VERSION]``                   a saved VW model from a model store, scored on the logged
                                            contexts (current version when VERSION is left out; an empty
                                            STORE is the configured ``policy.model_dir``)
``vw:OVERRIDES[;train_fraction=F]``         the configured policy with OVERRIDES (``default``, or
                                            ``dotted.key=value,...`` over the policy section), trained on
                                            the first F of the log (default 0.5), evaluated on the rest,
                                            e.g. ``vw:exploration.epsilon=0.02;train_fraction=0.6``
==========================================  ===============================================================
"""

from __future__ import annotations

from pathlib import Path

from recommender.settings.app import AppConfig
from simulators.errors import TargetSpecError
from simulators.targets import DistributionFile, EpsilonGreedyTarget, LoggedTarget, Target, UniformTarget


def parse_target(spec: str, app_config: AppConfig | None = None) -> Target:
    """The target named by ``spec`` (see the module docstring). Raises TargetSpecError.

    ``app_config`` (the loaded configuration) supplies what VW targets need: the policy section
    that ``vw:`` overrides, the feature groups, and the model store of ``model:@VERSION``.
    """
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if kind == "uniform" and not sep:
        return UniformTarget()
    if kind == "logged" and not sep:
        return LoggedTarget()
    if kind == "greedy" and not sep:
        return EpsilonGreedyTarget(0.0)
    if kind == "epsilon":
        try:
            epsilon = float(arg)
        except ValueError as exc:
            raise TargetSpecError(f"target {spec!r}: epsilon must be a number, e.g. epsilon:0.05") from exc
        return EpsilonGreedyTarget(epsilon)
    if kind == "dist" and arg.strip():
        return DistributionFile(Path(arg.strip()))
    if kind == "model" and arg.strip():
        # Lazy: the VW targets bring VW and the policy, 0.2 s more start-up for every `recommender evaluate`
        # (2.3 s against 2.1 s with a uniform target, medians of 8 runs, measured); only model: and vw: need them.
        from simulators.vw_targets import SavedModelTarget

        store, _, version = arg.strip().partition("@")
        if not store:
            if app_config is None:
                raise TargetSpecError(f"target {spec!r}: name the model store, e.g. model:var/models@VERSION")
            store = app_config.policy.model_dir
        return SavedModelTarget(Path(store), version or None)
    if kind == "vw" and arg.strip():
        from simulators.vw_targets import TrainedVWTarget, parse_overrides  # lazy: see model: above

        overrides, _, options = arg.partition(";")
        fraction = 0.5
        for option in filter(None, (o.strip() for o in options.split(";"))):
            key, eq, value = option.partition("=")
            if key.strip() != "train_fraction" or not eq:
                raise TargetSpecError(f"target {spec!r}: unknown option {option!r} (only train_fraction=F)")
            try:
                fraction = float(value)
            except ValueError as exc:
                raise TargetSpecError(f"target {spec!r}: train_fraction must be a number") from exc
        label = overrides.strip() or "default"
        if app_config is None:
            return TrainedVWTarget(parse_overrides(overrides), fraction, label=label)
        features = app_config.features
        return TrainedVWTarget(
            parse_overrides(overrides),
            fraction,
            policy_config=app_config.policy,
            user_group=features.groups.get(features.user_group),
            item_group=features.groups.get(features.item_group),
            label=label,
        )
    raise TargetSpecError(
        f"unknown target {spec!r}; use uniform, logged, greedy, epsilon:EPS, dist:PATH, "
        "model:STORE[@VERSION] or vw:OVERRIDES[;train_fraction=F]"
    )
