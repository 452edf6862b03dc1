"""Storefronts of different shapes, the service run as ``make run`` runs it, and the runs that chose the defaults.

A **shape** (``StorefrontShape``) is the storefront's click model (``simulators.storefront``) with a catalog
size, a number of candidates per request, how much of the signal is in user x item interactions (embedding
affinity, preferred categories) vs item popularity, the page position the recommendation is shown at
(position bias), and the base click rate (noise). ``SHAPES`` holds the four the shipped defaults were chosen
on (docs/learning.md, "How the defaults were chosen"); ``StorefrontShape.truth`` gives each one's uniform and
oracle click rates (the best expected click per request), exactly per context, averaged over many contexts.

``ServiceProcess`` starts ``recommender --config <file> serve`` (what ``make run`` starts: the embedded
default, one process) on a free loopback port, from ``configs/default.yaml`` with its own model store and
event log and the given overrides. Two runs use it:

- ``live_run``: drives the service open loop at a fixed rate and reports the last events' served click
  probability as a fraction of the way from uniform (0) to the oracle (1);
- ``uniform_log``: ``trainer.mode: logging_only`` with a fresh model serves uniformly at random, so the event
  log it writes is the log ``recommender optimize`` replays learning settings over.

Command line (``python -m simulators.storefronts``)::

    python -m simulators.storefronts shapes
    python -m simulators.storefronts log --shape wide50 --events 12000 --out var/storefronts/wide50
    recommender optimize --log var/storefronts/wide50/events --setting exploration.gamma_scale=20 --quiet
    python -m simulators.storefronts live --shape wide50 --events 6000 --rate 100 \\
        --set 'policy.exploration={algorithm: epsilon_greedy, epsilon: 0.05}' --set join.reward_wait_time=60
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recommender.settings.loading import DEFAULT_CONFIG_PATH
from simulators.storefront import Catalog, ClickModel, ClickRates, EventOutcome, Storefront, tail_rates


@dataclass(frozen=True)
class StorefrontShape:
    """One storefront: ``candidates`` random items per request out of the sample catalog's first ``n_items``,
    clicked by ``click_model``."""

    name: str
    summary: str
    n_items: int
    candidates: int
    click_model: ClickModel = field(default_factory=ClickModel)

    def catalog(self) -> Catalog:
        return _catalog(self.n_items)

    def storefront(self, url: str, *, seed: int = 0, event_prefix: str = "sf") -> Storefront:
        return Storefront(url, catalog=self.catalog(), click_model=self.click_model, candidates=self.candidates,
                          seed=seed, event_prefix=event_prefix)  # fmt: skip

    def truth(self, n_contexts: int = 20_000, seed: int = 99) -> tuple[float, float]:
        """(uniform, oracle): the mean over ``n_contexts`` random contexts of the candidates' mean and maximum
        click probability at the recommendation's position."""
        catalog, rng = self.catalog(), np.random.default_rng(seed)
        uniform = oracle = 0.0
        for _ in range(n_contexts):
            user = int(rng.integers(len(catalog.user_ids)))
            probs = catalog.click_prob(self.click_model, user, rng.choice(self.n_items, self.candidates, replace=False))
            uniform += float(probs.mean())
            oracle += float(probs.max())
        return uniform / n_contexts, oracle / n_contexts


_CATALOGS: dict[int, Catalog] = {}


def _catalog(n_items: int) -> Catalog:
    # Building a catalog reads the sample catalog and computes (users x items) arrays: once per size.
    if n_items not in _CATALOGS:
        _CATALOGS[n_items] = Catalog(n_items)
    return _CATALOGS[n_items]


SHAPES: dict[str, StorefrontShape] = {
    shape.name: shape
    for shape in (
        StorefrontShape(
            "affinity20", "20 of 100 items; user x item signal (embedding affinity, preferred categories); top slot",
            n_items=100, candidates=20,
        ),
        StorefrontShape(
            "popular10", "10 of 100 items; mostly item popularity, weak user x item; second slot (beta 0.7)",
            n_items=100, candidates=10,
            click_model=ClickModel(base_logit=-2.0, affinity=1.0, category_bonus=0.7, popularity=1.5, slot=1),
        ),
        StorefrontShape(
            "wide50", "50 of 500 items; user x item only (no popularity), strong; top slot",
            n_items=500, candidates=50,
            click_model=ClickModel(base_logit=-3.0, affinity=4.0, category_bonus=2.5),
        ),
        StorefrontShape(
            "sparse200", "200 of 1000 items; popularity and user x item, rare clicks; third slot (beta 0.5)",
            n_items=1000, candidates=200,
            click_model=ClickModel(base_logit=-3.5, affinity=3.0, category_bonus=2.0, popularity=1.0, slot=2),
        ),
    )
}  # fmt: skip


# ----- the service ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_dotted(document: dict[str, Any], key: str, value: Any) -> None:
    """``document[a][b][c] = value`` for ``key`` ``"a.b.c"`` (the value replaces what was there, whole)."""
    *path, last = key.split(".")
    node = document
    for part in path:
        node = node.setdefault(part, {})
    node[last] = copy.deepcopy(value)


