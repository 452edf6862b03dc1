"""Item rows of Personalizer actions, remembered by content so that an action sent again costs a lookup.

A storefront sends an action's catalog attributes with every rank, so most actions of a request were seen
before. ``ActionRows`` keys an action by its id and the JSON text of its parsed ``features``
(``pydantic_core.to_json``, about 1 us an action: equal text means equal values, as JSON tells ``1`` from
``1.0``, ``true`` and ``null``, and ``NaN`` is written as itself), so the same checked features. Per request,
two batched calls: ``checked`` (the actions' keys and their checked schema-free features,
``features.action_features``) before the store is read, ``rows`` (the finished item rows: the feature store's
row with those features over it) after; each takes the lock once, and the usual request (every action kept,
every store row the same object as before) runs in C-level passes over the actions.

What is remembered, and for how long:

- An action is kept from its second sighting on (a doorkeeper: the first one only leaves the key's hash in a
  bounded set, emptied when full). A one-off action (features a request made up, seen once) gets a
  ``OneOffRow`` that nothing keeps: not this LRU, not the policy's item cache (``ItemCache.put`` skips it),
  not the process's per-row memos of examples and row encodings (they keep read-only rows only). So one-off
  actions, which usually reuse the catalog's ids, never evict the catalog's rows and examples.
- A kept action's row is read-only (``MappingProxyType``) and reused while the store returns the very same
  row object for the id (it does for unchanged stored bytes and for the declared defaults); so the policy's
  item cache (``recommender.policy.item_cache``), which trusts a read-only row it built from, serves the
  action's example without comparing rows.
- Only features that pass the checks are remembered: a bad action is checked (and refused, naming its path)
  every time.

Rows are shared between requests and threads: read-only by contract (``recommender.records.FeatureRow``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
import types
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, is_, itemgetter
from typing import Any

import pydantic_core

from recommender.policy.item_cache import OneOffRow
from recommender.service.personalizer.features import action_features
from recommender.service.personalizer.schemas import PersonalizerRankableAction

Key = tuple[str, bytes]
"""An action's id and the JSON text of its parsed features."""
Entry = tuple[Mapping[str, Any], dict[str, Any], Mapping[str, Any]]
"""(the store's row it was built on, the checked schema-free features, the finished item row)."""

MAX_ACTIONS = 8192  # rows kept per worker at least: twice the policy's default item cache (4096)
_text = functools.partial(pydantic_core.to_json, inf_nan_mode="constants")  # NaN as itself, not as null


def _exact_text(features: list[dict[str, Any]]) -> bytes:
    try:
        return _text(features)
    except pydantic_core.PydanticSerializationError:  # not UTF-8 encodable (a lone surrogate): still exact
        return repr(features).encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class CheckedActions:
    """Actions of one request, checked (``ActionRows.checked``); the three lists are in the same order."""

    keys: list[Key]
    free: list[dict[str, Any]]  # each action's checked schema-free features (``features.action_features``)
    entries: list[Entry | None]  # each action's kept entry, when it has one


class ActionRows:
    """An LRU of finished item rows keyed by (action id, features text), kept from an action's second sighting
    (module docstring). ``max_actions``: rows kept, and the doorkeeper's bound. Thread-safe."""

    def __init__(self, max_actions: int = MAX_ACTIONS) -> None:
        self.max_actions = max_actions
        self._rows: OrderedDict[Key, Entry] = OrderedDict()
        self._seen_once: set[int] = set()  # hashes of keys seen once and not kept; a collision only admits early
        self._lock = threading.Lock()

    def reserve(self, rows: int) -> None:
        """Keep at least ``rows`` rows from now on (the service: twice its policy's item cache size)."""
        if rows > self.max_actions:
            self.max_actions = rows

    def checked(self, actions: Sequence[PersonalizerRankableAction], order: Sequence[int]) -> CheckedActions:
        """``actions[i]`` for ``i`` in ``order``, checked: their keys and schema-free features
        (``features.action_features``). Raises ApiError 400 naming the path of a bad value
        (``actions[i].features...``); checks once per distinct content kept."""
        picked = list(map(actions.__getitem__, order))
        features = list(map(attrgetter("features"), picked))
        try:
            texts = list(map(_text, features))
        except pydantic_core.PydanticSerializationError:
            texts = list(map(_exact_text, features))
        keys = list(zip(map(attrgetter("id"), picked), texts, strict=True))
        with self._lock:
            entries = list(map(self._rows.get, keys))
        if None not in entries:  # every action kept: no check
            return CheckedActions(keys, list(map(itemgetter(1), entries)), entries)  # type: ignore[arg-type]
        free = [action_features(features[n], f"actions[{i}].features", key[0]) if entry is None else entry[1]
                for n, (i, key, entry) in enumerate(zip(order, keys, entries, strict=True))]  # fmt: skip
        return CheckedActions(keys, free, entries)

    def rows(self, checked: CheckedActions, store_rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The item rows of ``checked`` actions (in the order of ``store_rows``, the store's rows for them): each
        store row with its action's features over it; a kept action's row is the same object while its store
        row is."""
        keys, entries = checked.keys, checked.entries
        if len(keys) != len(store_rows):
            raise ValueError(f"{len(keys)} actions but {len(store_rows)} store rows")
        with self._lock:
            if None not in entries and all(map(is_, map(itemgetter(0), entries), store_rows)):  # type: ignore[arg-type]
                # Mark used, in C. A KeyError: evicted since ``checked``; still its row, kept again when seen twice.
                with contextlib.suppress(KeyError):
                    collections.deque(map(self._rows.move_to_end, keys), maxlen=0)
                return list(map(itemgetter(2), entries))  # type: ignore[arg-type]
            return self._rows_one_by_one(checked, store_rows)

    def _rows_one_by_one(self, checked: CheckedActions, store_rows: Sequence[Mapping[str, Any]]
                         ) -> list[Mapping[str, Any]]:  # fmt: skip
        out: list[Mapping[str, Any]] = []
        for key, free, entry, store_row in zip(checked.keys, checked.free, checked.entries, store_rows, strict=True):
            if entry is not None and entry[0] is store_row:
                if key in self._rows:  # it may have been evicted since ``checked``
                    self._rows.move_to_end(key)
                out.append(entry[2])
            elif entry is None and self._first_sighting(key):
                out.append(OneOffRow({**store_row, **free}))
            else:
                row = types.MappingProxyType({**store_row, **free})
                self._rows[key] = (store_row, free, row)
                self._rows.move_to_end(key)
                out.append(row)
        while len(self._rows) > self.max_actions:
            self._rows.popitem(last=False)
        return out

    def _first_sighting(self, key: Key) -> bool:
        """Whether ``key``, not kept, was not seen since the doorkeeper was last emptied; records it. Under the lock."""
        digest = hash(key)
        if digest in self._seen_once:
            self._seen_once.discard(digest)
            return False
        if len(self._seen_once) >= self.max_actions:
            self._seen_once.clear()
        self._seen_once.add(digest)
        return True

    def __len__(self) -> int:
        return len(self._rows)
