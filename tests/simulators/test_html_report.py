"""The HTML report renders for targets whose weights are all (numerically) equal."""

from __future__ import annotations

from recommender.cli.main import main


def test_report_with_a_target_equal_to_the_logging_policy(tmp_path):
    log = tmp_path / "synthetic"
    assert main(["simulate", "--out", str(log), "--rounds", "500"]) == 0
    # The simulated log is epsilon-greedy with epsilon 0.2: this target's weights are 1 up to rounding.
    report = tmp_path / "report.html"
    assert main(["evaluate", "--log", str(log), "--target", "epsilon:0.2", "--estimators", "ipw",
                 "--bootstrap", "0", "--report", str(report)]) == 0  # fmt: skip
    assert "data:image/png;base64," in report.read_text()
