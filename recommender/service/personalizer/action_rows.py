"""Item rows of Personalizer actions, remembered by content so that an action sent again costs a lookup.

A storefront sends an action's catalog attributes with every rank, so most actions of a request were seen
before. ``ActionRows.row`` keys an action by its id and the text of its parsed ``features`` (``repr`` of the
JSON values, in their order: it tells ``1`` from ``1.0`` and ``true``, so equal text means equal values, the
same checked features), and keeps the
checked schema-free features (``features.action_features``: ``checked``, before the store is read) and
the finished item row (``row``): the feature store's row with those features over it, read-only
(``MappingProxyType``). The row is reused while the store
returns the very same row object for the id (it does for unchanged stored bytes and for the declared
defaults); so the policy's item cache (``recommender.policy.item_cache``), which trusts a read-only row it
built from, serves the action's example without comparing rows. Only features that pass the checks are
remembered: a bad action is checked (and refused, naming its path) every time.

Rows are shared between requests and threads: read-only by contract (``recommender.records.FeatureRow``).
"""

from __future__ import annotations

import threading
import types
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from recommender.service.personalizer.features import action_features

CheckedAction = tuple[tuple[str, str], dict[str, Any]]
"""(the action's key: its id and features text, its checked schema-free features)."""

MAX_ACTIONS = 8192  # rows kept per worker; a little over the policy's default item cache (4096)


class ActionRows:
    """An LRU of finished item rows keyed by (action id, features text). Thread-safe."""

    def __init__(self, max_actions: int = MAX_ACTIONS) -> None:
        self.max_actions = max_actions
        # (id, features text) -> (the store's row it was built on, its checked schema-free part, the item row)
        self._rows: OrderedDict[tuple[str, str], tuple[Mapping[str, Any], dict[str, Any], Mapping[str, Any]]]
        self._rows = OrderedDict()
        self._lock = threading.Lock()

    def checked(self, action_id: str, objects: Sequence[dict[str, Any]] | None, field: str) -> CheckedAction:
        """The action's key and its checked schema-free features (``features.action_features``; ``field``:
        their JSON path). Raises ApiError 400 naming the path of a bad value; checks once per distinct content."""
        key = (action_id, repr(objects or []))  # 2.5 us at 2 objects; json.dumps: 4.7 us
        with self._lock:
            entry = self._rows.get(key)
        if entry is not None:
            return key, entry[1]
        return key, action_features(objects, field, action_id)

    def row(self, checked: CheckedAction, store_row: Mapping[str, Any]) -> Mapping[str, Any]:
        """The item row of a ``checked`` action: ``store_row`` with the action's features over it."""
        key, free = checked
        with self._lock:
            entry = self._rows.get(key)
            if entry is not None:
                self._rows.move_to_end(key)
                if entry[0] is store_row:
                    return entry[2]
        row = types.MappingProxyType({**store_row, **free})
        with self._lock:
            self._rows[key] = (store_row, free, row)
            self._rows.move_to_end(key)
            while len(self._rows) > self.max_actions:
                self._rows.popitem(last=False)
        return row

    def __len__(self) -> int:
        return len(self._rows)
