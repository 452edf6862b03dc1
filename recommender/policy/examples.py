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
(only the declared schema enters the model), except namespace objects (below). The request ``context`` has
no declared schema; its types are inferred from the Python values (bool and str: categorical, int/float:
numeric, list of str: tags, list of numbers: vector). VW's text format breaks on ``|``, ``:`` and whitespace,
so every name and value is escaped reversibly (``%7C``, ``%3A``, ``%20``..., and ``%`` itself as ``%25``):
distinct values stay distinct features.

Schema-free features (Personalizer's ``contextFeatures`` and action ``features``): a value that is itself a
mapping, in the context or in an item row, is a *JSON namespace object*, and becomes exactly the features Vowpal
Wabbit's JSON parser (``--json``/``--dsjson``, which Personalizer ran; vowpalwabbit/json_parser/src/
parse_example_json.cc) makes of that object under that key: namespace names, feature names and values, so a
model or an analysis of Personalizer's logs sees the same features here. The key ``" "`` is VW's default
namespace, i.e. the object VW parses as a whole example (``{" ": {"a": "b"}}``: ``|  ab``). Inside an object:

- ``"a": "b"`` -> the feature ``ab`` (key and value concatenated), value 1; ``"a": ""`` -> ``a``;
- ``"a": 2.5`` -> ``a:2.5`` (0 is no feature); ``"a": true`` -> ``a``; ``false`` and ``null`` -> nothing;
- ``"a": {...}`` -> its own namespace ``a`` (VW keys a namespace by its name, not by the path to it: ``{"u":
  {"geo": {"x": 1}}}`` opens ``u`` and ``geo``);
- ``"a": [1.5, 0, 2]`` -> namespace ``a`` with one feature per position, ``0:1.5 2:2`` (VW hashes position i
  as the namespace's hash + i, which is how VW hashes the all-digit name ``"i"``); nulls are skipped without
  taking a position; ``"a": [{...}, {...}]`` -> the objects' features in namespace ``a``;
- ``"_text": "x y"`` -> the words ``x``, ``y``; other keys starting with ``_`` are VW's metadata: nothing.

VW replaces `` ``, tab, ``|`` and ``:`` in a string value by ``_``; so do we, and in keys and namespace names
too (VW keeps them there, but its text format, which replay writes, cannot), and CR and LF likewise: the
only names that differ from VW's. VW refuses arrays of strings, booleans or arrays; so does this builder
(``ExampleError``). Interactions cross these namespaces by their first letter, as VW does: ``any`` in the
policy's interactions (VW's ``:``) reaches them (docs/policy.md).

``cost_from_reward`` is the one definition of the reward -> VW cost conversion.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.errors import ExampleError
from recommender.settings.policy import NAMESPACES

# Bump when the encoding of a feature type changes: models trained under another encoding are refused.
ENCODING_VERSION = 1

# The key of a row's JSON namespace object that is the example's own object (VW's default namespace " "):
# where Personalizer's layout puts the context's and each action's schema-free features.
EXAMPLE_OBJECT = " "
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


_PLAIN_NUMBERS = frozenset({float, int})  # exact types: bool (an int subclass) is refused on the checked path


@functools.lru_cache(maxsize=1024)
def _element_tokens(token: str, length: int) -> tuple[str, ...]:
    return tuple(f"{token}[{i}]" for i in range(length))


def _vector(name: str, token: str, value: Any, where: str, dim: int | None = None) -> list[Feature]:
    values = _as_list(value, where)
    if dim is not None and len(values) != dim:
        raise ExampleError(f"{where}: expected a vector of {dim} numbers, got {len(values)}")
    # The usual vector, plain finite floats and ints, is checked and converted in whole-vector passes that
    # run in C; anything else (numpy scalars, bools, strings, NaN) goes element by element below, which
    # converts or names the element at fault. Both give the same features.
    if _PLAIN_NUMBERS.issuperset(map(type, values)):
        numbers = list(map(float, values))
        if all(map(math.isfinite, numbers)):
            return [(t, x) for t, x in zip(_element_tokens(token, len(numbers)), numbers, strict=True) if x != 0.0]
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
    """Encodes rows of one declared feature group; built once per group (specs resolved up front, error
    prefixes included, so that encoding a row formats no strings)."""

    def __init__(self, role: str, group: FeatureGroup) -> None:
        self.role = role
        self.fields: list[tuple[str, str, Callable[..., list[Feature]], int | None, Any, str]] = [
            (name, escape_token(name), _ENCODERS[spec.type], spec.dim if spec.type is FeatureType.VECTOR else None,
             spec.default_value(), f"{role} feature {name!r}")
            for name, spec in group.features.items()
        ]  # fmt: skip

    def encode(self, row: Mapping[str, Any]) -> tuple[Feature, ...]:
        if not isinstance(row, Mapping):
            raise ExampleError(f"{self.role} features must be a mapping of name to value, got {type(row).__name__}")
        out: list[Feature] = []
        get = row.get
        for name, token, encoder, dim, default, where in self.fields:
            value = get(name)
            if value is None:
                value = default
            if dim is None:
                out += encoder(name, token, value, where)
            else:
                out += _vector(name, token, value, where, dim)
        return tuple(out)

    def namespace_objects(self, row: Mapping[str, Any]) -> ExampleFeatures:
        """The namespaces of the row's JSON namespace objects (its mapping values)."""
        objects = [
            (key, value) for key, value in row.items() if type(value) not in _SCALARS and isinstance(value, Mapping)
        ]
        return _json_rows(self.role, objects) if objects else ()


