"""The plain-text summary ``recommender evaluate`` prints, and the table rows the HTML report shares.

A target whose weights have too small an effective sample size (``PolicyEvaluation.low_ess``) is marked
``LOW_ESS_MARK`` in both tables, with a footnote saying why; intervals clipped to the reward range are
footnoted with the range; Switch-DR and DR-OS at their default lambda (OBP's) are footnoted with the
estimator they then equal.
"""

from __future__ import annotations

import math

from simulators.diagnostics import MIN_TRUSTED_ESS
from simulators.results import EvaluationReport, Interval, PolicyEvaluation

LOW_ESS_MARK = "!"
# Estimators that, at the default parameters they share with Open Bandit Pipeline, equal another one.
DEFAULT_EQUIVALENTS = {"switch-dr": "dr (lambda = inf: no switching)", "dr-os": "dm (lambda = 0: full shrinkage)"}


def format_value(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None or NaN, ``inf``/``-inf`` for infinities."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{digits}f}"


def format_interval(interval: Interval | None) -> str:
    """``[low, high]`` (``-`` when there is none)."""
    if interval is None:
        return "-"
    return f"[{format_value(interval.low)}, {format_value(interval.high)}]"


def _target_cell(evaluation: PolicyEvaluation) -> str:
    return f"{evaluation.target} {LOW_ESS_MARK}" if evaluation.low_ess else evaluation.target


def estimate_rows(report: EvaluationReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the estimates table: target, estimator, estimate, standard error, intervals."""
    methods = ["normal", "bootstrap", "bernstein"]
    used = {i.method for ev in report.evaluations for e in ev.estimates for i in e.intervals}
    present = [m for m in methods if m in used]
    level = int(round(100 * (1 - report.settings.get("alpha", 0.05))))
    header = ["target", "estimator", "estimate", "std err"] + [f"{m} {level}%" for m in present]
    rows = []
    for evaluation in report.evaluations:
        for estimate in evaluation.estimates:
            by_method = {i.method: i for i in estimate.intervals}
            rows.append(
                [
                    _target_cell(evaluation),
                    estimate.estimator,
                    format_value(estimate.value),
                    format_value(estimate.std_error),
                ]
                + [format_interval(by_method.get(m)) for m in present]
            )
    return header, rows


def diagnostic_rows(report: EvaluationReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the weight-diagnostics table, one row per target."""
    header = ["target", "ESS", "ESS/n", "mean w", "max w", "top 1% share", "zero w", "support violations"]
    rows = []
    for evaluation in report.evaluations:
        d = evaluation.diagnostics
        rows.append(
            [
                _target_cell(evaluation),
                f"{d.ess:.1f}",
                format_value(d.ess_ratio, 3),
                format_value(d.mean_weight, 3),
                format_value(d.max_weight, 2) + ("" if evaluation.weight_bound_known else "*"),
                format_value(d.top1_share, 3),
                format_value(d.zero_share, 3),
                "-" if d.support_violations is None else str(d.support_violations),
            ]
        )
    return header, rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_table(report: EvaluationReport) -> str:
    """The plain-text summary printed by ``recommender evaluate``."""
    log = report.log
    lines = [
        f"log: {log.source}",
        f"rows: {log.n_rows}  decisions: {log.n_decisions}  actions: {log.n_actions}  positions: {log.n_positions}",
        f"logged policy mean reward: {format_value(log.mean_reward)} {format_interval(log.mean_reward_interval)}",
    ]
    if report.read_report is not None:
        lines.append(f"read: {report.read_report.summary()}")
    models = {e.reward_model for e in report.evaluations if e.reward_model}
    if models:
        lines.append(f"reward model: {', '.join(sorted(models))}")
    lines += ["", _table(*estimate_rows(report)), "", _table(*diagnostic_rows(report))]
    if any(not e.weight_bound_known for e in report.evaluations):
        lines.append("* weight bound taken from the observed weights (the log lacks full logging distributions)")
    if any(e.low_ess for e in report.evaluations):
        lines.append(
            f"{LOW_ESS_MARK} effective sample size below {MIN_TRUSTED_ESS:g}: too few effectively weighted rows "
            "to trust this target's estimates or their intervals"
        )
    intervals = [i for ev in report.evaluations for e in ev.estimates for i in e.intervals]
    if intervals:
        # Every estimator's intervals are clipped (simulators.stats); the record names the range when it has it.
        ranges = sorted({i.clipped_to for i in intervals if i.clipped_to is not None})
        shown = " " + ", ".join(f"[{low:g}, {high:g}]" for low, high in ranges) if ranges else ""
        lines.append(f"intervals clipped to the reward range{shown}, where every policy's value lies")
    labels = {e.estimator for ev in report.evaluations for e in ev.estimates}
    for label, equal_to in DEFAULT_EQUIVALENTS.items():
        if label in labels:
            lines.append(f"{label} at its default lambda (Open Bandit Pipeline's) is {equal_to}; give {label}:lambda=V")
    notes = [f"{ev.target} {e.estimator}: {e.note}" for ev in report.evaluations for e in ev.estimates if e.note]
    lines += notes
    return "\n".join(lines)
