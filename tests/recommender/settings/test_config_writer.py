"""Writing a config file back: only a valid whole file replaces the old one, environment references stay
references, and a relative ``extends`` still resolves while the replacement is checked."""

from __future__ import annotations

import shutil

import pytest

from recommender.errors import ConfigError
from recommender.settings.config_writer import read_document, stage_document, write_document
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config


def layer(tmp_path, text: str):
    shutil.copy(DEFAULT_CONFIG_PATH, tmp_path / "base.yaml")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def leftovers(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))


def test_a_valid_change_replaces_the_file_and_keeps_relative_extends_and_env_references(tmp_path, monkeypatch):
    monkeypatch.setenv("SITE_KEY", "a-key-from-the-environment-0123")
    path = layer(tmp_path, "extends: base.yaml\nservice:\n  api_keys: ['${SITE_KEY}']\n")
    document = read_document(path)
    document["policy"] = {"exploration": {"gamma_scale": 30}}
    config = write_document(path, document)
    assert config.policy.exploration.gamma_scale == 30
    assert load_config(path).policy.exploration.gamma_scale == 30
    text = path.read_text()
    assert "${SITE_KEY}" in text and "a-key-from-the-environment" not in text
    assert "extends: base.yaml" in text
    assert leftovers(tmp_path) == []


def test_an_invalid_change_leaves_the_file_as_it_was_and_no_staged_file(tmp_path):
    path = layer(tmp_path, "extends: base.yaml\n")
    before = path.read_text()
    document = read_document(path)
    document["trainer"] = {"model_update_interval": -1}
    with pytest.raises(ConfigError, match="model_update_interval"):
        write_document(path, document)
    assert path.read_text() == before
    assert leftovers(tmp_path) == []


def test_a_staged_change_is_not_in_place_until_committed_and_discard_removes_it(tmp_path):
    path = layer(tmp_path, "extends: base.yaml\n")
    before = path.read_text()
    staged = stage_document(path, {"extends": "base.yaml", "policy": {"exploration": {"gamma_scale": 20}}})
    assert path.read_text() == before and staged.config.policy.exploration.gamma_scale == 20
    staged.discard()
    assert leftovers(tmp_path) == [] and path.read_text() == before
    stage_document(path, {"extends": "base.yaml", "policy": {"exploration": {"gamma_scale": 20}}}).commit()
    assert load_config(path).policy.exploration.gamma_scale == 20


def test_a_file_that_is_not_a_mapping_is_refused_by_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a\n- list\n")
    with pytest.raises(ConfigError, match="bad.yaml: the top level is not a mapping"):
        read_document(path)