# Exact types that are never a JSON namespace object: most values are one of them, and ``type(v) in`` a set is
# much cheaper than ``isinstance(v, Mapping)`` (an ABC check).
_SCALARS = frozenset({str, int, float, bool, list, tuple, type(None)})
_INFERRED: dict[type, Callable[..., list[Feature]]] = {str: _categorical, bool: _categorical, int: _numeric,
                                                       float: _numeric}  # fmt: skip
_MEMO_SIZE = 65_536  # distinct names per memo below; emptied when full (names recur: a catalog's keys and values)
_context_names: dict[str, tuple[str, str]] = {}  # a context key -> (its escaped token, its error prefix)


def _context_name(name: str) -> tuple[str, str]:
    cached = _context_names.get(name)
    if cached is None:
        if len(_context_names) >= _MEMO_SIZE:
            _context_names.clear()
        cached = _context_names[name] = (escape_token(name), f"context feature {name!r}")
    return cached


def _encode_inferred(values: Mapping[str, Any], role: str, namespaces: list[tuple[str, Mapping[str, Any]]]
                     ) -> list[Feature]:  # fmt: skip
    """Features of untyped values (types inferred; names sorted: the same values always give the same order).
    Mapping values (JSON namespace objects) are collected into ``namespaces`` instead."""
    out: list[Feature] = []
    for name in sorted(values):
        if not isinstance(name, str) or not name:
            raise ExampleError(f"{role} feature names must be non-empty strings, got {name!r}")
        value = values[name]
        encoder = _INFERRED.get(type(value))
        if encoder is None:
            if isinstance(value, Mapping):
                namespaces.append((name, value))
                continue
            encoder = _infer_encoder(value)
            if encoder is None:
                continue
        token, where = _context_name(name) if role == "context" else (escape_token(name), f"{role} feature {name!r}")
        out += encoder(name, token, value, where)
    return out


# --- JSON namespace objects: VW's JSON parser (see the module docstring) ------------------------------

# VW's JSON parser turns these into "_" in string values; its text format also breaks on them in names.
_JSON_UNSAFE = re.compile(r"[ \t|:\r\n]")
_NUMBERS = (int, float, np.number)


def json_name(text: str) -> str:
    """A JSON key or string value as a VW feature or namespace name (`` ``, tab, ``|``, ``:``, CR, LF -> ``_``)."""
    return _JSON_UNSAFE.sub("_", text)


def _json_namespace_name(key: str) -> str:
    # VW hashes a name with its surrounding whitespace trimmed: a blank key is the default namespace " ".
    return " " if not key.strip() else json_name(key)


def _json_number(value: Any, where: str) -> float | None:
    """A JSON number as VW's feature value; None for what is not a number (bool is not)."""
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        return None
    return _finite(value, where)


