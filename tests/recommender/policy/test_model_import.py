"""A VW model trained elsewhere (Personalizer's model export: a VW model file with its arguments stored in
it) is published as a model version when its arguments map onto the policy section."""

from __future__ import annotations

import random
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommender.policy.model_import import import_vw_model
from recommender.policy.model_store import MODEL_FILE, open_model_store
from recommender.policy.vw import VWModel
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from recommender.settings.vw_arguments import VWArgumentsError, policy_from_arguments

CONFIG = load_config(DEFAULT_CONFIG_PATH)
PERSONALIZER_DEFAULT = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
ACTIONS = ("|Item id=espresso hot", "|Item id=tea hot", "|Item id=juice")


def _example(tier: str, label: tuple[int, float, float] | None = None) -> list[str]:
    lines = [f"shared |User tier={tier} |Context device=mobile"]  # three namespaces: -q :: orders their crosses
    for j, action in enumerate(ACTIONS):
        prefix = f"0:{label[1]}:{label[2]} " if label is not None and label[0] == j else ""
        lines.append(prefix + action)
    return lines


def _personalizer_model(path: Path, arguments: str = PERSONALIZER_DEFAULT) -> Path:
    """A model trained by real VW under ``arguments``: gold users click juice, others tea."""
    model = VWModel(shlex.split(arguments) + ["--quiet"])
    rng = random.Random(0)
    for _ in range(3000):
        tier, chosen = rng.choice(["gold", "silver"]), rng.randrange(3)
        clicked = chosen == (2 if tier == "gold" else 1)
        model.learn_text(_example(tier, (chosen, -1.0 if clicked else 0.0, 1 / 3)))
    model.save(path)
    model.close()
    return path


def _pmfs(model_path: Path) -> np.ndarray:
    model = VWModel(["--quiet"], initial_model=model_path)
    try:
        return np.array([model.predict_text(_example(tier)) for tier in ("gold", "silver")])
    finally:
        model.close()


def test_a_personalizer_model_becomes_the_current_version(tmp_path):
    source = _personalizer_model(tmp_path / "personalizer.model")
    store = open_model_store(CONFIG, tmp_path / "models")
    imported = import_vw_model(source, store, CONFIG)
    assert imported.policy == policy_from_arguments(PERSONALIZER_DEFAULT, CONFIG.policy)
    assert "--quadratic ::" in imported.arguments
    assert store.current_version() == imported.version.id
    assert imported.version.policy["exploration"] == {"algorithm": "epsilon_greedy", "epsilon": 0.2}
    # The weights came along: the published file predicts as Personalizer's did, and it learned something.
    published = _pmfs(store.root / "versions" / imported.version.id / MODEL_FILE)
    np.testing.assert_allclose(published, _pmfs(source), atol=1e-6)
    assert np.argmax(published[0]) == 2 and np.argmax(published[1]) == 1
    policy = store.load()  # loads under the store's schema checks like any other version
    assert policy.config.exploration.epsilon == 0.2
    policy.close()


def test_incompatible_arguments_are_refused_by_name(tmp_path):
    source = _personalizer_model(tmp_path / "model", "--cb_explore_adf --epsilon 0.1 -q UA --cb_type dr")
    store = open_model_store(CONFIG, tmp_path / "models")
    with pytest.raises(VWArgumentsError, match=r"--quadratic UA \(namespaces here are U \(user\)"):
        import_vw_model(source, store, CONFIG)
    assert store.versions() == []


def test_the_cli_imports_a_model(tmp_path):
    source = _personalizer_model(tmp_path / "personalizer.model")
    command = [sys.executable, "-m", "recommender.cli.main", "--config", str(DEFAULT_CONFIG_PATH), "policy"]
    models = str(tmp_path / "models")
    result = subprocess.run([*command, "import-model", str(source), "--models", models],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "published and made current" in result.stdout and "epsilon: 0.2" in result.stdout
    shown = subprocess.run([*command, "show", "--models", models], capture_output=True, text=True, check=False)
    assert shown.stdout.startswith("* ") and "epsilon_greedy(epsilon=0.2)" in shown.stdout
    missing = subprocess.run([*command, "import-model", str(tmp_path / "nope"), "--models", models],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert missing.returncode == 2 and "nope" in missing.stderr and missing.stderr.count("\n") == 1
