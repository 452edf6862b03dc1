"""An experiment's report: the text table, and the HTML page with its plots (matplotlib, Agg, inlined PNGs).

Plots, over the experiment's joined decisions in time order (x: decisions so far, all arms):
- per arm, the mean reward so far with its always-valid interval (the band);
- per arm against the control, the difference so far with its always-valid confidence sequence, and 0.
"""

from __future__ import annotations

import base64
import html
import io
import json

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from recommender.experiments.analysis import ExperimentAnalysis, difference_sequence
from recommender.experiments.log_stats import ArmLog, cumulative
from recommender.experiments.sequential import normal_mixture_half_widths


def format_table(analysis: ExperimentAnalysis) -> str:
    """The per-arm table and the decision, as plain text lines."""
    lines = [
        f"experiment {analysis.experiment} (control {analysis.control}, alpha {analysis.alpha:g})",
        f"{'arm':<16}{'share':>7}{'n':>9}{'mean':>10}{'always-valid interval':>26}{'diff vs control':>18}",
    ]
    diffs = {c.arm: c for c in analysis.comparisons}
    for s in analysis.summaries:
        lo, hi = s.sequence
        c = diffs.get(s.arm)
        diff = f"{c.difference:+.4f}" if c is not None and np.isfinite(c.difference) else "-"
        lines.append(f"{s.arm:<16}{analysis.shares.get(s.arm, 0):>7.2f}{s.n:>9}{s.mean:>10.4f}"
                     f"{f'[{lo:.4f}, {hi:.4f}]':>26}{diff:>18}")  # fmt: skip
    lines.append(f"sample ratio: chi-square p = {analysis.sample_ratio.p_value:.3g}"
                 f"{' MISMATCH' if analysis.sample_ratio.mismatch else ''}")  # fmt: skip
    lines.append(f"decision: {analysis.decision}: {analysis.reason}")
    return "\n".join(lines)


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_arms(log: ArmLog, analysis: ExperimentAnalysis, mixture_scale: float) -> plt.Figure:
    figure, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(1, log.arms.size + 1)
    for s in analysis.summaries:
        n, total, sq = cumulative(log, s.arm)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / n
            var = np.maximum(sq - total * mean, 0.0) / (n - 1) / n
        half = normal_mixture_half_widths(var, mixture_scale=mixture_scale, alpha=analysis.alpha)
        ok = np.isfinite(half)
        ax.plot(x[ok], mean[ok], label=s.arm)
        ax.fill_between(x[ok], (mean - half)[ok], (mean + half)[ok], alpha=0.2)
    ax.set_xlabel("decisions so far (all arms)")
    ax.set_ylabel("mean reward so far")
    ax.legend()
    return figure


def plot_differences(log: ArmLog, analysis: ExperimentAnalysis, mixture_scale: float) -> plt.Figure:
    figure, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(1, log.arms.size + 1)
    control = cumulative(log, analysis.control)
    for c in analysis.comparisons:
        diff, half = difference_sequence(control, cumulative(log, c.arm), alpha=analysis.alpha,
                                         mixture_scale=mixture_scale)  # fmt: skip
        ok = np.isfinite(half)
        ax.plot(x[ok], diff[ok], label=f"{c.arm} - {c.control}")
        ax.fill_between(x[ok], (diff - half)[ok], (diff + half)[ok], alpha=0.2)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("decisions so far (all arms)")
    ax.set_ylabel("difference in mean reward")
    ax.legend()
    return figure


def render_html(log: ArmLog, analysis: ExperimentAnalysis, mixture_scale: float) -> str:
    """A self-contained HTML page: the table, the JSON figures and both plots."""
    matplotlib.use("Agg")  # no display: the report is written to a file
    images = [
        ("Mean reward per arm, with its always-valid interval", plot_arms(log, analysis, mixture_scale)),
        ("Each arm against the control: the confidence sequence", plot_differences(log, analysis, mixture_scale)),
    ]
    body = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{_png(f)}'>"
                   for t, f in images)  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Experiment {html.escape(analysis.experiment)}"
        f"</title></head><body><h1>Experiment {html.escape(analysis.experiment)}</h1>"
        f"<pre>{html.escape(format_table(analysis))}</pre>{body}"
        f"<h2>Figures</h2><pre>{html.escape(json.dumps(analysis.as_dict(), indent=2))}</pre></body></html>"
    )
