"""The DSJSON reader reads what VW's own DSJSON parser reads (vowpalwabbit/json_parser/src/parse_example_json.cc).

The lines here are written in the shapes of VW's test data (test/train-sets/ of VW's repository).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from simulators import evaluate_log
from simulators.errors import LogReadError
from simulators.readers import read_log
from tests.simulators.log_files import cb_line

# Two lines in the shape of VW's cb_features_w_zero_vals.dsjson: 0-based "a", empty or zero-valued
# features, identical actions, 7-digit timestamps, "event_id" instead of "EventId".
ZERO_VALUES = [
    {
        "_label_cost": -1.0, "_label_probability": 0.5, "_label_Action": 1, "_labelIndex": 0,
        "Timestamp": "2020-12-08T23:25:52.1830000Z", "Version": "1", "event_id": "12", "a": [0, 1],
        "c": {"A": {"F": 0.0}, "_multi": [{}, {}]}, "p": [0.5, 0.5], "VWState": {"m": "N/A"},
        "_original_label_cost": -0.0,
    },
    {
        "_label_cost": -1.0, "_label_probability": 0.5, "_label_Action": 1, "_labelIndex": 0,
        "Timestamp": "2020-12-08T23:25:52.1830000Z", "Version": "1", "event_id": "12", "a": [0, 1],
        "c": {"A": {"F": 0}, "_multi": [{"B": {"f": 0}}, {"B": {"f": 0}}]}, "p": [0.5, 0.5],
    },
]  # fmt: skip


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_zero_based_actions_zero_values_and_identical_actions(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the 7-digit timestamps either
        loaded = read_log(_write(tmp_path / "zero.dsjson", ZERO_VALUES))
    log = loaded.bandit
    assert loaded.report.rows_kept == 2 and not loaded.report.counts
    np.testing.assert_array_equal(log.action, [0, 0])
    np.testing.assert_allclose(log.logging_dist, [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(log.reward, [1.0, 1.0])
    assert str(log.timestamp[0]) == "2020-12-08T23:25:52.183000"
    # Identical actions stay two candidates; no orphan item is left in the table.
    assert len(log.item_ids) == 4 and set(log.candidate_items.ravel()) == {0, 1, 2, 3}


def test_action_lists_in_action_order_take_the_label_from_label_index(tmp_path):
    # igl.dsjson's shape: "a" lists the actions 0..3 whatever was chosen; _labelIndex names the chosen one.
    line = json.loads(cb_line(3, [0.25] * 4))
    line.update(a=[0, 1, 2, 3], p=[0.25] * 4)
    one_based = json.loads(cb_line(2, [0.1, 0.2, 0.7]))  # Personalizer: 1-based, ranking order
    loaded = read_log(_write(tmp_path / "log.json", [line, one_based]))
    np.testing.assert_array_equal(loaded.bandit.action, [3, 2])
    np.testing.assert_allclose(loaded.bandit.logging_dist[1, :3], [0.1, 0.2, 0.7])


def test_a_label_index_the_distribution_does_not_support_is_refused(tmp_path):
    line = json.loads(cb_line(0, [0.6, 0.4]))
    line.update(_labelIndex=1)  # a = [1, 2] is 1-based (it holds len(_multi)); p[index 1] = 0.4, not 0.6
    good = cb_line(0, [0.6, 0.4])
    loaded = read_log(_write(tmp_path / "log.json", [line, good]))
    assert dict(loaded.report.counts) == {"bad_distribution": 1}


def _estimates(path: Path) -> dict[tuple[str, str], float]:
    run = evaluate_log(path, ["uniform", "greedy"], ["ipw", "snipw", "dr"])
    return {(ev.target, e.estimator): e.value for ev in run.report.evaluations for e in ev.estimates}


def test_a_common_pdrop_leaves_every_estimate_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for t in range(300):
        index = int(rng.integers(3))
        lines.append(json.loads(cb_line(index, [0.5, 0.25, 0.25] if index == 0 else [0.2, 0.4, 0.4])))
        lines[-1].update(EventId=f"e{t}", _label_cost=-float(rng.random() < 0.3 + 0.2 * index))
    plain = _write(tmp_path / "plain.json", lines)
    dropped = _write(tmp_path / "dropped.json", [{**line, "pdrop": 0.9} for line in lines])
    assert _estimates(dropped) == _estimates(plain)
    notes = read_log(dropped).report.notes
    assert any("pdrop 0.9" in n and "1/(1-pdrop) = 10" in n and "unchanged" in n for n in notes), notes
    varying = _write(tmp_path / "varying.json", [{**line, "pdrop": 0.5 * (i % 2)} for i, line in enumerate(lines)])
    notes = read_log(varying).report.notes
    assert any("pdrop varies from 0 to 0.5" in n and "count every decision once" in n for n in notes), notes


@pytest.mark.parametrize(
    ("pdrop", "detail"),
    [(1, "pdrop = 1: VW refuses"), (1.5, "pdrop 1.5 is not a probability"), ("0.2", "pdrop '0.2' is not")],
)
def test_bad_pdrop_is_excluded_as_vw_excludes_it(tmp_path, pdrop, detail):
    bad = json.loads(cb_line(0, [0.5, 0.5]))
    bad.update(pdrop=pdrop)
    report = read_log(_write(tmp_path / "log.json", [bad, cb_line(1, [0.5, 0.5])])).report
    assert dict(report.counts) == {"malformed": 1}
    assert detail in report.examples[0].detail


def test_vw_json_format_is_named_not_reported_as_skipped_lines(tmp_path):
    # VW's cb_test.json: the --json format, labels and _multi at the top level.
    plain = [
        {"_labelIndex": 0, "_label_Action": 0, "_label_Cost": 1, "_label_Probability": 0.5,
         "_multi": [{"a_": "1"}, {"a_": "2"}]},
        {"_multi": [{"a_": "1"}, {"a_": "3"}]},
    ]  # fmt: skip
    with pytest.raises(LogReadError, match=r"VW's --json format .* not DSJSON \(--dsjson\)"):
        read_log(_write(tmp_path / "cb_test.json", plain))
    report = read_log(_write(tmp_path / "mixed.json", [*plain, cb_line(0, [0.5, 0.5])])).report
    assert report.rows_kept == 1
    assert any("2 lines are VW's --json examples" in n for n in report.notes)
    assert not any("skipped" in n for n in report.notes)


def test_each_kind_of_skipped_line_is_counted(tmp_path):
    no_actions = json.loads(cb_line(0, [0.5, 0.5]))
    del no_actions["a"], no_actions["p"]
    lines = [cb_line(0, [0.5, 0.5]), cb_line(1, [0.5, 0.5], _skipLearn=True), {"EventId": "x", "v": 1}, no_actions]
    report = read_log(_write(tmp_path / "log.json", lines)).report
    (note,) = report.notes
    assert note == (
        "skipped 3 lines that carry no decision or an inactive one: 1 without a decision (outcome-only or "
        "service lines), 1 inactive (_skipLearn), 1 with no actions 'a' (VW skips these too)"
    )


def test_unsupported_formats_are_named(tmp_path):
    cats = {"_label_ca": {"action": 0.5, "cost": 0.0, "pdf_value": 0.1}, "c": {"room=Bedroom": 1}}
    slates = {"c": {"s": 1.0, "_multi": [{"_slot_id": 0, "f": 1.0}, {"_slot_id": 1, "f": 1.0}], "_slots": [{}, {}]}}
    report = read_log(_write(tmp_path / "log.json", [cats, slates, cb_line(0, [0.5, 0.5])])).report
    details = sorted(e.detail for e in report.examples)
    assert dict(report.counts) == {"malformed": 2}
    assert "continuous-action (CATS" in details[0] and "slates line" in details[1]
