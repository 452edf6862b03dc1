"""Layered configuration: a file that ``extends`` another holds only what differs, deep-merged over its base;
errors name the file the offending value came from and the key path; the followers see edits of any layer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from recommender.errors import ConfigError
from recommender.settings.follow import ConfigFollower
from recommender.settings.loading import DEFAULT_CONFIG_PATH, config_signature, load_config, load_document
from tests.recommender.served_app import CANDIDATES_20, ServedApp, service_document, wait_for


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def override_of_default(tmp_path: Path, document: dict, name: str = "override.yaml") -> Path:
    return write(tmp_path / name, {"extends": str(DEFAULT_CONFIG_PATH), **document})


def test_a_two_line_override_of_the_default_file_loads(tmp_path):
    path = tmp_path / "override.yaml"
    path.write_text(f"extends: {DEFAULT_CONFIG_PATH}\npolicy: {{exploration: {{gamma_scale: 30}}}}\n")
    config = load_config(path, env={})
    default = load_config(DEFAULT_CONFIG_PATH, env={})
    assert config.policy.exploration.gamma_scale == 30
    assert config.policy.exploration.algorithm == default.policy.exploration.algorithm
    assert config.model_copy(update={"policy": default.policy}) == default  # nothing else differs


def test_mappings_merge_key_by_key_and_other_values_replace(tmp_path):
    path = override_of_default(tmp_path, {"features": {"redis": {"timeout_ms": 75}},
                                          "service": {"api_keys": ["k" * 24]}})  # fmt: skip
    merged = load_document(path, env={})
    default = load_document(DEFAULT_CONFIG_PATH, env={})
    assert merged["features"]["redis"] == {**default["features"]["redis"], "timeout_ms": 75}
    assert merged["features"]["groups"] == default["features"]["groups"]
    assert merged["service"]["api_keys"] == ["k" * 24]  # a list replaces the base's list
    assert "extends" not in merged


def test_an_override_naming_another_exploration_algorithm_replaces_the_block(tmp_path):
    path = override_of_default(tmp_path, {"policy": {"exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.2}}})
    config = load_config(path, env={})
    assert config.policy.exploration.algorithm == "epsilon_greedy" and config.policy.exploration.epsilon == 0.2
    assert "gamma_scale" not in load_document(path, env={})["policy"]["exploration"]  # the base's kind is gone
    default = load_config(DEFAULT_CONFIG_PATH, env={})
    assert config.policy.learning == default.policy.learning  # the rest of the section still merges


def test_a_chain_of_files_with_paths_relative_to_each_file(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    override_of_default(tmp_path / "base", {"policy": {"exploration": {"gamma_scale": 30}},
                                            "features": {"redis": {"timeout_ms": 60}}}, "team.yaml")  # fmt: skip
    path = write(tmp_path / "site.yaml", {"extends": "base/team.yaml", "policy": {"exploration": {"gamma_scale": 40}}})
    monkeypatch.chdir("/")  # relative to the file that says it, not to the working directory
    config = load_config(path, env={})
    assert config.policy.exploration.gamma_scale == 40
    assert config.features.redis.timeout_ms == 60


def test_environment_overrides_apply_over_every_layer(tmp_path):
    path = override_of_default(tmp_path, {"features": {"backend": "memory"}})
    config = load_config(path, env={"RECOMMENDER_FEATURE_BACKEND": "redis", "RECOMMENDER_REDIS_URL": "redis://h:1/0"})
    assert config.features.backend == "redis" and config.features.redis.url == "redis://h:1/0"
    with pytest.raises(ConfigError, match=r"^environment variable RECOMMENDER_FEATURE_BACKEND: features.backend: "):
        load_config(path, env={"RECOMMENDER_FEATURE_BACKEND": "mongo"})


def test_errors_name_the_file_the_value_came_from_and_the_key_path(tmp_path):
    override = override_of_default(tmp_path, {"policy": {"exploration": {"epsilon": 2.0}}})
    with pytest.raises(ConfigError, match=rf"^{override}: policy\.exploration\.epsilon: "):
        load_config(override, env={})
    override = override_of_default(tmp_path, {"policy": {"exploratoin": {"epsilon": 0.1}}})
    with pytest.raises(ConfigError, match=rf"^{override}: policy\.exploratoin: Extra inputs are not permitted"):
        load_config(override, env={})
    # A bad value in the base is the base's error, even when loading the file on top of it.
    base = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    base["features"]["redis"]["timeout_ms"] = -1
    write(tmp_path / "base.yaml", base)
    top = write(tmp_path / "top.yaml", {"extends": "base.yaml", "policy": {"exploration": {"epsilon": 0.2}}})
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'base.yaml'}: features\.redis\.timeout_ms: "):
        load_config(top, env={})
    # A key no file sets: the file loaded, and what it extends.
    write(tmp_path / "partial.yaml", {"policy": base["policy"]})
    top = write(tmp_path / "top.yaml", {"extends": "partial.yaml"})
    with pytest.raises(ConfigError, match=rf"^{top} \(extends {tmp_path / 'partial.yaml'}\): features: Field required"):
        load_config(top, env={})


@pytest.mark.parametrize(
    ("extends", "message"),
    [
        ("missing.yaml", r"missing\.yaml: cannot read configuration"),
        (3, r"top\.yaml: extends: must be the path of the configuration file"),
        ("", r"top\.yaml: extends: must be the path"),
        ("top.yaml", r"top\.yaml: extends: the files extend each other in a cycle: .*top\.yaml -> .*top\.yaml"),
    ],
)
def test_bad_extends(tmp_path, extends, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "top.yaml", {"extends": extends}), env={})


def test_a_cycle_through_two_files(tmp_path):
    write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match=r"b\.yaml: extends: the files extend each other in a cycle: .*a\.yaml -> "
                                          r".*b\.yaml -> .*a\.yaml"):  # fmt: skip
        load_config(tmp_path / "a.yaml", env={})


def test_the_signature_changes_with_any_layer(tmp_path):
    base = write(tmp_path / "base.yaml", yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    top = write(tmp_path / "top.yaml", {"extends": "base.yaml"})
    before = config_signature(top)
    assert len(before) == 2 and None not in before
    base.write_text(base.read_text() + "\n# edited\n")
    assert config_signature(top) != before
    after_base = config_signature(top)
    write(top, {})  # no longer extends anything
    assert len(config_signature(top)) == 1 and config_signature(top) != after_base


def test_the_follower_rereads_when_the_override_or_the_base_changes(tmp_path):
    base_document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    base = write(tmp_path / "base.yaml", base_document)
    top = write(tmp_path / "top.yaml", {"extends": "base.yaml", "features": {"redis": {"timeout_ms": 70}}})
    follower = ConfigFollower(top, load_config(top, env={}), min_interval=0.0)
    write(top, {"extends": "base.yaml", "features": {"redis": {"timeout_ms": 80}}})
    assert follower().features.redis.timeout_ms == 80
    base_document["join"]["reward_wait_time"] = 123.0
    write(base, base_document)
    assert follower().join.reward_wait_time == 123.0
    write(top, {"extends": "base.yaml", "features": {"redis": {"timeout_ms": -1}}})
    assert follower().features.redis.timeout_ms == 80  # refused, the previous configuration stays


def test_the_service_hot_reloads_exploration_from_the_override_file(tmp_path):
    write(tmp_path / "base.yaml", service_document(tmp_path, None))
    top = write(tmp_path / "top.yaml", {"extends": "base.yaml", "policy": {"exploration": {"epsilon": 0.2}}})
    served = ServedApp(load_config(top), config_path=top)
    try:
        client = served.client()
        assert client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["policy"]["epsilon"] == 0.2
        write(top, {"extends": "base.yaml", "policy": {"exploration": {"epsilon": 0.3}}})
        edited = time.monotonic()
        wait_for(lambda: client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["policy"]["epsilon"] == 0.3,
                 timeout=5)  # fmt: skip
        assert time.monotonic() - edited < 5
        write(top, {"extends": "base.yaml", "policy": {"exploration": {"epsilon": 2.0}}})  # invalid: refused
        admin = wait_for(lambda: (s := client.get("/v1/admin/settings").json())["last_reload"]["outcome"] == "refused"
                         and s)  # fmt: skip
        assert f"{top}: policy.exploration.epsilon" in admin["last_reload"]["error"]
        assert client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["policy"]["epsilon"] == 0.3
    finally:
        served.stop()
