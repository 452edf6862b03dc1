"""The reuse of Personalizer action rows by content: the same checked features, a row rebuilt when the store's
row changes, and a bad action refused (naming its path) every time it is sent."""

from __future__ import annotations

import types

import pytest

from recommender.service.errors import ApiError
from recommender.service.personalizer.action_rows import ActionRows
from recommender.service.personalizer.features import action_features

STORE_ROW = types.MappingProxyType({"price": 0.0})
FEATURES = [{"brand": "acme", "price": 12.5}, {"colors": {"red": True}}]


def test_a_row_sent_again_is_the_same_read_only_row() -> None:
    rows = ActionRows()
    first = rows.row(rows.checked("a", FEATURES, "actions[0].features"), STORE_ROW)
    again = rows.row(rows.checked("a", [dict(o) for o in FEATURES], "actions[3].features"), STORE_ROW)
    assert again is first and isinstance(first, types.MappingProxyType)
    assert dict(first) == {**STORE_ROW, **action_features(FEATURES, "f", "a")}


def test_other_features_or_store_row_make_another_row() -> None:
    rows = ActionRows()
    first = rows.row(rows.checked("a", FEATURES, "f"), STORE_ROW)
    other_value = rows.row(rows.checked("a", [{"brand": "acme", "price": 12}, FEATURES[1]], "f"), STORE_ROW)
    assert (
        other_value is not first
        and other_value[" "]["j"]["price"] == 12
        and type(other_value[" "]["j"]["price"]) is int
    )
    other_id = rows.row(rows.checked("b", FEATURES, "f"), STORE_ROW)
    assert other_id[" "]["i"]["id"] == "b"
    stored = types.MappingProxyType({"price": 3.0})
    restored = rows.row(rows.checked("a", FEATURES, "f"), stored)
    assert restored is not first and restored["price"] == 3.0


def test_a_bad_action_is_refused_every_time_naming_its_path() -> None:
    rows = ActionRows()
    for i in (1, 7):
        with pytest.raises(ApiError) as caught:
            rows.checked("a", [{"colors": ["red"]}], f"actions[{i}].features")
        assert caught.value.field == f"actions[{i}].features[0].colors[0]"
    assert len(rows) == 0


def test_the_lru_keeps_at_most_its_capacity() -> None:
    rows = ActionRows(max_actions=2)
    for action_id in "abc":
        rows.row(rows.checked(action_id, FEATURES, "f"), STORE_ROW)
    assert len(rows) == 2
