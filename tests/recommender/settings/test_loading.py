"""Loading configs/: typed sections, unknown keys refused, errors naming the file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recommender.errors import ConfigError
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def default_document() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def test_default_config_loads():
    config = load_config(DEFAULT_CONFIG_PATH, env={})
    assert config.features.backend == "memory"
    assert config.features.groups["items"].features["embedding"].dim == 8
    assert config.features.item_group == "items" and config.features.user_group == "users"


def test_config_is_immutable():
    config = load_config(DEFAULT_CONFIG_PATH, env={})
    with pytest.raises(ValueError, match="frozen"):
        config.features.backend = "redis"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(surprise=1), r"config.yaml: surprise: Extra inputs are not permitted"),
        (lambda d: d["features"].update(backend="mongo"),
         r"config.yaml: features.backend: Input should be 'memory' or 'redis'"),
        (lambda d: d["features"]["redis"].update(timeout_ms=-1),
         r"features.redis.timeout_ms: Input should be greater than 0"),
        (lambda d: d["features"]["groups"]["items"]["features"]["price"].update(type="money"),
         r"features.groups.items.features.price.type: Input should be"),
        (lambda d: d["features"]["groups"]["items"]["features"]["embedding"].pop("dim"),
         r"features.groups.items.features.embedding: a vector feature needs 'dim'"),
        (lambda d: d["features"]["groups"]["items"]["features"]["price"].update(dim=3),
         r"features.groups.items.features.price: 'dim' applies only to vector features"),
        (lambda d: d["features"].update(item_group="catalog"), r"features: item_group 'catalog' is not among"),
        (lambda d: d["features"]["groups"].update({"bad name": d["features"]["groups"]["items"]}),
         r"features.groups: group name 'bad name' must be"),
    ],
)
def test_invalid_config_names_file_and_key_path(tmp_path, default_document, edit, message):
    edit(default_document)
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, default_document), env={})


def test_environment_overrides_url_and_backend(tmp_path, default_document):
    path = write(tmp_path, default_document)
    env = {"RECOMMENDER_REDIS_URL": "redis://cache:6380/2", "RECOMMENDER_FEATURE_BACKEND": "redis"}
    config = load_config(path, env=env)
    assert config.features.redis.url == "redis://cache:6380/2" and config.features.backend == "redis"


def test_variables_are_expanded_with_fallbacks(tmp_path, default_document):
    default_document["features"]["redis"]["url"] = "redis://${REDIS_HOST}:${REDIS_PORT:-6379}/0"
    path = write(tmp_path, default_document)
    assert load_config(path, env={"REDIS_HOST": "db"}).features.redis.url == "redis://db:6379/0"
    with pytest.raises(ConfigError, match=r"config.yaml: environment variable REDIS_HOST is referenced but not set"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("features: [unclosed", r"config.yaml: not valid YAML"),
        ("- a list\n- at the top", r"config.yaml: the top level must be a mapping"),
    ],
)
def test_unparsable_files(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read configuration"):
        load_config(tmp_path / "nope.yaml", env={})


def test_config_follower_applies_valid_edits_and_keeps_the_old_config_on_invalid_ones(tmp_path, default_document):
    from recommender.settings.follow import ConfigFollower

    path = write(tmp_path, default_document)
    follower = ConfigFollower(path, load_config(path, env={}), min_interval=0.0)
    default_document["features"]["redis"]["timeout_ms"] = 75
    write(tmp_path, default_document)
    assert follower().features.redis.timeout_ms == 75
    path.write_text(path.read_text().replace("timeout_ms: 75", "timeout_ms: -1"))
    assert follower().features.redis.timeout_ms == 75  # refused, the previous configuration stays
    throttled = ConfigFollower(path, load_config(DEFAULT_CONFIG_PATH, env={}), min_interval=3600)
    default_document["features"]["redis"]["timeout_ms"] = 99
    write(tmp_path, default_document)
    assert throttled().features.redis.timeout_ms == 50  # not re-read within min_interval
