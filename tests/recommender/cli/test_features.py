"""The ``recommender features`` commands, run as a user would type them (subprocess, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECOMMENDER = str(Path(sys.executable).with_name("recommender"))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RECOMMENDER, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def redis_env(redis_server, unique_prefix, tmp_path):
    config = Path(__file__).resolve().parents[3] / "configs" / "default.yaml"
    text = config.read_text().replace("key_prefix: fs", f"key_prefix: {unique_prefix}")
    path = tmp_path / "redis.yaml"
    path.write_text(text)
    return {"RECOMMENDER_FEATURE_BACKEND": "redis", "RECOMMENDER_REDIS_URL": redis_server.url}, str(path)


def test_help_lists_subcommands_and_each_has_help():
    top = run("--help")
    assert top.returncode == 0 and "features" in top.stdout
    for sub in ["load", "get", "sample", "versions", "activate", "drop"]:
        result = run("features", sub, "--help")
        assert result.returncode == 0 and "usage: recommender features " + sub in result.stdout


def test_get_on_embedded_defaults_reads_the_sample_catalog():
    result = run("features", "get", "--user", "user-00042", "--items", "item-0001,nope")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["user"]["missing"] is False and len(payload["user"]["features"]["embedding"]) == 8
    assert payload["items"][0]["features"]["category"] and payload["missing_items"] == ["nope"]


def test_sample_load_get_against_redis(redis_env, tmp_path):
    env, config = redis_env
    assert run("features", "sample", "--out", str(tmp_path / "catalog")).returncode == 0
    loaded = run("--config", config, "features", "load", "--group", "items",
                 "--parquet", str(tmp_path / "catalog" / "items.parquet"), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert "items: 1000 rows in version v1 (live)" in loaded.stdout and "1000/1000" in loaded.stderr
    got = run("--config", config, "features", "get", "--user", "user-00001", "--items", "item-0007", env=env)
    payload = json.loads(got.stdout)
    assert payload["missing_items"] == [] and payload["user"]["missing"] is True  # users not loaded
    versions = run("--config", config, "features", "versions", "--group", "items", env=env)
    assert versions.stdout.strip() == "v1  (live)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("features", "load", "--group", "items", "--parquet", "/nonexistent.parquet"),
         "recommender: error: Parquet input /nonexistent.parquet does not exist"),
        (("features", "versions", "--group", "nope"), "recommender: error: unknown feature group 'nope'"),
        (("--config", "/nonexistent.yaml", "features", "versions", "--group", "items"),
         "recommender: error: /nonexistent.yaml: cannot read configuration"),
    ],
)
def test_errors_are_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)


def test_unreachable_redis_names_the_url_without_its_password():
    env = {"RECOMMENDER_FEATURE_BACKEND": "redis", "RECOMMENDER_REDIS_URL": "redis://ops:hunter2@127.0.0.1:1/0"}
    result = run("features", "get", "--items", "a", env=env)
    assert result.returncode == 2
    assert "redis://ops:***@127.0.0.1:1/0" in result.stderr and "hunter2" not in result.stderr
