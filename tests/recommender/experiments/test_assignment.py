"""Assignment: deterministic, sticky across processes, shares within their binomial interval; config validation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from recommender.experiments.assignment import Assigner, assignment_unit
from recommender.settings.experiments import Experiment, ExperimentsConfig

EXPERIMENT = {
    "name": "bandit-vs-baseline",
    "control": "baseline",
    "arms": [
        {"name": "baseline", "kind": "baseline", "share": 0.2},
        {"name": "bandit", "kind": "policy", "share": 0.5},
        {"name": "eps05", "kind": "policy", "share": 0.3, "exploration": {"epsilon": 0.05}},
    ],
}


def test_shares_within_their_binomial_interval_over_100k_ids() -> None:
    assign = Assigner.of(Experiment.model_validate(EXPERIMENT))
    n = 100_000
    arms = [assign(assignment_unit(f"user-{i}", "e")) for i in range(n)]
    for arm in EXPERIMENT["arms"]:
        share = arm["share"]
        count = arms.count(arm["name"])
        half = 3.29 * np.sqrt(n * share * (1 - share))  # 99.9% binomial interval
        assert abs(count - n * share) < half, (arm["name"], count)


def test_the_same_user_gets_the_same_arm_in_another_process_and_a_new_salt_reshuffles() -> None:
    experiment = Experiment.model_validate(EXPERIMENT)
    users = [f"user-{i}" for i in range(200)]
    here = [Assigner.of(experiment)(assignment_unit(u, "e")) for u in users]
    code = (
        "import json, sys\n"
        "from recommender.experiments.assignment import Assigner, assignment_unit\n"
        "from recommender.settings.experiments import Experiment\n"
        "a = Assigner.of(Experiment.model_validate(json.loads(sys.argv[1])))\n"
        "print(json.dumps([a(assignment_unit(f'user-{i}', 'e')) for i in range(200)]))\n"
    )
    other = subprocess.run([sys.executable, "-c", code, json.dumps(EXPERIMENT)], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123"})  # fmt: skip
    assert json.loads(other.stdout) == here
    resalted = Assigner.of(experiment.model_copy(update={"salt": "another"}))
    assert sum(resalted(assignment_unit(u, "e")) != arm for u, arm in zip(users, here, strict=True)) > 50
    # No user: the event id is the unit.
    assert assignment_unit(None, "ev-1") == "e:ev-1" and assignment_unit("", "ev-1") == "e:ev-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"control": "nope"}, "control 'nope' is not one of the arms"),
        ({"arms": EXPERIMENT["arms"][:1]}, "at least 2"),
        ({"arms": [{**a, "share": 0.5} for a in EXPERIMENT["arms"]]}, "shares must sum to 1"),
        ({"arms": [EXPERIMENT["arms"][0], {**EXPERIMENT["arms"][0], "share": 0.8}]}, "distinct"),
        ({"arms": [EXPERIMENT["arms"][0], {"name": "x", "kind": "pinned", "share": 0.8}]}, "model_version"),
        ({"arms": [EXPERIMENT["arms"][0], {"name": "x", "kind": "mystery", "share": 0.8}]}, "kind"),
    ],
)
def test_invalid_experiments_are_refused_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExperimentsConfig.model_validate({"current": {**EXPERIMENT, **change}})
