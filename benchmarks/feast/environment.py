"""Feast's side of benchmarks/bench_feast.py, set up from our virtualenv: its own virtualenv, a feature
repository under var/ with the sample catalog as Parquet offline sources, ``feast apply`` and
``feast materialize`` into a given Redis, and the worker process that times ``get_online_features``.

Two variants: ``python``, the current Feast release on this interpreter (its Python online read path), and
``go``, the newest release whose PyPI wheel ships the compiled embedded Go feature server (0.29.0: from
0.30 on the wheels are pure Python and the Go server is built from source only). Those wheels exist for
CPython 3.7-3.10 only, so the Go variant needs a Python 3.10 interpreter (``$FEAST_GO_PYTHON``,
``python3.10`` on PATH, or a pyenv 3.10).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.sample_catalog import items_frame, users_frame

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VAR = ROOT / "var"
# The rows' event time, and a materialization window around it.
EVENT_TIME = pd.Timestamp("2024-01-01", tz="UTC")
WINDOW = ("2023-12-31T00:00:00", "2024-01-02T00:00:00")
DEFINITIONS = "catalog_views.py"  # the name of feature_repo.py's copy in a repository


def feast_env() -> dict[str, str]:
    """The environment of Feast's processes: ours without PYTHONPATH, so that none of our modules can stand in
    for one of Feast's or of the repository's."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


@dataclass(frozen=True)
class Variant:
    """One Feast installation to measure: where its virtualenv goes and how its repository is configured."""

    name: str  # python | go
    requirements: tuple[str, ...]  # what pip installs
    version: str  # the Feast version that requirement pins
    venv: Path
    project: str  # the Feast project: part of every Redis key Feast writes, so the variants do not collide
    # How entity keys become Redis keys: 3 is 0.67's default (0.38 on); 0.29 knows up to 2.
    key_serialization: int = 3
    yaml_extra: str = ""  # more feature_store.yaml lines

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def repo(self) -> Path:
        """The Feast repository, beside the virtualenv."""
        return self.venv.parent / f"feast-repo-{self.name}"


PYTHON = Variant("python", ("feast[redis]==0.67.0",), "0.67.0", VAR / "feast-venv", "bench_py")
# 0.29's pins leave numpy and dask open: numpy 2 breaks the pandas 1.5 it pins (binary incompatibility at
# import), and dask 2024 on refuses pandas 1.5.
# go_feature_retrieval routes get_online_features to the embedded Go code (go_feature_serving is for `feast serve`).
GO = Variant("go", ("feast[redis,go]==0.29.0", "numpy<2", "dask<2024"), "0.29.0", VAR / "feast-go-venv", "bench_go",
             key_serialization=2, yaml_extra="go_feature_retrieval: True\n")  # fmt: skip


def python310() -> str | None:
    """A Python 3.10 interpreter for the Go variant, or None."""
    candidates = [os.environ.get("FEAST_GO_PYTHON"), shutil.which("python3.10"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))]  # fmt: skip
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def installed_version(variant: Variant) -> str | None:
    """The Feast version in ``variant``'s virtualenv, or None when it has none."""
    if not variant.python.exists():
        return None
    probe = subprocess.run([str(variant.python), "-c", "import feast; print(feast.__version__)"],
                           capture_output=True, text=True)  # fmt: skip
    return probe.stdout.strip() if probe.returncode == 0 else None


INSTALL_NOTE = "install-seconds"  # in the virtualenv: how long its creation and install took


def ensure_venv(variant: Variant, interpreter: str) -> tuple[float | None, bool]:
    """Create ``variant``'s virtualenv with ``interpreter`` and install Feast into it, unless it already has
    the pinned version. Returns the seconds the creation and install took (None if unknown) and whether
    it was reused. Raises RuntimeError with pip's last lines when the install fails."""
    if installed_version(variant) == variant.version:
        note = variant.venv / INSTALL_NOTE
        return (float(note.read_text()) if note.exists() else None), True
    start = time.perf_counter()
    if variant.venv.exists():
        shutil.rmtree(variant.venv)
    subprocess.run([interpreter, "-m", "venv", str(variant.venv)], check=True)
    install = subprocess.run([str(variant.python), "-m", "pip", "install", "-q", *variant.requirements],
                             capture_output=True, text=True)  # fmt: skip
    if install.returncode != 0:
        lines = [line for line in (install.stdout + install.stderr).splitlines() if "is ignored" not in line]
        raise RuntimeError(f"pip install {' '.join(variant.requirements)} failed: " + " | ".join(lines[-8:]))
    seconds = time.perf_counter() - start
    (variant.venv / INSTALL_NOTE).write_text(f"{seconds:.1f}")
    return seconds, False


def offline_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample catalog's users and items as Feast offline sources: the same values our store serves
    (a null shade_family becomes the group's default, ``none``), plus the ``event_timestamp`` column."""
    users, items = users_frame(), items_frame()
    items["shade_family"] = items["shade_family"].fillna("none")
    users["event_timestamp"] = EVENT_TIME
    items["event_timestamp"] = EVENT_TIME
    return users, items


def write_repo(variant: Variant, redis_port: int, frames: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Path:
    """A fresh Feast repository for ``variant`` (definitions, Parquet sources of ``frames``, by default
    ``offline_frames()``, feature_store.yaml on ``redis_port``); returns its path."""
    repo = variant.repo
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "data").mkdir(parents=True)
    users, items = frames if frames is not None else offline_frames()
    users.to_parquet(repo / "data" / "users.parquet", index=False)
    items.to_parquet(repo / "data" / "items.parquet", index=False)
    # Feast imports the definitions by module name: not `features`, which is our package's name.
    shutil.copy(HERE / "feature_repo.py", repo / DEFINITIONS)
    (repo / "feature_store.yaml").write_text(
        f"project: {variant.project}\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n  type: redis\n  connection_string: 127.0.0.1:{redis_port}\n"
        f"offline_store:\n  type: file\n"
        f"entity_key_serialization_version: {variant.key_serialization}\n{variant.yaml_extra}"
    )
    return repo


def feast_cli(variant: Variant, *args: str) -> float:
    """Run ``feast <args>`` in ``variant``'s repository; the seconds it took. RuntimeError on failure."""
    start = time.perf_counter()
    done = subprocess.run([str(variant.venv / "bin" / "feast"), *args], cwd=variant.repo, env=feast_env(),
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed: {done.stderr.strip()[-600:]}")
    return time.perf_counter() - start


class Worker:
    """benchmarks/feast/worker.py running in ``variant``'s virtualenv against its repository."""

    def __init__(self, variant: Variant) -> None:
        self.log = variant.repo / "worker.log"  # Feast's warnings and logs, and a traceback if it dies
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(variant.python), str(HERE / "worker.py"), str(variant.repo)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=feast_env(),
            )  # fmt: skip

    def ask(self, request: dict) -> dict:
        """Send one request; its reply. RuntimeError when the worker died or refused it."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            last = self.log.read_text().strip().splitlines()[-1:]
            raise RuntimeError(f"the Feast worker exited (code {self.process.wait()}): {' '.join(last)}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def interpreter_for(variant: Variant) -> str | None:
    """The interpreter ``variant``'s virtualenv is built with: ours for ``python``, a 3.10 for ``go``."""
    return sys.executable if variant is PYTHON else python310()