def parse_overrides(flags: Sequence[str]) -> dict[str, Any]:
    """``["policy.learning.learning_rate=1.0", "policy.exploration={algorithm: greedy}"]`` -> {key: value}
    (values read as YAML)."""
    overrides = {}
    for flag in flags:
        key, eq, value = flag.partition("=")
        if not eq or not key.strip():
            raise SystemExit(f"--set {flag!r} is not KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def write_config(out: Path, port: int, overrides: Mapping[str, Any] = ()) -> Path:
    """configs/default.yaml with ``overrides`` (dotted keys), its model store and event log under ``out``."""
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for key, value in dict(overrides).items():
        set_dotted(document, key, value)
    set_dotted(document, "policy.model_dir", str(out / "models"))
    set_dotted(document, "join.event_log_dir", str(out / "events"))
    set_dotted(document, "service.port", port)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


class ServiceProcess:
    """``recommender --config <out>/config.yaml serve`` in a child process (output in ``<out>/service.log``);
    a context manager: ready on entry, SIGTERM (it learns what is left and publishes) and waited on exit."""

    def __init__(self, out: Path, overrides: Mapping[str, Any] = ()) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.port = free_port()
        self.config = write_config(out, self.port, overrides)
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> ServiceProcess:
        log = (self.out / "service.log").open("w")
        command = [sys.executable, "-m", "recommender.cli.main", "--config", str(self.config), "serve"]
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        log.close()  # the child holds its own descriptor
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the service exited with status {self._process.returncode}; see {self.out}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the service at {self.url} was not ready within {timeout:.0f}s")

    def __exit__(self, *_: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


# ----- the runs ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveResult:
    """A live run: the last ``rates.contexts`` events' exact rates, the achieved request rate, and how late
    the open-loop requests went out (p99, seconds)."""

    shape: str
    events: int
    seconds: float
    achieved_rate: float
    p99_late: float
    rates: ClickRates
    versions: int

    def line(self) -> str:
        r = self.rates
        return (f"{self.shape}: {self.events} events in {self.seconds:.0f}s ({self.achieved_rate:.1f}/s, p99 late "
                f"{1000 * self.p99_late:.0f} ms), {self.versions} model versions; last {r.contexts}: uniform "
                f"{r.uniform:.4f} oracle {r.oracle:.4f} served {r.served:.4f}: fraction {r.fraction:.3f}")  # fmt: skip


def live_run(shape: StorefrontShape, out: Path, *, events: int, rate: float = 100.0, last: int = 2000,
             overrides: Mapping[str, Any] = (), seed: int = 7,
             on_event: Callable[[EventOutcome], None] | None = None) -> LiveResult:  # fmt: skip
    """The service with ``overrides`` over the shipped defaults, driven by ``shape`` at ``rate`` events/s (open
    loop) for ``events``; the last ``last`` events' served click probability vs uniform and oracle."""
    with ServiceProcess(out, overrides) as service:
        storefront = shape.storefront(service.url, seed=seed, event_prefix=shape.name)
        outcomes = storefront.run(events, rate=rate, max_seconds=events / rate + 120, on_event=on_event)
        storefront.close()
    seconds = outcomes[-1].elapsed
    late = sorted(o.late for o in outcomes)
    return LiveResult(shape.name, len(outcomes), seconds, len(outcomes) / seconds, late[int(0.99 * (len(late) - 1))],
                      tail_rates(outcomes, last), len({o.model_version for o in outcomes}))  # fmt: skip


def uniform_log(shape: StorefrontShape, out: Path, *, events: int, seed: int = 3) -> Path:
    """A log of ``events`` decisions made uniformly at random (``logging_only``, fresh model) on ``shape``,
    every one joined (1 s window); returns the event log's directory."""
    overrides = {"trainer.mode": "logging_only", "join.reward_wait_time": 1.0, "join.aggregation": "sum"}
    with ServiceProcess(out, overrides) as service:
        storefront = shape.storefront(service.url, seed=seed, event_prefix=f"{shape.name}-log")
        storefront.run(events, max_seconds=3600)
        storefront.close()
        time.sleep(3.0)  # the last windows close and the joiner flushes them
    return out / "events"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.storefronts", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("shapes", help="each storefront's shape, uniform and oracle click rates")
    log = commands.add_parser("log", help="a uniformly-logged event log of a storefront (for recommender optimize)")
    live = commands.add_parser("live", help="the service driven open loop; the last events' fraction to the oracle")
    for sub in (log, live):
        sub.add_argument("--shape", required=True, choices=list(SHAPES))
        sub.add_argument("--events", type=int, default=6000)
        sub.add_argument("--out", type=Path, help="work directory (default var/storefronts/<shape>[-live])")
    live.add_argument("--rate", type=float, default=100.0, help="events/s, open loop (default: %(default)s)")
    live.add_argument("--last", type=int, default=2000, help="events rated at the end (default: %(default)s)")
    live.add_argument("--seed", type=int, default=7)
    live.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config override over configs/default.yaml, value as YAML (repeat)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "shapes":
        for shape in SHAPES.values():
            uniform, oracle = shape.truth()
            print(f"{shape.name:<10} uniform {uniform:.4f} oracle {oracle:.4f}  {shape.summary}")
        return 0
    shape = SHAPES[args.shape]
    if args.command == "log":
        events = uniform_log(shape, args.out or Path("var/storefronts") / shape.name, events=args.events)
        print(f"wrote {events}")
        return 0
    out = args.out or Path("var/storefronts") / f"{shape.name}-live"
    result = live_run(shape, out, events=args.events, rate=args.rate, last=args.last,
                      overrides=parse_overrides(args.set), seed=args.seed)  # fmt: skip
    print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
