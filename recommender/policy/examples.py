"""The one place where feature rows become Vowpal Wabbit examples ("train as you serve").

Serving (``Policy.decide``), training (``Policy.learn``) and offline replay (``Policy.predict_pmf``) all
build their examples here, so a feature means the same thing everywhere. This module does not import
``vowpalwabbit``: it produces *example features* -- per namespace, a tuple of ``(token, value)`` pairs --
which ``recommender.policy.vw`` pushes into VW through its example API or renders in VW's text format
(the same tokens, so both routes hash to the same weights).

Layout of a ``cb_explore_adf`` multi-line example::

    shared |User segment=vip embedding[0]:0.12 ... |Context device=mobile hour:13
    |Item brand=acme category=lips price:12.5 skin_types=dry skin_types=oily embedding[0]:0.3 ...
    |Item ...                                  (one action line per candidate, in candidate order)

and for ``ccb_explore_adf`` (multi-slot pages) the same with ``ccb shared`` / ``ccb action`` labels plus one
``ccb slot |Slot slot=<s>`` line per slot.

Namespaces (``NAMESPACES``): ``User`` and ``Context`` on the shared line, ``Item`` on the action lines,
``Slot`` on the slot lines; interactions in the config refer to them by the logical names user, context,
item, slot (VW keys them on the first letter: U, C, I, S).

Feature encoding, by ``features.config.FeatureType``:

- numeric ``price: 12.5`` -> ``price:12.5`` (a zero value is dropped, as VW would);
- categorical ``brand: "acme"`` -> ``brand=acme`` with value 1 (the empty string means "missing": no feature);
- tags ``skin_types: ["dry", "oily"]`` -> ``skin_types=dry``, ``skin_types=oily`` (duplicates once);
- vector ``embedding: [0.3, ...]`` (length ``dim``) -> ``embedding[0]:0.3``, ``embedding[1]:...``.

Missing features (absent key or None) take the spec's default; keys a group does not declare are ignored
(only the declared schema enters the model). The request ``context`` has no declared schema; its types are
inferred from the Python values (bool and str: categorical, int/float: numeric, list of str: tags, list of
numbers: vector). VW's text format breaks on ``|``, ``:`` and whitespace, so every name and value is
escaped reversibly (``%7C``, ``%3A``, ``%20``..., and ``%`` itself as ``%25``): distinct values stay
distinct features.

``cost_from_reward`` is the one definition of the reward -> VW cost conversion.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.errors import ExampleError
from recommender.settings.policy import NAMESPACES

# Bump when the encoding of a feature type changes: models trained under another encoding are refused.
ENCODING_VERSION = 1

USER_NS = NAMESPACES["user"]
CONTEXT_NS = NAMESPACES["context"]
ITEM_NS = NAMESPACES["item"]
SLOT_NS = NAMESPACES["slot"]

Feature = tuple[str, float]
NamespaceFeatures = tuple[str, tuple[Feature, ...]]
ExampleFeatures = tuple[NamespaceFeatures, ...]
"""One example's features: ``((namespace, ((token, value), ...)), ...)``; immutable and hashable."""


def cost_from_reward(reward: float) -> float:
    """VW minimises cost; the storefront reports rewards (higher is better). cost = -reward.

    The only place this conversion is defined: learning, replay and evaluation all call it.
    """
    return -float(reward)


_SPECIAL = re.compile(r"[%|:\s]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    # Fixed-width codes keep the escaping injective: %XX below 256, %uXXXX above ('u' is not hex).
    return f"%{code:02X}" if code < 256 else f"%u{code:04X}"


def escape_token(text: str) -> str:
    """``text`` with VW's separators (``|``, ``:``, whitespace) and ``%`` percent-escaped; injective."""
    return _SPECIAL.sub(_escape_char, text)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, np.number):  # numpy scalars (float32, int64) are not int/float subclasses
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExampleError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ExampleError(f"{where}: {number} is not a finite number")
    return number


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy array
        converted = value.tolist()
        if isinstance(converted, list):
            return converted
    raise ExampleError(f"{where}: expected a list, got {type(value).__name__}")


def _numeric(name: str, token: str, value: Any, where: str) -> list[Feature]:
    number = _finite(value, where)
    return [(token, number)] if number != 0.0 else []


def _categorical(name: str, token: str, value: Any, where: str) -> list[Feature]:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int):
        value = str(value)
    elif not isinstance(value, str):
        raise ExampleError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
    return [(f"{token}={escape_token(value)}", 1.0)] if value else []


def _tags(name: str, token: str, value: Any, where: str) -> list[Feature]:
    out: dict[str, float] = {}
    for i, tag in enumerate(_as_list(value, where)):
        if not isinstance(tag, str):
            raise ExampleError(f"{where}[{i}]: expected a string tag, got {type(tag).__name__} {tag!r}")
        if tag:
            out.setdefault(f"{token}={escape_token(tag)}", 1.0)
    return list(out.items())


