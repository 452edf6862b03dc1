"""notebooks/experiments.ipynb run top to bottom (as tests/simulators/test_notebooks.py runs every notebook) on a
log and config this test writes, its figures checked against an independent recomputation from the Parquet files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from recommender.events.log import write_events
from recommender.experiments.assignment import Assigner, assignment_unit
from recommender.settings.experiments import Experiment
from tests.recommender.sample_events import default_schema_events
from tests.recommender.served_app import service_document, write_config

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "experiments.ipynb"
EXPERIMENT = {
    "name": "three-arms",
    "control": "baseline",
    "arms": [
        {"name": "baseline", "kind": "baseline", "share": 0.4},
        {"name": "bandit", "kind": "policy", "share": 0.3},
        {"name": "eps05", "kind": "policy", "share": 0.3,
         "exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.05}},
    ],
}  # fmt: skip
TRUE_MEANS = {"baseline": 0.10, "bandit": 0.30, "eps05": 0.12}


def _write_log(log_dir: Path) -> None:
    """1,500 decisions of the experiment (users assigned by the documented hash, clicks at TRUE_MEANS), plus
    100 of another experiment and 100 outside any: those two must be left out."""
    rng = np.random.default_rng(11)
    assign = Assigner.of(Experiment.model_validate(EXPERIMENT))
    events = []
    for i, event in enumerate(default_schema_events(1700, 5)):
        decision = event.decision
        if i < 1500:
            arm = assign(assignment_unit(decision.user_id, decision.event_id))
            decision = dataclasses.replace(decision, experiment=EXPERIMENT["name"], arm=arm)
            reward = float(rng.random() < TRUE_MEANS[arm])
        else:
            other = i < 1600
            decision = dataclasses.replace(decision, experiment="other" if other else None, arm="x" if other else None)
            reward = 1.0
        events.append(dataclasses.replace(event, decision=decision, rewards=(reward,)))
    write_events(events, log_dir)


def run_notebook(namespace: dict) -> None:
    for index, cell in enumerate(json.loads(NOTEBOOK.read_text())["cells"]):
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[{index}]", "exec"), namespace)  # noqa: S102


def test_the_notebook_analyses_the_log_it_is_pointed_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, service_document(tmp_path, None, experiments={"current": EXPERIMENT}))
    _write_log(Path(config.join.event_log_dir))
    monkeypatch.setenv("EXPERIMENT_LOG", config.join.event_log_dir)
    monkeypatch.setenv("RECOMMENDER_CONFIG", str(config_path))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    run_notebook(namespace)

    table = pq.ParquetDataset(config.join.event_log_dir).read(columns=["experiment", "arm", "rewards"])
    rows = [(a, r[0]) for e, a, r in zip(*(table.column(c).to_pylist() for c in ("experiment", "arm", "rewards")),
                                         strict=True) if e == EXPERIMENT["name"]]  # fmt: skip
    assert len(rows) == 1500 and namespace["arm_log"].arms.size == 1500
    arms = namespace["arms"]
    counts = []
    for name in TRUE_MEANS:
        rewards = np.array([r for a, r in rows if a == name])
        counts.append(rewards.size)
        assert arms.loc[name, "n"] == rewards.size
        assert arms.loc[name, "mean"] == pytest.approx(rewards.mean())
    chi = stats.chisquare(counts, [1500 * a["share"] for a in EXPERIMENT["arms"]])
    assert namespace["srm"].p_value == pytest.approx(chi.pvalue) and not namespace["srm"].mismatch

    analysis = namespace["analysis"]
    assert analysis.decision == "promote" and analysis.winner == "bandit"  # truly better by 0.20
    detected = namespace["detected"]
    assert detected["bandit"] is not None and detected["bandit"] < 1500
    # The plan against the textbook formula: n per arm = (z_{1-a/2} + z_power)^2 (p(1-p) + q(1-q)) / MDE^2.
    p = arms.loc["baseline", "mean"]
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    for mde, plan in namespace["plans"].items():
        q = p + mde
        assert plan.per_arm[0] == math.ceil(z * z * (p * (1 - p) + q * (1 - q)) / mde**2 - 1e-6)


def test_the_notebook_runs_on_its_own_demo_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPERIMENT_LOG", raising=False)
    monkeypatch.delenv("RECOMMENDER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    run_notebook(namespace)
    assert namespace["analysis"].winner == "bandit"  # the demo's bandit arm truly earns 0.16 against 0.10
