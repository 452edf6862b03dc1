"""``recommender policy train|show|rollback`` on the default configuration's feature groups."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recommender.cli.main import main
from recommender.events.log import write_events
from recommender.settings.loading import DEFAULT_CONFIG_PATH
from tests.recommender.sample_events import default_schema_events

RECOMMENDER = str(Path(sys.executable).with_name("recommender"))


@pytest.fixture()
def config_file(tmp_path) -> Path:
    text = DEFAULT_CONFIG_PATH.read_text().replace("model_dir: var/models", f"model_dir: {tmp_path / 'models'}")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_train_show_and_rollback(tmp_path, config_file, capsys) -> None:
    write_events(default_schema_events(300, seed=1), tmp_path / "log")
    assert main(["--config", str(config_file), "policy", "train", "--log", str(tmp_path / "log"), "--passes", "2"]) == 0
    out = capsys.readouterr().out
    assert "learned 600 examples (300 events x 2 pass(es)" in out
    first = out.split("model version ")[1].split()[0]

    write_events(default_schema_events(100, seed=2), tmp_path / "log2")
    assert main(["--config", str(config_file), "policy", "train", "--log", str(tmp_path / "log2"), "--continue"]) == 0
    second = capsys.readouterr().out.split("model version ")[1].split()[0]
    assert second != first

    assert main(["--config", str(config_file), "policy", "show"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"  {first}") and lines[1].startswith(f"* {second}")
    shown = "cb/squarecb(elim=False, gamma_exponent=0.5, gamma_scale=50.0)"  # the shipped exploration
    assert shown in lines[1] and "400 events" in lines[1]  # --continue extends the range

    assert main(["--config", str(config_file), "policy", "rollback", first]) == 0
    capsys.readouterr()
    assert main(["--config", str(config_file), "policy", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["current"] == first and [v["id"] for v in shown["versions"]] == [first, second]
    assert shown["versions"][0]["event_range"]["count"] == 300


def test_errors_are_one_line(tmp_path, config_file, capsys) -> None:
    assert main(["--config", str(config_file), "policy", "train", "--log", str(tmp_path / "missing")]) == 2
    assert "recommender: error: event log" in capsys.readouterr().err
    assert main(["--config", str(config_file), "policy", "rollback", "deadbeef"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--config", str(config_file), "policy", "train", "--log", "x", "--passes", "0"]) == 2
    assert "--passes must be >= 1" in capsys.readouterr().err


def test_every_policy_command_has_help() -> None:
    for sub in ("train", "show", "rollback"):
        result = subprocess.run([RECOMMENDER, "policy", sub, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and f"usage: recommender policy {sub}" in result.stdout
