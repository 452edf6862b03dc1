"""``make demo`` / ``python -m simulators.demo``: the learning loop on the shipped defaults, end to end.

Starts the real service as ``make run`` does (``recommender --config <out>/config.yaml serve``:
configs/default.yaml as shipped, only its model store, event log and port moved under ``<out>``; embedded
defaults: in-process feature store, bus, joiner and trainer), drives it over HTTP with a storefront of
``simulators.storefronts`` (``affinity20`` by default) open loop at 100 requests/s, and prints the click rate by
model version, the last 2,000 requests' served click probability as a fraction of the way from uniform to
the oracle, and the exact uniform / oracle / served click rates on held-out contexts before and after.
Writes ``<out>/reward.png``: the click rate over time against the uniform and oracle rates, with the model
swaps marked.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from simulators.storefront import ClickRates, EventOutcome, tail_rates
from simulators.storefronts import SHAPES, ServiceProcess


def by_version(outcomes: Sequence[EventOutcome]) -> list[tuple[str, int, float, float]]:
    """(version, events, click rate, expected click rate of what was shown), in order of first use."""
    rows: dict[str, list[EventOutcome]] = {}
    for outcome in outcomes:
        rows.setdefault(outcome.model_version, []).append(outcome)
    return [
        (version, len(group), float(np.mean([o.clicked for o in group])), float(np.mean([o.p_served for o in group])))
        for version, group in rows.items()
    ]


def plot(
    outcomes: Sequence[EventOutcome], before: ClickRates, after: ClickRates, path: Path, window: int = 500
) -> None:
    """Click rate over time (rolling mean of clicks, and of the exact expected click rate of what was
    shown), the uniform and oracle rates, and a tick at each model swap."""
    matplotlib.use("Agg")
    index = np.arange(1, len(outcomes) + 1)
    clicks = np.array([o.clicked for o in outcomes], dtype=float)
    expected = np.array([o.p_served for o in outcomes])
    kernel = np.ones(window) / window
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    ax.plot(index[window - 1 :], np.convolve(clicks, kernel, "valid"), color="#9ecae1", lw=1.2,
            label=f"observed click rate (rolling {window} events)")  # fmt: skip
    ax.plot(index[window - 1 :], np.convolve(expected, kernel, "valid"), color="#08519c", lw=2.2,
            label=f"expected click rate of the items shown (rolling {window})")  # fmt: skip
    ax.axhline(
        after.oracle, color="#2ca02c", ls="--", lw=1.5, label=f"oracle (best item per shopper): {after.oracle:.3f}"
    )
    ax.axhline(after.uniform, color="#d62728", ls="--", lw=1.5, label=f"uniform random: {after.uniform:.3f}")
    swaps = [o.index for prev, o in zip(outcomes, outcomes[1:], strict=False) if o.model_version != prev.model_version]
    for i, swap in enumerate(swaps):
        ax.axvline(swap, color="grey", alpha=0.25, lw=0.8, label="new model version served" if i == 0 else None)
    ax.set_xlabel("storefront events (score requests)")
    ax.set_ylabel("click rate")
    ax.set_ylim(0, max(after.oracle, clicks.mean()) * 1.25)
    ax.set_xlim(0, len(outcomes))
    ax.set_title(
        f"Learning loop (make run's service, shipped defaults): served policy {before.fraction:.0%} -> "
        f"{after.fraction:.0%} of the way from uniform to oracle"
    )
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_demo(out: Path, n_events: int, seed: int, shape_name: str = "affinity20", rate: float = 100.0) -> int:
    """Run the demo into ``out`` (replaced). Returns an exit status."""
    shutil.rmtree(out, ignore_errors=True)
    shape = SHAPES[shape_name]
    with ServiceProcess(out) as service:
        print(f"service on {service.url} with the shipped defaults (config {service.config})")
        print(f"storefront {shape.name}: {shape.summary}; {n_events} requests at {rate:g}/s")
        storefront = shape.storefront(service.url, seed=seed, event_prefix="demo")
        before = storefront.evaluate(500)
        print(f"before: uniform {before.uniform:.3f}  oracle {before.oracle:.3f}  served {before.served:.3f}")
        started = time.monotonic()

        def progress(outcome: EventOutcome) -> None:
            if (outcome.index + 1) % 2000 == 0:
                print(f"  {outcome.index + 1} events, {time.monotonic() - started:.0f}s, model {outcome.model_version}")

        outcomes = storefront.run(n_events, rate=rate, max_seconds=n_events / rate + 60, on_event=progress)
        after = storefront.evaluate(500)
        storefront.close()
    print(f"\n{len(outcomes)} events in {outcomes[-1].elapsed:.0f}s; click rate by model version:")
    print(f"  {'model version':<28} {'events':>7} {'click rate':>11} {'expected':>9}")
    for version, count, click_rate, expected in by_version(outcomes):
        print(f"  {version:<28} {count:>7} {click_rate:>11.3f} {expected:>9.3f}")
    tail = tail_rates(outcomes, 2000)
    print(
        f"\nlast {tail.contexts} requests: uniform {tail.uniform:.3f}  oracle {tail.oracle:.3f}  "
        f"served {tail.served:.3f}  -> {tail.fraction:.0%} of the way from uniform to oracle"
    )
    print(
        f"after (held-out contexts): uniform {after.uniform:.3f}  oracle {after.oracle:.3f}  served {after.served:.3f}"
        f"  -> {after.fraction:.0%}"
    )
    figure = out / "reward.png"
    plot(outcomes, before, after, figure)
    print(f"plot: {figure}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/demo"), help="output directory (replaced)")
    parser.add_argument("--events", type=int, default=6_000, help="storefront requests (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s, open loop (default: %(default)s)")
    parser.add_argument("--shape", default="affinity20", choices=list(SHAPES), help="storefront (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run_demo(args.out, args.events, args.seed, args.shape, args.rate)


if __name__ == "__main__":
    sys.exit(main())
