"""The JSON namespaces of a log (Personalizer's schema-free features), as keys to leave out of a replay.

Personalizer's context and each action carry their features as JSON objects; each top-level key holding an
object (or an array) is a namespace (``recommender.policy.examples``: VW's JSON parser opens one per such
key). Feature importance names them as the user wrote them, with the side they sit on:

- ``context.NAME``: a namespace of the context (``{"user": {...}, "device": {...}}``: ``context.user``,
  ``context.device``);
- ``action.NAME``: a namespace of the actions (``{"product": {...}}``: ``action.product``; Personalizer's own
  layout puts an action's id in ``i`` and its features in ``j``: ``action.i``, ``action.j``);
- ``context.NAME.GROUP`` / ``action.NAME.GROUP``: a group within a namespace, an object or array nested in
  it (``{"user": {"geo": {...}, "history": [...]}}``: ``context.user.geo``).

Leaving a key out removes that object, with everything nested in it, from every row before its examples are
written. Names holding ``.`` cannot be told apart from a path and are not offered.

Where the objects are:

- our event log's raw decisions: in the context (and each candidate row) under the key ``" "`` (the
  example's own object, ``recommender.policy.examples.EXAMPLE_OBJECT``), or as a mapping value of the row
  itself (``row_keys``, ``without_keys``);
- a log read into matrices (DSJSON): the flattened columns the reader named ``context. .NAME...`` (the
  context's own object) and `` .NAME...`` (an action's), ``simulators.readers.dsjson`` (``column_keys``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recommender.policy.examples import EXAMPLE_OBJECT

SIDES = ("context", "action")
# The reader's column-name prefix of each side's own JSON object (simulators.readers.dsjson, readers.features).
_COLUMN_PREFIX = {"context": f"context.{EXAMPLE_OBJECT}.", "action": f"{EXAMPLE_OBJECT}."}
_SEGMENT = re.compile(r"([^.\[=]+)([.\[=]|$)")


def is_json_key(key: str) -> bool:
    """True for a key of this module's form (``context.NAME[.GROUP]``, ``action.NAME[.GROUP]``)."""
    side, _, path = key.partition(".")
    return side in SIDES and 1 <= len(path.split(".")) <= 2 and all(path.split("."))


def _path(key: str) -> tuple[str, tuple[str, ...]]:
    side, _, path = key.partition(".")
    return side, tuple(path.split("."))


def _nested(value: object) -> bool:
    """A value VW's JSON parser opens a namespace for: an object, or a non-empty array."""
    return isinstance(value, Mapping) or (isinstance(value, list | tuple) and len(value) > 0)


def _addressable(name: object) -> bool:
    return isinstance(name, str) and bool(name.strip()) and "." not in name and not name.startswith("_")


def _groups(value: object) -> Iterable[str]:
    """The groups of a namespace's value: its nested objects and arrays (of each object, for an array)."""
    if isinstance(value, Mapping):
        objects: list[Mapping[str, Any]] = [value]
    elif isinstance(value, list | tuple):
        objects = [v for v in value if isinstance(v, Mapping)]
    else:
        objects = []
    for obj in objects:
        for name, inner in obj.items():
            if _addressable(name) and _nested(inner):
                yield name


def _namespace_objects(row: Mapping[str, Any]) -> Iterable[tuple[str, object]]:
    """(name, value) of a raw row's JSON namespaces: the example's own object's nested values, and the row's
    own mapping values (``recommender.policy.examples``)."""
    for name, value in row.items():
        if name == EXAMPLE_OBJECT:
            if isinstance(value, Mapping):
                yield from ((n, v) for n, v in value.items() if _addressable(n) and _nested(v))
        elif _addressable(name) and isinstance(value, Mapping):
            yield name, value


def row_keys(row: Mapping[str, Any], side: str) -> set[str]:
    """The keys (namespaces and their groups) of one raw context (``side`` "context") or candidate row
    ("action")."""
    keys: set[str] = set()
    for name, value in _namespace_objects(row):
        keys.add(f"{side}.{name}")
        keys.update(f"{side}.{name}.{group}" for group in _groups(value))
    return keys


def _remove(value: Any, path: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping):
        if len(path) == 1:
            return {k: v for k, v in value.items() if k != path[0]}
        if path[0] not in value:
            return value
        return {**value, path[0]: _remove(value[path[0]], path[1:])}
    if isinstance(value, list | tuple):
        return [_remove(v, path) for v in value]
    return value


def without_keys(row: Mapping[str, Any], keys: Sequence[str], side: str) -> Mapping[str, Any]:
    """``row`` (raw, of ``side``) without the objects of ``keys`` of that side; the row itself when none applies."""
    paths = [path for s, path in map(_path, keys) if s == side]
    if not paths:
        return row
    out = dict(row)
    for path in paths:
        if isinstance(out.get(EXAMPLE_OBJECT), Mapping):
            out[EXAMPLE_OBJECT] = _remove(out[EXAMPLE_OBJECT], path)
        if isinstance(out.get(path[0]), Mapping):
            out = _remove(out, path)
    return out


def column_keys(names: Sequence[str] | None, side: str) -> dict[str, np.ndarray]:
    """Per key of ``side`` found in the reader's column ``names``: (len(names),) bool, the columns it holds."""
    if not names:
        return {}
    prefix = _COLUMN_PREFIX[side]
    found: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if not name.startswith(prefix):
            continue
        first = _SEGMENT.match(name, len(prefix))
        if first is None or first.group(2) not in (".", "["):
            continue  # a plain feature of the example's own object: VW's default namespace, not a named one
        found.setdefault(f"{side}.{first.group(1)}", []).append(j)
        second = _SEGMENT.match(name, first.end()) if first.group(2) == "." else None
        if second is not None and second.group(2) in (".", "["):
            found.setdefault(f"{side}.{first.group(1)}.{second.group(1)}", []).append(j)
    masks = {}
    for key, columns in found.items():
        mask = np.zeros(len(names), dtype=bool)
        mask[columns] = True
        masks[key] = mask
    return masks


def ranked_by_default(keys: Iterable[str]) -> list[str]:
    """The keys feature importance tries unless told: every namespace (context first, then action, by name),
    then the groups of each namespace that has at least two (a lone group is nearly its namespace)."""
    keys = set(keys)
    namespaces = sorted((k for k in keys if len(_path(k)[1]) == 1), key=lambda k: (SIDES.index(_path(k)[0]), k))
    out = list(namespaces)
    for namespace in namespaces:
        groups = sorted(k for k in keys if k.startswith(f"{namespace}.") and len(_path(k)[1]) == 2)
        if len(groups) > 1:
            out += groups
    return out
