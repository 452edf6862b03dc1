"""A sweep's result as a text table, and the recommended setting as a YAML snippet for ``configs/``.

``config_snippet`` writes only the keys that differ from the configured policy section, and says whether
applying them keeps the learned model: only an exploration change that ``ExplorationSettings.change_refusal``
allows is hot-reloaded onto the trained weights; anything else (another exploration family or a field VW
stores in the model, interactions, bits, cb_type, learning rate, power_t, l2, seed) needs a new model,
trained from the log with the new section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import yaml

from recommender.settings.policy import PolicyConfig
from simulators.optimize import OptimizeResult, PolicyResult


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def slots_document(results: Sequence[OptimizeResult], refused: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON document of a run: one slot replayed, its ``OptimizeResult.to_dict`` (with
    ``refused_slots`` when other slots could not be replayed); several, ``{"slots": [...],
    "refused_slots": [...]}`` with one document per slot in slot order."""
    if len(results) == 1:
        document = results[0].to_dict()
        if refused:
            document["refused_slots"] = list(refused)
        return document
    return {"slots": [r.to_dict() for r in results], "refused_slots": list(refused)}


def format_slots_table(results: Sequence[OptimizeResult], refused: Sequence[str] = ()) -> str:
    """``format_optimize_table`` of each slot replayed, then why the other slots were not."""
    blocks = [format_optimize_table(r) for r in results]
    if len(results) > 1:
        blocks = [f"== slot {r.position} ==\n{block}" for r, block in zip(results, blocks, strict=True)]
    blocks += [f"not replayed: {reason}" for reason in refused]
    return "\n\n".join(blocks)


def format_optimize_table(result: OptimizeResult) -> str:
    """Each policy's estimates with intervals, its corrected difference with the logged policy, the
    feature-importance ranking and the recommendation."""
    primary = result.config.primary
    lines = [
        f"log: {result.source}  rows replayed: {result.n_rows} (slot {result.position})",
        f"primary estimator: {primary}; differences vs logged: Bonferroni-corrected normal intervals",
        "",
    ]
    width = max(len("policy"), *(len(p.name) for p in result.policies))
    header = f"{'policy':<{width}} {'kind':<10}"
    for name in result.config.estimators:
        header += f" {name:>26}"
    header += f" {'diff vs logged [corrected]':>34} {'ESS%':>6}"
    lines.append(header)
    for policy in result.policies:
        row = f"{policy.name:<{width}} {policy.kind:<10}"
        for name in result.config.estimators:
            estimate = policy.evaluation.estimate(name)
            normal = estimate.interval("normal")
            row += f" {_fmt(estimate.value):>8} [{_fmt(normal.low)}, {_fmt(normal.high)}]"
        d = policy.difference
        row += f" {(f'{d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}]' if d else '-'):>34}"
        row += f" {100 * policy.evaluation.diagnostics.ess_ratio:>5.1f}"
        lines.append(row)
    if result.feature_importance:
        lines += [
            "",
            f"feature importance of {result.base.label if result.base else 'the setting'} "
            "(drop in value when left out, corrected interval):",
        ]
        for f in result.feature_importance:
            lines.append(f"  {f.rank:>2}. {f.left_out:<30} {f.drop.value:+.4f} [{f.drop.low:+.4f}, {f.drop.high:+.4f}]")
    lines += ["", result.recommendation.reason]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _changed(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key in ("model_dir", "item_cache_size", "mode"):
            continue
        if key == "exploration":
            if value != base.get(key):
                out[key] = value  # the whole block: another algorithm takes other keys
        elif isinstance(value, dict):
            inner = {k: v for k, v in value.items() if base.get(key, {}).get(k) != v}
            if inner:
                out[key] = inner
        elif value != base.get(key):
            out[key] = [list(v) for v in value] if key == "interactions" else value
    return out


def model_change(base: PolicyConfig, new: PolicyConfig) -> str | None:
    """None when ``new`` can be applied to a model trained under ``base`` keeping its weights, else why not."""
    refusal = base.exploration.change_refusal(new.exploration, mode=base.mode)
    if refusal:
        return refusal
    others = [key for key in ("learning", "interactions", "bits", "seed") if getattr(base, key) != getattr(new, key)]
    if others:
        return f"{', '.join(others)} changed: the model must be trained anew with the new policy section"
    return None


def config_snippet(result: OptimizeResult, base: PolicyConfig) -> str:
    """The YAML to paste into ``configs/`` (the ``policy`` keys that change), with a header saying why and
    whether applying it keeps the model; a comment-only file when nothing is recommended."""
    header = [f"# recommender optimize over {result.source} ({result.n_rows} rows, slot {result.position})"]
    policy: PolicyResult | None = result.recommended
    if policy is None or policy.setting is None:
        header.append("# " + result.recommendation.reason)
        return "\n".join([*header, "# nothing to change: keep configs/ as it is", ""])
    new = policy.setting.config
    if base.mode == "ccb":  # the replay ran as cb on one slot: keep the section's slot crosses
        slot_crosses = tuple(i for i in base.interactions if "slot" in i)
        new = new.model_copy(update={"mode": "ccb", "interactions": (*new.interactions, *slot_crosses)})
    changes = _changed(base.model_dump(mode="json", by_alias=True), new.model_dump(mode="json", by_alias=True))
    header.append("# " + result.recommendation.reason)
    if not changes:
        return "\n".join([*header, "# the recommended setting is the configured one: nothing to change", ""])
    problem = model_change(base, new)
    if problem is None:
        header.append("# applying it KEEPS THE MODEL: an exploration change, hot-reloaded within seconds")
    else:
        header.append(f"# applying it NEEDS A NEW MODEL: {problem}")
    body = yaml.safe_dump({"policy": changes}, sort_keys=False, default_flow_style=None)
    return "\n".join(header) + "\n" + body