def _vector(name: str, token: str, value: Any, where: str, dim: int | None = None) -> list[Feature]:
    values = _as_list(value, where)
    if dim is not None and len(values) != dim:
        raise ExampleError(f"{where}: expected a vector of {dim} numbers, got {len(values)}")
    out = []
    for i, v in enumerate(values):
        number = _finite(v, f"{where}[{i}]")
        if number != 0.0:
            out.append((f"{token}[{i}]", number))
    return out


_ENCODERS: dict[FeatureType, Callable[..., list[Feature]]] = {
    FeatureType.NUMERIC: _numeric,
    FeatureType.CATEGORICAL: _categorical,
    FeatureType.TAGS: _tags,
    FeatureType.VECTOR: _vector,
}


def _infer_encoder(value: Any) -> Callable[..., list[Feature]] | None:
    """The encoder for an untyped context value, or None to skip it (None values)."""
    if value is None:
        return None
    if isinstance(value, bool | str):
        return _categorical
    if isinstance(value, int | float | np.number):
        return _numeric
    if isinstance(value, list | tuple | np.ndarray):
        if len(value) and all(isinstance(v, str) for v in value):
            return _tags
        return _vector
    return _categorical  # raises a clear "expected a string" error for anything else


class _GroupEncoder:
    """Encodes rows of one declared feature group; built once per group (specs resolved up front)."""

    def __init__(self, role: str, group: FeatureGroup) -> None:
        self.role = role
        self.fields: list[tuple[str, str, FeatureSpec, Callable[..., list[Feature]], Any]] = [
            (name, escape_token(name), spec, _ENCODERS[spec.type], spec.default_value())
            for name, spec in group.features.items()
        ]

    def encode(self, row: Mapping[str, Any]) -> tuple[Feature, ...]:
        if not isinstance(row, Mapping):
            raise ExampleError(f"{self.role} features must be a mapping of name to value, got {type(row).__name__}")
        out: list[Feature] = []
        for name, token, spec, encoder, default in self.fields:
            value = row.get(name)
            if value is None:
                value = default
            where = f"{self.role} feature {name!r}"
            if spec.type is FeatureType.VECTOR:
                out += _vector(name, token, value, where, spec.dim)
            else:
                out += encoder(name, token, value, where)
        return tuple(out)


def _encode_context(context: Mapping[str, Any]) -> tuple[Feature, ...]:
    if not isinstance(context, Mapping):
        raise ExampleError(f"context must be a mapping of name to value, got {type(context).__name__}")
    out: list[Feature] = []
    for name in sorted(context):  # sorted: the same context always gives the same feature order
        if not isinstance(name, str) or not name:
            raise ExampleError(f"context feature names must be non-empty strings, got {name!r}")
        value = context[name]
        encoder = _infer_encoder(value)
        if encoder is not None:
            out += encoder(name, escape_token(name), value, f"context feature {name!r}")
    return tuple(out)


def _spec_schema(spec: FeatureSpec) -> dict[str, Any]:
    return {"type": spec.type.value, "dim": spec.dim, "default": spec.default_value()}


def feature_schema(user_group: FeatureGroup, item_group: FeatureGroup) -> dict[str, Any]:
    """What a model's weights depend on: the encoding version, namespaces, and each feature's
    type, dimension and default. JSON-ready; stored with every model version."""
    return {
        "encoding": ENCODING_VERSION,
        "namespaces": dict(NAMESPACES),
        "user": {name: _spec_schema(spec) for name, spec in user_group.features.items()},
        "item": {name: _spec_schema(spec) for name, spec in item_group.features.items()},
    }


def schema_hash(schema: Mapping[str, Any]) -> str:
    """A short stable hash of a feature schema (sha256 of its canonical JSON, 16 hex digits)."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ExampleBuilder:
    """Turns user, context, item and slot data into ``ExampleFeatures``. Immutable and thread-safe."""

    def __init__(self, user_group: FeatureGroup, item_group: FeatureGroup) -> None:
        self.user_group = user_group
        self.item_group = item_group
        self._user = _GroupEncoder("user", user_group)
        self._item = _GroupEncoder("item", item_group)
        self.schema = feature_schema(user_group, item_group)
        self.schema_hash = schema_hash(self.schema)

    def shared(self, user_features: Mapping[str, Any], context: Mapping[str, Any]) -> ExampleFeatures:
        """The shared example: the user's features and the request context."""
        return ((USER_NS, self._user.encode(user_features)), (CONTEXT_NS, _encode_context(context)))

    def item(self, row: Mapping[str, Any]) -> ExampleFeatures:
        """One action example: a candidate item's features."""
        return ((ITEM_NS, self._item.encode(row)),)

    @staticmethod
    def slot(index: int) -> ExampleFeatures:
        """A CCB slot example: its position (lets the model learn position effects)."""
        return ((SLOT_NS, ((f"slot={index}", 1.0),)),)
