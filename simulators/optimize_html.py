"""The self-contained HTML report of a sweep (``recommender optimize --report``).

What a scientist reads: the recommendation and why; each policy's value with its interval (primary
estimator) and its Bonferroni-corrected difference with the logged policy; each setting's estimate over
the log's time (learning curves: a setting that learns shows a rising curve); the feature-importance
ranking; the full table (``simulators.optimize_report``); per slot for a multi-slot log. Plots are
matplotlib (Agg) PNGs inlined as base64.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from simulators.optimize import OptimizeResult
from simulators.optimize_report import format_optimize_table

matplotlib.use("Agg")


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_values(result: OptimizeResult) -> Figure:
    """Each policy's primary estimate with its interval, and the corrected difference with the logged one."""
    primary = result.config.primary
    policies = result.policies
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.4 * len(policies) + 1.5), sharey=True)
    for y, policy in enumerate(policies):
        estimate = policy.evaluation.estimate(primary)
        interval = estimate.interval("normal")
        if math.isfinite(interval.low) and math.isfinite(interval.high):
            left.plot([interval.low, interval.high], [y, y], color="tab:blue", lw=2.5)
        left.plot(estimate.value, y, "o", color="black", ms=4)
        d = policy.difference
        if d is not None and math.isfinite(d.low):
            right.plot([d.low, d.high], [y, y], color="tab:green" if d.significant else "tab:gray", lw=2.5)
            right.plot(d.value, y, "o", color="black", ms=4)
    right.axvline(0.0, color="tab:red", lw=1)
    left.set_yticks(range(len(policies)), [p.name[:40] for p in policies])
    left.invert_yaxis()
    left.set_xlabel(f"{primary} estimate (normal interval)")
    right.set_xlabel("difference vs logged (Bonferroni-corrected)")
    fig.tight_layout()
    return fig


def plot_timeline(result: OptimizeResult) -> Figure:
    """The primary estimate per chunk of the log's time, for the logged policy and each setting."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for policy in result.policies:
        if policy.kind in ("baseline", "uniform"):
            continue
        style = {"color": "black", "ls": "--"} if policy.kind == "logged" else {}
        ax.plot(range(len(policy.timeline)), policy.timeline, label=policy.name[:40], lw=1.2, **style)
    ends = result.timeline_ends
    step = max(1, len(ends) // 6)
    ax.set_xticks(range(0, len(ends), step), [ends[i] for i in range(0, len(ends), step)], rotation=20, fontsize=7)
    ax.set_ylabel(f"{result.config.primary} estimate in the chunk")
    ax.set_xlabel("end of the chunk of the log")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def render_optimize_html(result: OptimizeResult | Sequence[OptimizeResult], refused: Sequence[str] = ()) -> str:
    """The report as one HTML document (no external assets): one section per slot replayed (several for a
    multi-slot log), then the slots that could not be replayed and why."""
    results = [result] if isinstance(result, OptimizeResult) else list(result)
    sections = "\n".join(_section(r, len(results) > 1) for r in results)
    refusals = ""
    if refused:
        items = "".join(f"<li>{html.escape(reason)}</li>" for reason in refused)
        refusals = f"<h2>Slots not replayed</h2><ul>{items}</ul>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Replay of learning settings</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} pre{{font-size:11px;overflow-x:auto}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px}}</style></head><body>
<h1>Replay of learning settings</h1>
{sections}
{refusals}
</body></html>
"""


def _section(result: OptimizeResult, titled: bool) -> str:
    figures = [plot_values(result), plot_timeline(result)]
    images = []
    for figure in figures:
        images.append(f'<img alt="plot" src="data:image/png;base64,{_png(figure)}">')
        plt.close(figure)
    importance = ""
    if result.feature_importance:
        rows = "".join(
            f"<tr><td>{f.rank}</td><td>{html.escape(f.left_out)}</td><td>{f.drop.value:+.4f}</td>"
            f"<td>[{f.drop.low:+.4f}, {f.drop.high:+.4f}]</td></tr>"
            for f in result.feature_importance
        )
        importance = (
            "<h2>Feature importance</h2><p>Drop in estimated value when the key is left out "
            "(paired, Bonferroni-corrected over the keys); an interval covering 0 means the data "
            "cannot tell it helps.</p><table><tr><th>rank</th><th>left out</th><th>drop</th>"
            f"<th>interval</th></tr>{rows}</table>"
        )
    title = f"<h1>Slot {result.position}</h1>" if titled else ""
    return f"""{title}<p>{html.escape(result.source)}: {result.n_rows} rows (slot {result.position}).</p>
<h2>Recommendation</h2><p><b>{html.escape(result.recommendation.reason)}</b></p>
<h2>Values and differences with the logged policy</h2>{images[0]}
<h2>Estimate over the log's time</h2><p>A setting that learns rises over the log.</p>{images[1]}
{importance}
<h2>Table</h2><pre>{html.escape(format_optimize_table(result))}</pre>"""
