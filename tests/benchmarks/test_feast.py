"""The Feast benchmark's own inputs, checked without installing Feast: its feature repository declares every
feature of our user and item groups with the matching Feast type, its offline sources hold exactly what our
store serves, and the repository it writes points Feast at the benchmark's Redis."""

from __future__ import annotations

import ast
import dataclasses

import pandas as pd
import pytest
import yaml

from benchmarks.bench_feast import _same
from benchmarks.feast.environment import DEFINITIONS, GO, HERE, PYTHON, offline_frames, write_repo
from features import open_store
from recommender.settings.loading import load_config

FEAST_TYPES = {"categorical": "String", "tags": "Array(String)", "numeric": "Float64", "vector": "Array(Float64)"}


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return offline_frames()


def _declared_views() -> dict[str, dict[str, str]]:
    """{view name: {feature: Feast type as written}} from benchmarks/feast/feature_repo.py, without importing it."""
    views = {}
    for node in ast.walk(ast.parse((HERE / "feature_repo.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "FeatureView":
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            fields = {}
            for field in keywords["schema"].elts:
                args = {keyword.arg: keyword.value for keyword in field.keywords}
                fields[args["name"].value] = ast.unparse(args["dtype"])
            views[keywords["name"].value] = fields
    return views


def test_feature_repo_declares_every_feature_of_our_groups_with_its_type():
    groups = load_config().features.groups
    expected = {
        name: {feature: FEAST_TYPES[spec.type.value] for feature, spec in groups[name].features.items()}
        for name in ("users", "items")
    }
    assert _declared_views() == expected


def test_offline_sources_hold_what_our_store_serves(frames):
    store = open_store(load_config().features)  # the embedded default: the sample catalog, in process
    users, items = frames
    assert set(users["event_timestamp"]) == set(items["event_timestamp"]) == {pd.Timestamp("2024-01-01", tz="UTC")}
    for frame, group, key in ((users, "users", "user_id"), (items, "items", "item_id")):
        sample = frame.iloc[::97]
        rows = store.read(group, list(sample[key])).rows
        for (_, offline), ours in zip(sample.iterrows(), rows, strict=True):
            for feature, value in ours.items():
                theirs = offline[feature]
                theirs = [float(x) if not isinstance(x, str) else x for x in theirs] if feature in (
                    "embedding", "skin_types", "preferred_categories") else theirs  # fmt: skip
                assert _same(value, theirs), (group, offline[key], feature, value, theirs)
    assert (items["shade_family"] == "none").any()  # skincare's null became the group's default


def test_written_repo_points_feast_at_the_given_redis(tmp_path, frames):
    for variant in (PYTHON, GO):
        local = dataclasses.replace(variant, venv=tmp_path / f"{variant.name}-venv")
        repo = write_repo(local, redis_port=12345, frames=frames)
        settings = yaml.safe_load((repo / "feature_store.yaml").read_text())
        assert settings["online_store"] == {"type": "redis", "connection_string": "127.0.0.1:12345"}
        assert settings["project"] == variant.project
        assert settings["entity_key_serialization_version"] == variant.key_serialization
        assert settings.get("go_feature_retrieval", False) is (variant is GO)
        assert (repo / DEFINITIONS).read_text() == (HERE / "feature_repo.py").read_text()
        assert len(pd.read_parquet(repo / "data" / "items.parquet")) == 1000
        assert len(pd.read_parquet(repo / "data" / "users.parquet")) == 10_000
