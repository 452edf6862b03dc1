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

Partitions: the file is written as one file per ``rows_per_partition`` consecutive rows, in time order
(``part-00000.vw``, ...), streamed out as the rows are converted. A replay reads them by path, in order,
through one VW process (``simulators.replay.replay_probs``): the learner's state carries from one partition
to the next exactly as over one file, so the pmfs are the same whatever the partition size. What this buys:
the conversion runs partition by partition as independent tasks (``convert_partition``: in parallel on a
cluster, each worker reading its partition's rows from a file and writing its VW file, by path); a replay
task carries paths only (never the log); every worker streams the files from disk (a shared filesystem for
a cluster beyond this machine) with no concatenated copy; and no single file grows with the log. Replays
read each partition through VW's binary cache, written once next to it (``simulators.replay_cache``);
rewriting a partition removes its caches.

Multi-slot logs: a ``ReplayLog`` holds the rows of one slot (``position``), each replayed over the
candidates the log records for that slot (``LoggedBandit.candidate_mask``: our event log's lower slots offer
the candidates not shown above them, DSJSON CCB slots their ``_a`` list, OBD positions every item) against
that slot's logged propensity. ``slot_problem`` says when a slot lacks what a replay needs.

``leave_out`` builds the file without some features (feature importance): a namespace (``user``,
``context``, ``item``), one declared feature (``user.NAME`` or ``item.NAME``), or a JSON namespace of the
context or the actions, or a group within one (``context.NAME``, ``action.NAME``, ``context.NAME.GROUP``:
``simulators.json_namespaces``), removed from every row before its examples are written. A log read into
matrices (DSJSON) has its JSON namespaces flattened into the ``User`` and ``Item`` vectors: leaving one out
zeroes its columns there (a zero feature is no feature), so the other features keep their names.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from simulators.json_namespaces import column_keys, is_json_key, row_keys, without_keys
from simulators.replay_cache import caches_of

NAMESPACE_KEYS = ("user", "context", "item")


# Rows per partition file of a converted log (see the module docstring): about 40 MB of VW text at 20
# candidates with a few features each.
PARTITION_ROWS = 50_000


@dataclass(frozen=True, eq=False)
class ReplayLog:
    """A log's rows of one slot and the VW text files holding them as labelled examples.

    - ``bandit``: the rows replayed (one per decision, in time order), a ``LoggedBandit`` of one position.
    - ``directory``: where the files are; ``paths``: the partition files, in row order (examples separated
      by blank lines), together one example per row of ``bandit``.
    - ``counts`` (n,) int64: the number of candidates of each row in the file (VW's actions: the row's
      ``candidate_mask`` columns, in column order).
    - ``feature_names``: leave-out keys this log supports besides the namespaces (``user.NAME``,
      ``item.NAME``), for feature importance.
    - ``leave_out``: what was left out of these files (empty: nothing).
    - ``rows_per_partition``: the rows of each file (the last may have fewer).
    - ``namespaces``: the namespace keys (``user``, ``context``, ``item``) that have features in some row.
    - ``json_keys``: the JSON namespaces of the context and the actions found in the rows, and the groups
      within them (``context.NAME``, ``action.NAME``, ``context.NAME.GROUP``...: ``simulators.json_namespaces``),
      sorted; leave-out keys too.
    """

    bandit: LoggedBandit
    directory: Path
    paths: tuple[Path, ...]
    counts: np.ndarray
    feature_names: tuple[str, ...]
    leave_out: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = NAMESPACE_KEYS
    rows_per_partition: int = PARTITION_ROWS
    json_keys: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        return self.bandit.n_rounds

    @property
    def position(self) -> int:
        return int(self.bandit.position[0])

    @property
    def path(self) -> Path:
        """The one file of a log converted as a single partition. Raises BanditDataError otherwise."""
        if len(self.paths) != 1:
            raise BanditDataError(f"the log is {len(self.paths)} partition files: read ReplayLog.paths")
        return self.paths[0]

    @classmethod
    def build(
        cls,
        log: LoggedBandit,
        directory: str | Path,
        *,
        user_group: FeatureGroup | None = None,
        item_group: FeatureGroup | None = None,
        position: int = 0,
        leave_out: Sequence[str] = (),
        rows_per_partition: int = PARTITION_ROWS,
        progress: bool = False,
        map_function: Callable[[Callable[[ConversionJob], tuple[str, ...]], Sequence[ConversionJob]], Iterable] = map,
    ) -> ReplayLog:
        """Convert ``log``'s rows at ``position`` into VW text files under ``directory`` (created; one per
        ``rows_per_partition`` rows). See the module docstring.

        ``user_group``/``item_group`` are the feature groups of our event log's decisions (required when
        the log carries decisions). ``map_function`` converts the partitions (``convert_partition`` tasks:
        the builtin ``map`` in process, a cluster's map to convert them in parallel, each worker reading its
        partition's rows from a file and writing its VW file by path). Raises BanditDataError for a log or
        slot that cannot be replayed.
        """
        if rows_per_partition < 1:
            raise BanditDataError(f"rows_per_partition must be >= 1, got {rows_per_partition}")
        rows = select_rows(log, position)
        problem = slot_problem(rows)
        if problem is not None:
            raise BanditDataError(f"slot {position}: {problem}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if rows.decisions is not None:
            if user_group is None or item_group is None:
                raise BanditDataError("replaying our event log needs the configured user and item feature groups")
            users, items = user_group, item_group
        else:
            users, items = generic_feature_groups(rows)
        names = tuple(f"user.{n}" for n in users.features) + tuple(f"item.{n}" for n in items.features)
        json_out = tuple(key for key in leave_out if key not in names and is_json_key(key))
        found: set[str] = set()
        if rows.decisions is None:
            masks = {**column_keys(rows.context_names, "context"), **column_keys(rows.action_context_names, "action")}
            found.update(masks)
            _check_leave_out(leave_out, names, found)
            rows = _without_columns(rows, json_out, masks)
        else:
            _check_leave_out([key for key in leave_out if key not in json_out], names, found)
        drop = tuple(NAMESPACE_KEYS_TO_VW[k] for k in leave_out if k in NAMESPACE_KEYS)
        counts = rows.candidate_mask.sum(axis=1).astype(np.int64)
        jobs = []
        for index, first in enumerate(range(0, rows.n_rounds, rows_per_partition)):
            part = directory / f"part-{index:05d}"
            with part.with_suffix(".rows.pkl").open("wb") as handle:
                partition = _partition(rows, first, first + rows_per_partition, json_out, found)
                pickle.dump(partition, handle, pickle.HIGHEST_PROTOCOL)
            jobs.append(
                ConversionJob(
                    str(part.with_suffix(".rows.pkl")),
                    str(part.with_suffix(".vw")),
                    _without(users, "user", leave_out),
                    _without(items, "item", leave_out),
                    drop,
                    first,
                    progress and map_function is map,  # a row bar in process; a partition bar on a cluster
                )
            )
        present: set[str] = set()
        try:
            if rows.decisions is not None:  # the raw rows' JSON keys are known once every partition is written
                _check_leave_out(leave_out, names, found)
            for namespaces in tqdm(
                map_function(convert_partition, jobs),
                total=len(jobs),
                desc=f"converting the log (slot {position})",
                unit="partition",
                disable=None if progress and map_function is not map else True,
            ):
                present.update(namespaces)
        finally:
            for job in jobs:
                Path(job.rows).unlink(missing_ok=True)
        namespaces = tuple(k for k in NAMESPACE_KEYS if NAMESPACE_KEYS_TO_VW[k] in present)
        paths = tuple(Path(job.out) for job in jobs)
        leave = tuple(leave_out)
        return cls(rows, directory, paths, counts, names, leave, namespaces, rows_per_partition, tuple(sorted(found)))


@dataclass(frozen=True)
class ConversionJob:
    """One partition of a conversion, a task: ``rows`` the file holding its rows (a pickled LoggedBandit and,
    for our event log, each row's raw features, written by ``ReplayLog.build``), ``out`` the VW text file to
    write, the feature groups and the VW namespaces to drop, ``first`` the index of its first row in the
    slot's rows (for messages), ``progress`` a per-row bar."""

    rows: str
    out: str
    user_group: FeatureGroup
    item_group: FeatureGroup
    drop: tuple[str, ...]
    first: int
    progress: bool = False


def convert_partition(job: ConversionJob) -> tuple[str, ...]:
    """Write ``job``'s rows as labelled ``cb_explore_adf`` examples to ``job.out``; returns the VW namespaces
    with features in some row. The same on any worker that can read and write the paths."""
    with open(job.rows, "rb") as handle:
        rows, features = pickle.load(handle)  # our own file, written by ReplayLog.build for this job
    builder = ExampleBuilder(job.user_group, job.item_group)
    mask = rows.candidate_mask
    counts = mask.sum(axis=1)
    # The logged action as an index among the row's offered candidates (VW's action index).
    label_index = np.cumsum(mask, axis=1)[np.arange(rows.n_rounds), rows.action] - 1
    drop = set(job.drop)
    present: set[str] = set()
    examples = _decision_examples(features, mask, builder) if features is not None else generic_examples(rows, builder)
    bar = tqdm(examples, total=rows.n_rounds, desc="converting the log", unit="row",
               disable=None if job.progress else True)  # fmt: skip
    for stale in caches_of(job.out):  # the caches of a partition written before describe other rows
        stale.unlink(missing_ok=True)
    with open(job.out, "w", encoding="utf-8") as handle:
        for i, (shared, candidates) in enumerate(bar):
            if len(candidates) != counts[i]:
                row = job.first + i
                raise BanditDataError(f"row {row}: {len(candidates)} candidate examples for {counts[i]} candidates")
            label = (int(label_index[i]), cost_from_reward(rows.reward[i]), float(rows.pscore[i]))
            shared, candidates = _drop(shared, drop), [_drop(c, drop) for c in candidates]
            present.update(ns for ns, feats in shared if feats)
            present.update(ns for c in candidates for ns, feats in c if feats)
            handle.write("\n".join(cb_text(shared, candidates, label)) + "\n\n")
    return tuple(sorted(present))


# A decision's features as the example builder takes them: (user features, context, candidate feature rows).
RawFeatures = tuple[dict[str, object], dict[str, object], tuple[dict[str, object], ...]]


def _partition(
    rows: LoggedBandit, first: int, stop: int, json_out: Sequence[str] = (), found: set[str] | None = None
) -> tuple[LoggedBandit, tuple[RawFeatures, ...] | None]:
    """Rows first..stop-1 without the raw decisions, and (our event log) each row's raw features as plain
    dicts, without the JSON namespaces ``json_out``: a partition's file grows with the partition, not with the
    log. The JSON keys of the rows (before leaving any out) are added to ``found``."""
    part = rows.subset(np.arange(first, min(stop, rows.n_rounds)))
    if part.decisions is None:
        return part, None
    features = []
    for round_id in part.round_id:
        decision = part.decisions[int(round_id)].decision
        if found is not None:
            found.update(row_keys(decision.context, "context"))
            for row in decision.candidate_features:
                found.update(row_keys(row, "action"))
        # read-only rows do not pickle: plain dicts
        candidates = tuple(dict(without_keys(row, json_out, "action")) for row in decision.candidate_features)
        context = dict(without_keys(decision.context, json_out, "context"))
        features.append((dict(decision.user_features), context, candidates))
    return dataclasses.replace(part, decisions=None), tuple(features)


def _check_leave_out(leave_out: Sequence[str], names: Sequence[str], json_keys: set[str]) -> None:
    """Raises BanditDataError naming the first key of ``leave_out`` this log does not have, and the choices."""
    choices = (*NAMESPACE_KEYS, *names, *sorted(json_keys))
    unknown = [key for key in leave_out if key not in choices]
    if unknown:
        listed = ", ".join(choices)
        raise BanditDataError(f"cannot leave out {unknown[0]!r}: the log has no such key; choose from {listed}")


def _without_columns(rows: LoggedBandit, keys: Sequence[str], masks: Mapping[str, np.ndarray]) -> LoggedBandit:
    """``rows`` with the context and item-feature columns of the JSON keys ``keys`` set to 0 (no feature)."""
    if not keys:
        return rows
    context = rows.context.copy()
    items = None if rows.action_context is None else rows.action_context.copy()
    for key in keys:
        if key.startswith("context."):
            context[:, masks[key]] = 0.0
        elif items is not None:
            items[:, masks[key]] = 0.0
    return dataclasses.replace(rows, context=context, action_context=items)


NAMESPACE_KEYS_TO_VW = {"user": "User", "context": "Context", "item": "Item"}


def select_rows(log: LoggedBandit, position: int = 0) -> LoggedBandit:
    """The rows of ``log`` a replay uses: those at ``position``, in time order. Raises BanditDataError."""
    if position < 0 or position >= log.n_positions:
        raise BanditDataError(f"the log has positions 0..{log.n_positions - 1}; cannot replay position {position}")
    rows = log if log.n_positions == 1 else log.subset(log.position == position)
    if rows.timestamp is not None:
        order = np.argsort(rows.timestamp, kind="stable")
        if np.any(order != np.arange(rows.n_rounds)):
            rows = rows.subset(order)
    return rows


def slot_problem(rows: LoggedBandit) -> str | None:
    """None when the rows of one slot (``select_rows``) can be replayed; else what the log lacks for it.

    A replay needs, per row, the candidates the slot offered (at least two somewhere: with one there is
    nothing to choose) and the logged propensity of the shown one (every reader requires it), and at least
    two rows. Lower slots of our event log and DSJSON CCB logs record both; so does every OBD position.
    """
    if rows.n_rounds < 2:
        return f"{rows.n_rounds} row(s): a replay needs at least 2"
    if int(rows.candidate_mask.sum(axis=1).max()) < 2:
        return "the log records one candidate per row at this slot: there is no choice to replay"
    return None


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


def _decision_examples(
    features: Sequence[RawFeatures], mask: np.ndarray, builder: ExampleBuilder
) -> Iterable[tuple[ExampleFeatures, list]]:
    """Per row of our event log: (shared features, the features of each candidate the row's slot offered)."""
    for offered, (user_features, context, candidates) in zip(mask, features, strict=True):
        shared = builder.shared(user_features, context)
        yield shared, [builder.item(row) for j, row in enumerate(candidates) if offered[j]]


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
