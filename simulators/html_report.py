"""The self-contained HTML report of an evaluation run (``recommender evaluate --report``).

The report has no external assets: plots are matplotlib (Agg backend) PNGs inlined as base64.
Plots: estimates with their intervals per target, the importance-weight distribution per target, and
reward over time (the logged policy's reward per time bucket, and each target's self-normalized
estimate per bucket, to spot drift and bucket-to-bucket instability). The tables are those of the text
summary (``simulators.text_report``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from simulators.log_evaluation import EvaluationRun, TargetRun
from simulators.results import EvaluationReport
from simulators.text_report import diagnostic_rows, estimate_rows, format_interval, format_value

_TIME_BUCKETS = 20


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_estimates(report: EvaluationReport) -> Figure:
    """Figure: each (target, estimator) estimate with its intervals, and the logged mean reward."""
    entries = [(ev.target, e) for ev in report.evaluations for e in ev.estimates]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(entries) + 1.4))
    colors = {"normal": "tab:blue", "bootstrap": "tab:orange", "bernstein": "tab:gray"}
    offsets = {"normal": -0.2, "bootstrap": 0.0, "bernstein": 0.2}
    for y, (_, estimate) in enumerate(entries):
        for interval in estimate.intervals:
            if math.isfinite(interval.low) and math.isfinite(interval.high):
                ax.plot(
                    [interval.low, interval.high],
                    [y + offsets[interval.method]] * 2,
                    color=colors[interval.method],
                    lw=2.5 if interval.method != "bernstein" else 1.2,
                    solid_capstyle="butt",
                )
        if math.isfinite(estimate.value):
            ax.plot(estimate.value, y, "o", color="black", ms=5, zorder=3)
    ax.axvline(report.log.mean_reward, color="tab:green", ls="--", lw=1, label="logged policy mean reward")
    for method, color in colors.items():
        ax.plot([], [], color=color, lw=2.5, label=f"{method} interval")
    ax.set_yticks(range(len(entries)), [f"{t}  {e.estimator}" for t, e in entries])
    ax.invert_yaxis()
    ax.set_xlabel("estimated policy value (mean reward per row)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)
    ax.set_title("Off-policy estimates with confidence intervals", pad=22)
    return fig


def plot_weights(runs: Sequence[TargetRun]) -> Figure:
    """Figure: histogram of the importance weights of each target (log-spaced bins; zero weights counted apart)."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.3 * len(runs) + 0.4), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        w = run.weights
        positive = w[w > 0]
        d = run.evaluation.diagnostics
        if positive.size:
            low, high = positive.min(), positive.max()
            # Log-spaced bins only when weights span more than a decade; otherwise linear is easier to read.
            wide = high > 10.0 * low
            bins = np.geomspace(low, high * 1.0001, 40) if wide else 40
            # Weights that are all (numerically) equal, e.g. a target equal to the logging policy, leave
            # no range to split into bins: centre one unit-wide range on them instead.
            flat = high - low < 1e-6 * max(1.0, high)
            ax.hist(positive, bins=bins, range=(low - 0.5, high + 0.5) if flat else None, color="tab:blue", alpha=0.8)
            if wide:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.set_title(
            f"{run.evaluation.target}: ESS {d.ess:.0f} of {d.n_rows} ({d.ess_ratio:.1%}), max w {d.max_weight:.3g}, "
            f"top 1% carry {d.top1_share:.1%}, zero weights {d.zero_share:.1%}",
            fontsize=9,
        )
        ax.set_ylabel("rows")
    axes[-1, 0].set_xlabel("importance weight w = pi_e / pi_b (rows with w > 0)")
    fig.tight_layout()
    return fig


