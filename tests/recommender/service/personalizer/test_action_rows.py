"""The reuse of Personalizer action rows by content: the same checked features, a row rebuilt when the store's
row changes, one-off actions kept by nothing (so they cannot evict the catalog), and a bad action refused
(naming its path) every time it is sent."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import pytest

from recommender.policy.item_cache import ItemCache, OneOffRow
from recommender.service.errors import ApiError
from recommender.service.personalizer.action_rows import ActionRows
from recommender.service.personalizer.features import action_features
from recommender.service.personalizer.schemas import PersonalizerRankableAction

STORE_ROW = types.MappingProxyType({"price": 0.0})
FEATURES = [{"brand": "acme", "price": 12.5}, {"colors": {"red": True}}]


def _action(action_id: str, features: list[dict[str, Any]]) -> PersonalizerRankableAction:
    return PersonalizerRankableAction.model_validate({"id": action_id, "features": features})


def _row(rows: ActionRows, action: PersonalizerRankableAction, store_row: Mapping[str, Any] = STORE_ROW
         ) -> Mapping[str, Any]:  # fmt: skip
    return rows.rows(rows.checked([action], [0]), [store_row])[0]


def test_an_action_is_kept_from_its_second_sighting_as_the_same_read_only_row() -> None:
    rows = ActionRows()
    once = _row(rows, _action("a", FEATURES))
    assert type(once) is OneOffRow and len(rows) == 0  # a first sighting is kept by nothing
    second = _row(rows, _action("a", [dict(o) for o in FEATURES]))
    third = _row(rows, _action("a", FEATURES))
    assert third is second and isinstance(second, types.MappingProxyType) and len(rows) == 1
    assert dict(once) == dict(second) == {**STORE_ROW, **action_features(FEATURES, "f", "a")}


def test_a_batch_gives_each_action_its_own_row_in_order() -> None:
    rows = ActionRows()
    actions = [_action(action_id, FEATURES) for action_id in "abc"]
    store_rows = [STORE_ROW, types.MappingProxyType({"price": 1.0}), STORE_ROW]
    for _ in range(2):
        built = rows.rows(rows.checked(actions, [2, 0, 1]), [store_rows[i] for i in (2, 0, 1)])
    assert [row[" "]["i"]["id"] for row in built] == ["c", "a", "b"]
    assert [row["price"] for row in built] == [0.0, 0.0, 1.0]
    again = rows.rows(rows.checked(actions, [2, 0, 1]), [store_rows[i] for i in (2, 0, 1)])
    assert all(x is y for x, y in zip(again, built, strict=True))
    with pytest.raises(ValueError, match="3 actions but 1 store rows"):
        rows.rows(rows.checked(actions, [0, 1, 2]), [STORE_ROW])


def test_other_features_or_store_row_make_another_row() -> None:
    rows = ActionRows()
    for _ in range(2):
        first = _row(rows, _action("a", FEATURES))
    for features in ([{"brand": "acme", "price": 12}, FEATURES[1]], [{"brand": "acme", "price": True}, FEATURES[1]]):
        other_value = _row(rows, _action("a", features))
        assert other_value is not first and other_value[" "]["j"]["price"] == features[0]["price"]
        assert type(other_value[" "]["j"]["price"]) is type(features[0]["price"])  # 12, 12.5, True kept apart
    other_id = _row(rows, _action("b", FEATURES))
    assert other_id[" "]["i"]["id"] == "b"
    stored = types.MappingProxyType({"price": 3.0})
    restored = _row(rows, _action("a", FEATURES), stored)  # kept content, a new store row: rebuilt, kept
    assert restored is not first and restored["price"] == 3.0 and isinstance(restored, types.MappingProxyType)
    assert _row(rows, _action("a", FEATURES), stored) is restored


def test_one_off_actions_do_not_evict_the_catalog_from_the_lru_or_the_item_cache() -> None:
    rows = ActionRows(max_actions=4)
    cache: ItemCache[str] = ItemCache(4)
    catalog = [_action(f"p{n}", FEATURES) for n in range(3)]
    for _ in range(2):
        kept = rows.rows(rows.checked(catalog, [0, 1, 2]), [STORE_ROW] * 3)
    for action, row in zip(catalog, kept, strict=True):
        cache.put(action.id, row, f"example-{action.id}")
    for n in range(50):  # the catalog's ids with features made up for each request
        made_up = [_action(f"p{i}", [{"price": n + i / 10}]) for i in range(3)]
        for action, row in zip(made_up, rows.rows(rows.checked(made_up, [0, 1, 2]), [STORE_ROW] * 3), strict=True):
            assert type(row) is OneOffRow and cache.get(action.id, row) is None
            cache.put(action.id, row, "made-up example")
    assert len(rows) == 3 and len(cache) == 3
    assert rows.rows(rows.checked(catalog, [0, 1, 2]), [STORE_ROW] * 3) == kept
    assert cache.get_many([a.id for a in catalog], kept) == [f"example-{a.id}" for a in catalog]


def test_a_nan_is_not_taken_for_a_null() -> None:
    rows = ActionRows()
    for _ in range(2):
        _row(rows, _action("a", [{"x": None}]))
    with pytest.raises(ApiError) as caught:
        _row(rows, _action("a", [{"x": float("nan")}]))
    assert caught.value.field == "actions[0].features[0].x"


def test_a_bad_action_is_refused_every_time_naming_its_path() -> None:
    rows = ActionRows()
    good = _action("g", FEATURES)
    for i in (1, 7, 7):
        actions = [good] * i + [_action("a", [{"colors": ["red"]}])]
        with pytest.raises(ApiError) as caught:
            rows.checked(actions, range(i + 1))
        assert caught.value.field == f"actions[{i}].features[0].colors[0]"
    assert len(rows) == 0


def test_the_lru_keeps_at_most_its_capacity() -> None:
    rows = ActionRows(max_actions=2)
    for action_id in "abc":
        for _ in range(2):
            _row(rows, _action(action_id, FEATURES))
    assert len(rows) == 2