def _here(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_json_names: dict[str, str] = {}


def _json_name_of(text: str) -> str:
    """``json_name`` through a bounded memo: feature names and string values recur across actions."""
    name = _json_names.get(text)
    if name is None:
        if len(_json_names) >= _MEMO_SIZE:
            _json_names.clear()
        name = _json_names[text] = json_name(text)
    return name


def _json_object(namespace: str, values: Mapping[str, Any], role: str, path: str) -> list[NamespaceFeatures]:
    """VW's JSON parser on an object in ``namespace``: that namespace's features first, then the namespaces
    its nested objects and arrays open. Errors name the ``role`` and the ``path`` to the value at fault
    (paths are formatted only for an error or a nested value: this runs once per feature of every new action)."""
    features: list[Feature] = []
    nested: list[NamespaceFeatures] = []
    for key in sorted(values):
        if not isinstance(key, str) or not key:
            raise ExampleError(f"{role} feature {path!r}: feature names must be non-empty strings, got {key!r}")
        value = values[key]
        if key[0] == "_":
            if key == "_text" and isinstance(value, str):  # VW splits on space and tab only
                features += [(_json_name_of(word), 1.0) for word in re.split(r"[ \t]", value) if word]
            continue
        kind = type(value)
        if kind is str:
            features.append((_json_name_of(key) + _json_name_of(value), 1.0))
        elif kind is float or kind is int:
            if value != value or value in _INFINITIES:  # NaN or infinite: refused with the usual message
                _finite(value, f"{role} feature {_here(path, key)!r}")
            if value != 0:
                features.append((_json_name_of(key), float(value)))
        elif value is None or value is False:
            continue
        elif value is True:
            features.append((_json_name_of(key), 1.0))
        elif isinstance(value, Mapping):
            nested += _json_object(_json_namespace_name(key), value, role, _here(path, key))
        elif isinstance(value, list | tuple | np.ndarray):
            here = _here(path, key)
            nested += _json_array(_json_namespace_name(key), _as_list(value, here), role, here)
        else:
            here = _here(path, key)
            number = _json_number(value, f"{role} feature {here!r}")
            if number is None:
                raise ExampleError(f"{role} feature {here!r}: expected a JSON value, got {type(value).__name__} "
                                   f"{value!r}")  # fmt: skip
            if number != 0.0:
                features.append((_json_name_of(key), number))
    return [(namespace, tuple(features)), *nested]


_INFINITIES = (math.inf, -math.inf)


def _json_array(namespace: str, values: list[Any], role: str, path: str) -> list[NamespaceFeatures]:
    """VW's JSON parser on an array: numbers by position, objects' features in the array's own namespace."""
    features: list[Feature] = []
    nested: list[NamespaceFeatures] = []
    position = 0
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, Mapping):
            own, *deeper = _json_object(namespace, value, role, f"{path}[{i}]")
            features += own[1]
            nested += deeper
            continue
        here = f"{role} feature {path!r}[{i}]"
        number = _json_number(value, here)
        if number is None:
            raise ExampleError(f"{here}: expected a number, got {type(value).__name__} {value!r} (VW's JSON parser "
                               "takes numbers and objects in an array)")  # fmt: skip
        if number != 0.0:
            features.append((str(position), number))
        position += 1
    return [(namespace, tuple(features)), *nested]


def _json_rows(role: str, objects: list[tuple[str, Mapping[str, Any]]]) -> ExampleFeatures:
    """The VW namespaces of a row's JSON namespace objects, in key order (errors name ``role`` and the path)."""
    out: list[NamespaceFeatures] = []
    for key, values in sorted(objects, key=lambda kv: kv[0]):
        name = _json_namespace_name(key)
        out += _json_object(name, values, role, "" if name == " " else key)  # paths from the example's own object
    return tuple(out)


def _encode_context(context: Mapping[str, Any]) -> tuple[tuple[Feature, ...], ExampleFeatures]:
    """(the Context namespace's features, the namespaces of the context's JSON namespace objects)."""
    if not isinstance(context, Mapping):
        raise ExampleError(f"context must be a mapping of name to value, got {type(context).__name__}")
    objects: list[tuple[str, Mapping[str, Any]]] = []
    features = tuple(_encode_inferred(context, "context", objects))
    return features, (_json_rows("context", objects) if objects else ())


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


# Item features of read-only rows by row object (``ExampleBuilder.item``): twice the policy's default item cache,
# so that the items of a catalog the cache cannot hold (or has just lost to a model swap) cost VW's example
# building only. Emptied when full. Each entry holds its row and its features (about a kilobyte each).
ITEM_MEMO_SIZE = 8192
_item_memo: dict[int, tuple[Mapping[str, Any], str, ExampleFeatures]] = {}


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
        context_features, context_namespaces = _encode_context(context)
        return ((USER_NS, self._user.encode(user_features)), (CONTEXT_NS, context_features), *context_namespaces)

    def item(self, row: Mapping[str, Any]) -> ExampleFeatures:
        """One action example: a candidate item's declared features, then its JSON namespaces.

        A read-only row (``MappingProxyType``: the feature store's rows, Personalizer's action rows) is encoded
        once per row object and schema (``ITEM_MEMO_SIZE``): rows are read-only by contract
        (``recommender.records.FeatureRow``), so the same object always gives the same features. The memo is
        shared by every builder of the process, so it outlives the policy's item cache, which starts empty
        with every model version a worker swaps in."""
        trusted = type(row) is types.MappingProxyType
        if trusted:
            entry = _item_memo.get(id(row))
            if entry is not None and entry[0] is row and entry[1] == self.schema_hash:
                return entry[2]
        features = ((ITEM_NS, self._item.encode(row)), *self._item.namespace_objects(row))
        if trusted:
            if len(_item_memo) >= ITEM_MEMO_SIZE:
                _item_memo.clear()
            _item_memo[id(row)] = (row, self.schema_hash, features)  # the row held: its id is not reused
        return features

    @staticmethod
    def slot(index: int) -> ExampleFeatures:
        """A CCB slot example: its position (lets the model learn position effects)."""
        return ((SLOT_NS, ((f"slot={index}", 1.0),)),)