def _buckets(run: EvaluationRun) -> tuple[np.ndarray, np.ndarray, str]:
    """(bucket index per row, bucket label positions, x-axis label)."""
    log = run.log
    n_buckets = min(_TIME_BUCKETS, max(1, log.n_rounds // 50))
    if log.timestamp is not None:
        t = log.timestamp.astype("int64").astype(np.float64)
        span = t.max() - t.min()
        edges = np.linspace(t.min(), t.max() + (span or 1.0) * 1e-9 + 1.0, n_buckets + 1)
        index = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_buckets - 1)
        centers = (edges[:-1] + edges[1:]) / 2
        return index, centers.astype("int64").astype("datetime64[us]"), "decision time (UTC)"
    order = np.arange(log.n_rounds)
    index = np.minimum(order * n_buckets // log.n_rounds, n_buckets - 1)
    return index, np.arange(n_buckets) * log.n_rounds / n_buckets, "row (log order)"


def plot_reward_over_time(run: EvaluationRun) -> Figure:
    """Figure: logged mean reward per time bucket (with a 95% band) and each target's SNIPW per bucket."""
    log = run.log
    index, x, xlabel = _buckets(run)
    n_buckets = x.shape[0]
    counts = np.bincount(index, minlength=n_buckets).astype(np.float64)
    sums = np.bincount(index, weights=log.reward, minlength=n_buckets)
    squares = np.bincount(index, weights=log.reward**2, minlength=n_buckets)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums / counts
        se = np.sqrt(np.maximum(squares / counts - mean**2, 0.0) / counts)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(x, mean, color="tab:green", marker="o", ms=3, label="logged policy (mean reward)")
    ax.fill_between(x, mean - 1.96 * se, mean + 1.96 * se, color="tab:green", alpha=0.15)
    colors = iter(c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"] if c not in ("#2ca02c",))
    for target_run in run.runs:
        if target_run.applied.log is not log:
            continue  # evaluated on a subset (held-out rows): its buckets would not align
        w = target_run.weights
        num = np.bincount(index, weights=w * log.reward, minlength=n_buckets)
        den = np.bincount(index, weights=w, minlength=n_buckets)
        with np.errstate(divide="ignore", invalid="ignore"):
            ax.plot(
                x,
                num / den,
                marker=".",
                lw=1,
                color=next(colors, None),
                label=f"{target_run.evaluation.target} (SNIPW per bucket)",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean reward per row")
    ax.set_title("Reward over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.autofmt_xdate()
    return fig


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; } img { max-width: 100%; } .note { color: #555; font-size: 13px; }
"""


def render_html(run: EvaluationRun) -> str:
    """The self-contained HTML report of an evaluation run."""
    matplotlib.use("Agg")
    report = run.report
    log = report.log
    figures = [
        ("Estimates", plot_estimates(report)),
        ("Importance weights", plot_weights(run.runs)),
        ("Reward over time", plot_reward_over_time(run)),
    ]
    images = []
    for title, figure in figures:
        images.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{_png(figure)}'>")
        plt.close(figure)
    read = f"<p>{html.escape(report.read_report.summary())}</p>" if report.read_report else ""
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items())
    summary = (
        f"<p>{html.escape(log.source)}: {log.n_rows} rows, {log.n_decisions} decisions, {log.n_actions} actions, "
        f"{log.n_positions} positions. Logged policy mean reward {format_value(log.mean_reward)} "
        f"{format_interval(log.mean_reward_interval)}.</p>"
    )
    notes = "".join(
        f"<p class='note'>{html.escape(ev.target)} {html.escape(e.estimator)}: {html.escape(e.note)}</p>"
        for ev in report.evaluations
        for e in ev.estimates
        if e.note
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Off-policy evaluation report</title>
<style>{_STYLE}</style></head><body>
<h1>Off-policy evaluation report</h1>
{summary}{read}
<p class="note">Settings: {html.escape(settings)}</p>
<h2>Estimates</h2>{_html_table(*estimate_rows(report))}{notes}
<h2>Weight diagnostics</h2>{_html_table(*diagnostic_rows(report))}
<p class="note">ESS = (sum w)^2 / sum w^2. Weights far from a mean of 1, a small ESS, or a large share in the
top 1% mean the estimate rests on few rows; prefer the Bernstein interval then.</p>
{"".join(images)}
</body></html>
"""
