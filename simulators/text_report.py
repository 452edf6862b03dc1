"""The plain-text summary ``recommender evaluate`` prints, and the table rows the HTML report shares."""

from __future__ import annotations

import math

from simulators.results import EvaluationReport, Interval


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
                [evaluation.target, estimate.estimator, format_value(estimate.value), format_value(estimate.std_error)]
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
                evaluation.target,
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
    notes = [f"{ev.target} {e.estimator}: {e.note}" for ev in report.evaluations for e in ev.estimates if e.note]
    lines += notes
    return "\n".join(lines)
