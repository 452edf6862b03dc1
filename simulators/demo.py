"""``make demo`` / ``python -m simulators.demo``: the learning loop on embedded defaults, end to end.

Starts the real service (``recommender serve`` on a free loopback port, embedded defaults: in-process
feature store, bus, joiner and trainer) with the demo's settings written to ``<out>/config.yaml``, drives
it with the synthetic storefront (``simulators.storefront``), and prints the click rate by model version
and the exact uniform / oracle / served click rates before and after. Writes ``<out>/reward.png``: the
click rate over time against the uniform and oracle rates, with the model swaps marked.

Demo settings (printed): SquareCB exploration and learning rate 1.0 (the default epsilon-greedy learns
this click model more slowly), a 0.3 s reward window and a new model version every 2 seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import yaml

from recommender.settings.loading import DEFAULT_CONFIG_PATH
from simulators.storefront import ClickRates, EventOutcome, Storefront

DEMO_SETTINGS = {
    "policy": {"exploration": {"algorithm": "squarecb", "gamma_scale": 20}, "learning": {"learning_rate": 1.0}},
    "join": {"reward_wait_time": 0.3, "flush_seconds": 0.1},
    "trainer": {"model_update_interval": 2.0, "poll_seconds": 0.2},
    "service": {"config_reload_seconds": 0.2, "threads": 2},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_demo_config(out: Path, port: int) -> Path:
    """configs/default.yaml with the demo's settings, its own model store and event log under ``out``."""
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for section, values in DEMO_SETTINGS.items():
        document[section].update(values)
    document["policy"]["model_dir"] = str(out / "models")
    document["join"]["event_log_dir"] = str(out / "events")
    document["service"]["port"] = port
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service at {url} was not ready within {timeout:.0f}s")


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
        f"Learning loop (embedded service, SquareCB exploration): served policy {before.fraction:.0%} -> "
        f"{after.fraction:.0%} of the way from uniform to oracle"
    )
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_demo(out: Path, n_events: int, seed: int) -> int:
    """Run the demo into ``out`` (replaced). Returns an exit status."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    port = _free_port()
    config = write_demo_config(out, port)
    url = f"http://127.0.0.1:{port}"
    print(f"demo settings: {DEMO_SETTINGS}")
    print(f"starting the service on {url} (config {config})")
    log_file = (out / "service.log").open("w")
    command = [sys.executable, "-m", "recommender.cli.main", "--config", str(config), "serve"]
    service = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        _wait_ready(url, service)
        storefront = Storefront(url, seed=seed, event_prefix="demo")
        before = storefront.evaluate(500)
        print(f"before: uniform {before.uniform:.3f}  oracle {before.oracle:.3f}  served {before.served:.3f}")
        started = time.monotonic()

        def progress(outcome: EventOutcome) -> None:
            if (outcome.index + 1) % 2000 == 0:
                print(f"  {outcome.index + 1} events, {time.monotonic() - started:.0f}s, model {outcome.model_version}")

        outcomes = storefront.run(n_events, max_seconds=150, on_event=progress)
        time.sleep(3.0)  # the last rewards are joined, learned and published
        after = storefront.evaluate(500)
        storefront.close()
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
        log_file.close()
    print(f"\n{len(outcomes)} events in {outcomes[-1].elapsed:.0f}s; click rate by model version:")
    print(f"  {'model version':<28} {'events':>7} {'click rate':>11} {'expected':>9}")
    for version, count, rate, expected in by_version(outcomes):
        print(f"  {version:<28} {count:>7} {rate:>11.3f} {expected:>9.3f}")
    print(
        f"\nafter:  uniform {after.uniform:.3f}  oracle {after.oracle:.3f}  served {after.served:.3f}  "
        f"-> {after.fraction:.0%} of the way from uniform to oracle"
    )
    figure = out / "reward.png"
    plot(outcomes, before, after, figure)
    print(f"plot: {figure}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/demo"), help="output directory (replaced)")
    parser.add_argument("--events", type=int, default=15_000, help="storefront events (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run_demo(args.out, args.events, args.seed)


if __name__ == "__main__":
    sys.exit(main())
