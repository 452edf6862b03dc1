"""A log converted once into Vowpal Wabbit's own input, for replaying learning settings over it.

``ReplayLog.build(log, ...)`` turns a ``LoggedBandit`` into a VW text file of ``cb_explore_adf`` multi-line
examples, one per decision in time order, each labelled with the logged action, its cost
(``cost_from_reward``) and its logged probability, built by the project's one example builder
(``recommender.policy.examples.ExampleBuilder``) and rendered by ``recommender.policy.vw.cb_text``: "train as
you serve". Every learning setting then runs over the same file in VW's C++ driver (``simulators.replay``).

Where the features come from:

- our event log (``LoggedBandit.decisions`` holds the raw ``JoinedEvent`` records): the decision's user
  features, context and candidate features, through the configured feature groups, exactly as serving
  built them (a log whose rows do not fit those groups, e.g. one ``recommender simulate`` wrote, is read
  through groups inferred from its logged values: ``inferred_feature_groups``);
- any other log (VW DSJSON, the Open Bandit Dataset layout, synthetic logs): the reader's numeric context
  matrix becomes the ``User`` namespace (a vector feature ``x``) and each candidate's item row becomes the
  ``Item`` namespace (a categorical ``id``, the item's name, and a vector ``x`` of its features). The
  readers keep these features (DSJSON's shared and ``_multi`` features, OBD's user and item features),
  flattened, so names are positional; DSJSON's namespaces are not kept apart.

Multi-slot logs: only the rows of one slot (``position``, default 0) are replayed, over that slot's
candidates; slot 0 is what a ``cb`` policy learns from a multi-slot record (``Policy.learn``). Lower slots of
our event log exclude the items shown above them and depend on position, which a cb replay does not model,
so they are refused.

``leave_out`` builds the file without some features (feature importance): a namespace (``user``,
``context``, ``item``) or one declared feature, ``user.NAME`` or ``item.NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.errors import ExampleError
from recommender.policy.examples import ExampleBuilder, ExampleFeatures, cost_from_reward
from recommender.policy.vw import cb_text
from simulators.data import LoggedBandit
from simulators.errors import BanditDataError

NAMESPACE_KEYS = ("user", "context", "item")


@dataclass(frozen=True, eq=False)
class ReplayLog:
    """A log's rows of one slot and the VW text file holding them as labelled examples.

    - ``bandit``: the rows replayed (one per decision, in time order), a ``LoggedBandit``.
    - ``path``: the VW text file (examples separated by blank lines), one per row of ``bandit``.
    - ``counts`` (n,) int64: the number of candidates of each row (VW's actions, in candidate order).
    - ``feature_names``: leave-out keys this log supports besides the namespaces (``user.NAME``,
      ``item.NAME``), for feature importance.
    - ``leave_out``: what was left out of this file (empty: nothing).
    - ``namespaces``: the namespace keys (``user``, ``context``, ``item``) that have features in some row.
    """

    bandit: LoggedBandit
    path: Path
    counts: np.ndarray
    feature_names: tuple[str, ...]
    leave_out: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = NAMESPACE_KEYS

    @property
    def n_rows(self) -> int:
        return self.bandit.n_rounds

    @classmethod
    def build(
        cls,
        log: LoggedBandit,
        path: str | Path,
        *,
        user_group: FeatureGroup | None = None,
        item_group: FeatureGroup | None = None,
        position: int = 0,
        leave_out: Sequence[str] = (),
        progress: bool = False,
    ) -> ReplayLog:
        """Convert ``log`` (the rows at ``position``) into a VW text file at ``path``. See the module docstring.

        ``user_group``/``item_group`` are the feature groups of our event log's decisions (required when
        the log carries decisions). Raises BanditDataError for a log that cannot be replayed.
        """
        rows = select_rows(log, position)
        path = Path(path)
        if rows.decisions is not None:
            if user_group is None or item_group is None:
                raise BanditDataError("replaying our event log needs the configured user and item feature groups")
            users, items = user_group, item_group
        else:
            users, items = generic_feature_groups(rows)
        names = tuple(f"user.{n}" for n in users.features) + tuple(f"item.{n}" for n in items.features)
        unknown = [key for key in leave_out if key not in NAMESPACE_KEYS and key not in names]
        if unknown:
            raise BanditDataError(f"cannot leave out {unknown[0]!r}: choose from {', '.join(NAMESPACE_KEYS + names)}")
        builder = ExampleBuilder(_without(users, "user", leave_out), _without(items, "item", leave_out))
        drop = {NAMESPACE_KEYS_TO_VW[k] for k in leave_out if k in NAMESPACE_KEYS}
        counts = rows.candidate_mask.sum(axis=1).astype(np.int64)
        present: set[str] = set()
        examples = _decision_examples(rows, builder) if rows.decisions is not None else generic_examples(rows, builder)
        with path.open("w", encoding="utf-8") as handle:
            for i, (shared, candidates) in enumerate(
                tqdm(
                    examples,
                    total=rows.n_rounds,
                    desc="converting the log",
                    unit="row",
                    disable=None if progress else True,
                )
            ):
                if len(candidates) != counts[i]:
                    raise BanditDataError(f"row {i}: {len(candidates)} candidate examples for {counts[i]} candidates")
                label = (int(rows.action[i]), cost_from_reward(rows.reward[i]), float(rows.pscore[i]))
                shared, candidates = _drop(shared, drop), [_drop(c, drop) for c in candidates]
                present.update(ns for ns, feats in shared if feats)
                present.update(ns for c in candidates for ns, feats in c if feats)
                lines = cb_text(shared, candidates, label)
                handle.write("\n".join(lines) + "\n\n")
        namespaces = tuple(k for k in NAMESPACE_KEYS if NAMESPACE_KEYS_TO_VW[k] in present)
        return cls(rows, path, counts, names, tuple(leave_out), namespaces)


NAMESPACE_KEYS_TO_VW = {"user": "User", "context": "Context", "item": "Item"}


def select_rows(log: LoggedBandit, position: int = 0) -> LoggedBandit:
    """The rows of ``log`` a replay uses: those at ``position``, in time order. Raises BanditDataError."""
    if position < 0 or position >= log.n_positions:
        raise BanditDataError(f"the log has positions 0..{log.n_positions - 1}; cannot replay position {position}")
    if log.decisions is not None and position != 0:
        raise BanditDataError("only slot 0 of our event log can be replayed (lower slots exclude earlier picks)")
    rows = log if log.n_positions == 1 else log.subset(log.position == position)
    if rows.timestamp is not None:
        order = np.argsort(rows.timestamp, kind="stable")
        if np.any(order != np.arange(rows.n_rounds)):
            rows = rows.subset(order)
    return rows


def generic_feature_groups(log: LoggedBandit) -> tuple[FeatureGroup, FeatureGroup]:
    """The user and item groups of a log without raw decisions: ``x`` (the context matrix) for the user;
    ``id`` (the item's name) and ``x`` (its feature row) for an item. See the module docstring."""
    user: dict[str, FeatureSpec] = {}
    if log.context.shape[1]:
        user["x"] = FeatureSpec(type=FeatureType.VECTOR, dim=log.context.shape[1])
    else:
        user["none"] = FeatureSpec(type=FeatureType.NUMERIC)
    item: dict[str, FeatureSpec] = {"id": FeatureSpec(type=FeatureType.CATEGORICAL)}
    if log.action_context is not None and log.action_context.shape[1]:
        item["x"] = FeatureSpec(type=FeatureType.VECTOR, dim=log.action_context.shape[1])
    return (
        FeatureGroup(entity="user", key="user_id", features=user),
        FeatureGroup(entity="item", key="item_id", features=item),
    )


# Rows looked at to decide whether the configured groups fit a log and, if not, to infer its groups.
SCHEMA_SAMPLE_DECISIONS = 200


def _spec_of(value: object) -> FeatureSpec | None:
    """The feature type of one logged value (as the request context is typed); None for what has none."""
    if isinstance(value, bool | str):
        return FeatureSpec(type=FeatureType.CATEGORICAL)
    if isinstance(value, int | float):
        return FeatureSpec(type=FeatureType.NUMERIC)
    if isinstance(value, list | tuple) and value:
        if all(isinstance(v, str) for v in value):
            return FeatureSpec(type=FeatureType.TAGS)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return FeatureSpec(type=FeatureType.VECTOR, dim=len(value))
    return None


def _infer_group(entity: str, rows: Iterable[Mapping[str, object]]) -> FeatureGroup:
    specs: dict[str, FeatureSpec] = {}
    refused: set[str] = set()
    for row in rows:
        for name, value in row.items():
            spec = _spec_of(value)
            if name in refused or spec is None or not name.replace("_", "").isalnum():
                continue
            known = specs.setdefault(name, spec)
            if known != spec:  # mixed types or vector lengths across rows: not a feature of one type
                refused.add(name)
                del specs[name]
    if not specs:  # a group needs one feature: a numeric one that is never present encodes to nothing
        specs = {"none": FeatureSpec(type=FeatureType.NUMERIC)}
    return FeatureGroup(entity=entity, key=f"{entity}_id", features=specs)


def inferred_feature_groups(log: LoggedBandit) -> tuple[FeatureGroup, FeatureGroup]:
    """The user and item groups of our event log's decisions, typed from the logged values of its first
    ``SCHEMA_SAMPLE_DECISIONS`` decisions: strings and booleans categorical, numbers numeric, lists of
    strings tags, lists of numbers vectors of their length. A name whose type varies is left out."""
    if log.decisions is None:
        raise BanditDataError("only a log of raw decisions has feature rows to infer groups from")
    sample = log.decisions[:SCHEMA_SAMPLE_DECISIONS]
    users = _infer_group("user", (e.decision.user_features for e in sample))
    items = _infer_group("item", (row for e in sample for row in e.decision.candidate_features))
    return users, items


def groups_fit(log: LoggedBandit, user_group: FeatureGroup, item_group: FeatureGroup) -> str | None:
    """None when ``user_group``/``item_group`` can build the examples of the log's first decisions and
    declare at least one of the features each side logs; else what does not fit."""
    if log.decisions is None:
        return None
    builder = ExampleBuilder(user_group, item_group)
    logged_users: set[str] = set()
    logged_items: set[str] = set()
    for event in log.decisions[:SCHEMA_SAMPLE_DECISIONS]:
        decision = event.decision
        logged_users.update(decision.user_features)
        logged_items.update(k for row in decision.candidate_features for k in row)
        try:
            builder.shared(decision.user_features, decision.context)
            for row in decision.candidate_features:
                builder.item(row)
        except ExampleError as exc:
            return str(exc)
    for role, logged, group in (("user", logged_users, user_group), ("item", logged_items, item_group)):
        if logged and not logged & set(group.features):
            return f"none of the logged {role} features ({', '.join(sorted(logged))}) is in the configured group"
    return None


def _without(group: FeatureGroup, role: str, leave_out: Sequence[str]) -> FeatureGroup:
    kept = {name: spec for name, spec in group.features.items() if f"{role}.{name}" not in leave_out}
    if len(kept) == len(group.features):
        return group
    if not kept:  # a group needs one feature: a numeric one that is never present encodes to nothing
        kept = {"__left_out__": FeatureSpec(type=FeatureType.NUMERIC)}
    return group.model_copy(update={"features": kept})


def _drop(features: ExampleFeatures, namespaces: set[str]) -> ExampleFeatures:
    if not namespaces:
        return features
    return tuple((ns, feats) for ns, feats in features if ns not in namespaces)


def _decision_examples(log: LoggedBandit, builder: ExampleBuilder) -> Iterable[tuple[ExampleFeatures, list]]:
    for round_id in log.round_id:
        decision = log.decisions[int(round_id)].decision  # type: ignore[index]
        shared = builder.shared(decision.user_features, decision.context)
        yield shared, [builder.item(row) for row in decision.candidate_features]


def generic_examples(log: LoggedBandit, builder: ExampleBuilder) -> Iterable[tuple[ExampleFeatures, list]]:
    """Per row of a log without raw decisions: (shared features, each candidate's item features)."""
    has_x = log.context.shape[1] > 0
    item_x = log.action_context is not None and log.action_context.shape[1] > 0
    cache: dict[int, ExampleFeatures] = {}

    def item(index: int) -> ExampleFeatures:
        if index not in cache:
            row: dict[str, object] = {"id": log.item_ids[index] if log.item_ids else str(index)}
            if item_x:
                row["x"] = log.action_context[index].tolist()  # type: ignore[index]
            cache[index] = builder.item(row)
        return cache[index]

    for i in range(log.n_rounds):
        shared = builder.shared({"x": log.context[i].tolist()} if has_x else {}, {})
        if log.candidate_items is None:
            yield shared, [item(j) for j in range(log.n_actions)]
        else:
            yield shared, [item(int(g)) for g in log.candidate_items[i] if g >= 0]
