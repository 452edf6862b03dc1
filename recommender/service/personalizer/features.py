"""Personalizer's schema-free features as our feature rows, checked once at the HTTP edge.

``contextFeatures`` and each action's ``features`` are lists of JSON objects, merged into one object each
(a key given twice is refused). They become the JSON namespace objects of ``recommender.policy.examples``,
which encodes them exactly as Vowpal Wabbit's JSON parser does (the parser Personalizer trained with), laid
out as Personalizer's logs lay them out (its DSJSON exports, and VW's test data ``dsjson_cb.json``):

- the context is the example's own object: ``{" ": merged contextFeatures}`` (``" "``: VW's default
  namespace; its nested objects open their namespaces, ``{"device": {"os": "ios"}}``: ``|device osios``);
- an action is ``{" ": {"i": {"constant": 1, "id": <action id>}, "j": merged features}}``: Personalizer's
  ``i`` namespace (a constant and the action's id, so actions without features still differ) and its
  features in ``j`` (nested objects in their own namespaces). The item row also carries the feature
  store's declared features when the store knows the item.

Values: strings, numbers, booleans, ``null``, objects, arrays of numbers (``null`` allowed) and arrays of
objects, as VW reads them. Keys starting with ``_`` are VW's metadata, not features, and are dropped, except
``_text`` (a string of words, each a feature, as VW reads it). Refused with a 400 naming the JSON path, e.g.
``actions[3].features[0].colors[2]``: what VW's parser refuses (arrays of strings, of booleans, of arrays),
arrays mixing numbers and objects, empty keys, strings longer than ``MAX_STRING``, nesting deeper than
``MAX_DEPTH``, numbers beyond 2^53.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from recommender.policy.examples import EXAMPLE_OBJECT
from recommender.service.errors import ApiError

MAX_DEPTH = 4  # nested objects: deeper is a client bug, not a feature
MAX_STRING = 512
MAX_ARRAY = 4096
MAX_NUMBER = 2**53  # beyond, not exactly representable as the float VW computes with
EXAMPLE = EXAMPLE_OBJECT  # the row key of the VW example's own object (VW's default namespace)
TEXT = "_text"  # the one metadata key that holds features in VW's JSON


def _bad(path: str, message: str, code: str) -> ApiError:
    return ApiError(400, code, f"{path}: {message}", field=path)


def _number(value: int | float, path: str, code: str) -> int | float:
    if isinstance(value, int) and abs(value) > MAX_NUMBER:
        raise _bad(path, f"{value} is beyond 2^53, not exactly representable as a feature value", code)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(path, f"{value} is not a finite number", code)
    return value


def _clean(value: Any, path: str, depth: int, code: str) -> Any:
    """The value as a feature value (None: no feature); raises ApiError naming ``path``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value, path, code)
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _bad(path, f"a string of {len(value)} characters; at most {MAX_STRING}", code)
        return value
    if isinstance(value, list):
        return _array(value, path, depth, code)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise _bad(path, f"objects nested deeper than {MAX_DEPTH} levels", code)
        return _object(value, path, depth + 1, code)
    raise _bad(path, f"not a JSON value ({type(value).__name__})", code)  # pydantic gives JSON values only


def _array(values: list[Any], path: str, depth: int, code: str) -> list[Any]:
    if len(values) > MAX_ARRAY:
        raise _bad(path, f"an array of {len(values)} values; at most {MAX_ARRAY}", code)
    objects = numbers = False
    out: list[Any] = []
    for i, item in enumerate(values):
        here = f"{path}[{i}]"
        if item is None:
            out.append(None)  # VW skips it without taking a position: kept, so the log shows the request
        elif isinstance(item, dict):
            objects = True
            out.append(_clean(item, here, depth, code))
        elif isinstance(item, int | float) and not isinstance(item, bool):
            numbers = True
            out.append(_number(item, here, code))
        else:
            kind = "a string" if isinstance(item, str) else type(item).__name__
            hint = (" (give a list of categories as an object of booleans, {\"red\": true, \"blue\": true})"
                    if isinstance(item, str) else "")  # fmt: skip
            raise _bad(here, f"an array holds numbers (a vector) or objects; {kind} in an array is refused by VW's "
                       f"JSON parser{hint}", code)  # fmt: skip
        if objects and numbers:
            raise _bad(here, "an array holds numbers (a vector) or objects, not both", code)
    return out


def _object(values: dict[str, Any], path: str, depth: int, code: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not key:
            raise _bad(f"{path}.", "feature names must be non-empty", code)
        if key.startswith("_"):
            if key == TEXT and isinstance(value, str):
                out[key] = _clean(value, f"{path}.{key}", depth, code)
            continue
        clean = _clean(value, f"{path}.{key}", depth, code)
        if clean is not None:
            out[key] = clean
    return out


def _merged(objects: Sequence[dict[str, Any]] | None, field: str, code: str) -> dict[str, Any]:
    """The objects of a feature list merged into one, checked; a key in two objects is refused."""
    seen: dict[str, str] = {}
    out: dict[str, Any] = {}
    for i, obj in enumerate(objects or ()):
        for key in obj:
            if key in seen:
                raise _bad(f"{field}[{i}].{key}", f"{key!r} is also given in {seen[key]}; each feature once", code)
            seen[key] = f"{field}[{i}].{key}"
        out.update(_object(obj, f"{field}[{i}]", 0, code))
    return out


def context_row(objects: Sequence[dict[str, Any]] | None, *, code: str = "InvalidRankRequest") -> dict[str, Any]:
    """The context of a decision from ``contextFeatures``: ``{" ": merged}`` ({} when there are none)."""
    merged = _merged(objects, "contextFeatures", code)
    return {EXAMPLE: merged} if merged else {}


def action_features(
    objects: Sequence[dict[str, Any]] | None, field: str, action_id: str, *, code: str = "InvalidRankRequest"
) -> dict[str, Any]:
    """An action's schema-free features as its item row's JSON namespace object (``field`` is their JSON path,
    e.g. ``actions[3].features``): Personalizer's ``i`` (constant, id) and ``j`` (the features) namespaces."""
    example: dict[str, Any] = {"i": {"constant": 1, "id": action_id}}
    merged = _merged(objects, field, code)
    if merged:
        example["j"] = merged
    return {EXAMPLE: example}
