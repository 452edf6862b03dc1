"""Learning out of the box: ``make run``'s service with the shipped defaults on each storefront shape.

For each storefront of ``simulators.storefronts.SHAPES``: ``recommender --config <file> serve`` on
configs/default.yaml exactly as shipped (only its model store, event log and port moved into a work
directory), driven over HTTP open loop at 100 requests/s for 16,000 requests (``simulators.storefront``,
clicks reported with ``/v1/reward``, no report for a non-click). The figure: the last 2,000 requests' served
click probability (the answered probabilities times the exact click probabilities) as a fraction of the way
from the uniform policy's (0) to the oracle's (1) on the same contexts; the goal is >= 0.6 on every
storefront. Minutes per storefront, so ``benchmarks.run`` runs it only when named
(``python -m benchmarks.run --only learning``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from simulators.storefronts import SHAPES, LiveResult, live_run

EVENTS = 16_000
RATE = 100.0
LAST = 2_000
GOAL = 0.6


def measure(events: int = EVENTS, rate: float = RATE, last: int = LAST) -> list[LiveResult]:
    """One live run per storefront with the shipped defaults, in order of ``SHAPES``."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        for shape in SHAPES.values():
            result = live_run(shape, Path(tmp) / shape.name, events=events, rate=rate, last=last)
            print(f"  {result.line()}", flush=True)
            results.append(result)
    return results


def run(quick: bool = False) -> str:
    load_before = os.getloadavg()[0]
    events, last = (3_000, 1_000) if quick else (EVENTS, LAST)
    results = measure(events, RATE, last)
    load_after = os.getloadavg()[0]
    lines = [
        "## Learning",
        "",
        f"`make run`'s service (`recommender --config <file> serve`, configs/default.yaml as shipped) on each "
        f"storefront of `simulators.storefronts`, driven over HTTP open loop at {RATE:.0f} requests/s for "
        f"{events:,} requests; *fraction*: the last {last:,} requests' served click probability, 0 = the "
        f"uniform policy's, 1 = the oracle's (the best expected click per request), on the same requests. "
        f"Goal: >= {GOAL} on every storefront. Machine load (1-minute average, 2 cores) at the start and "
        f"the end: {load_before:.1f} / {load_after:.1f}. Reproduce: `python -m benchmarks.run --only learning`.",
        "",
        "| storefront | candidates | uniform | oracle | served | fraction | achieved req/s | p99 late ms | "
        "model versions | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        shape, rates = SHAPES[result.shape], result.rates
        lines.append(
            f"| {shape.name} ({shape.summary}) | {shape.candidates} of {shape.n_items} | {rates.uniform:.4f} | "
            f"{rates.oracle:.4f} | {rates.served:.4f} | **{rates.fraction:.2f}** | {result.achieved_rate:.1f} | "
            f"{1000 * result.p99_late:.0f} | {result.versions} | {'met' if rates.fraction >= GOAL else 'NOT met'} |"
        )
    return "\n".join(lines)
