"""Background ``recommender optimize`` runs for Personalizer's evaluations and feature importances.

The service does not import the offline simulators (their scientific stack is no part of serving); a job is
``recommender optimize`` in a process of its own, started by the worker that took the create call, with its
files in one directory per job under ``<policy.model_dir>/../personalizer-jobs/<kind>/<id>/`` (``var/`` by
default, beside the model store):

- ``job.json``: what was asked (kind, id, name, time range, policies) and when, written first;
- ``config.yaml``: the configuration it runs with (the followed config file's content, else the settings in
  force); ``stdout.txt``/``stderr.txt``: its output; ``pid``: the process id;
- ``result.json``: optimize's JSON document (``--json-out``), once it succeeded; ``exit_code``: written when
  the process ended (by the worker that waits for it).

State is in these files, so every worker answers the same: ``Succeeded`` (exit 0 and a result),
``Failed`` (another exit status, or the process is gone without one, e.g. its worker restarted),
``Timeout`` (killed after ``MAX_SECONDS``), ``Running``. Bounds: one job runs at a time across the
workers (an ``fcntl`` lock over the check and the start; a second create is a 409), at most ``MAX_JOBS``
jobs of each kind are kept (delete old ones), and a job runs at most ``MAX_SECONDS``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from recommender.service.errors import ApiError
from recommender.service.runtime import Runtime

MAX_JOBS = 100
MAX_SECONDS = 3600.0
KINDS = ("evaluations", "featureImportances")
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a directory name, never a path


@dataclass(frozen=True)
class Job:
    """One job as its files describe it (module docstring)."""

    kind: str
    id: str
    path: Path
    request: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error: str | None


def jobs_root(rt: Runtime) -> Path:
    return Path(rt.snapshot.config.policy.model_dir).resolve().parent / "personalizer-jobs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def load(path: Path, kind: str) -> Job | None:
    """The job in ``path`` (None: not a job directory, e.g. one being deleted)."""
    request_text = _read(path / "job.json")
    if request_text is None:
        return None
    request = json.loads(request_text)
    exit_text, pid_text = _read(path / "exit_code"), _read(path / "pid")
    result_text = _read(path / "result.json")
    result = json.loads(result_text) if result_text else None
    error = None
    if exit_text is not None:
        code = exit_text.strip()
        if code == "0" and result is not None:
            status = "Succeeded"
        else:
            status = "Timeout" if code == "timeout" else "Failed"
            lines = (_read(path / "stderr.txt") or "").strip().splitlines()
            error = lines[-1] if lines else f"recommender optimize ended with status {code}"
    elif pid_text is not None and _alive(int(pid_text)):
        status = "Running"
    else:
        status, error = "Failed", "the run ended without a status (the worker that started it stopped)"
    return Job(kind, path.name, path, request, status, result, error)


def jobs(rt: Runtime, kind: str) -> list[Job]:
    """Every job of ``kind``, oldest first."""
    root = jobs_root(rt) / kind
    found = [load(p, kind) for p in sorted(root.iterdir())] if root.is_dir() else []
    return sorted((j for j in found if j is not None), key=lambda j: j.request.get("creationTime", ""))


def find(rt: Runtime, kind: str, job_id: str) -> Job:
    job = load(jobs_root(rt) / kind / job_id, kind)
    if job is None:
        raise ApiError(404, "ResourceNotFound", f"no {kind[:-1]} with id {job_id!r}", field="id")
    return job


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _config_text(rt: Runtime) -> str:
    if rt.config_path is not None:
        return rt.config_path.read_text(encoding="utf-8")
    return yaml.safe_dump(rt.snapshot.config.model_dump(mode="json", by_alias=True), sort_keys=False)


def start(rt: Runtime, kind: str, job_id: str, request: dict[str, Any], optimize_args: Sequence[str]) -> None:
    """Start ``recommender optimize <optimize_args> --json-out <job>/result.json`` as job ``job_id``.

    Raises ApiError 409 when a job with that id exists, when another job is running, or when ``MAX_JOBS``
    jobs of this kind are kept."""
    root = jobs_root(rt)
    with _locked(root):
        path = root / kind / job_id
        if path.exists():
            raise ApiError(409, "Conflict", f"id: a {kind[:-1]} {job_id!r} exists already; delete it first",
                           field="id")  # fmt: skip
        for other in KINDS:
            running = [j.id for j in jobs(rt, other) if j.status == "Running"]
            if running:
                raise ApiError(409, "Conflict", f"{other[:-1]} {running[0]!r} is running; one runs at a time")
        if len(jobs(rt, kind)) >= MAX_JOBS:
            raise ApiError(409, "Conflict", f"{MAX_JOBS} {kind} are kept already; delete old ones first")
        path.mkdir(parents=True)
        stamped = {**request, "creationTime": datetime.now(UTC).isoformat()}
        (path / "job.json").write_text(json.dumps(stamped), encoding="utf-8")
        (path / "config.yaml").write_text(_config_text(rt), encoding="utf-8")
        command = [sys.executable, "-m", "recommender.cli.main", "--config", str(path / "config.yaml"), "optimize",
                   *optimize_args, "--quiet", "--json-out", str(path / "result.json")]  # fmt: skip
        with (path / "stdout.txt").open("wb") as out, (path / "stderr.txt").open("wb") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                       start_new_session=True, cwd=Path.cwd())  # fmt: skip
        (path / "pid").write_text(str(process.pid), encoding="utf-8")
    threading.Thread(target=_wait, args=(process, path), name=f"job-{job_id}", daemon=True).start()


def _wait(process: subprocess.Popen[bytes], path: Path) -> None:
    """Wait for the job (killing it after MAX_SECONDS) and record how it ended."""
    try:
        code: str = str(process.wait(timeout=MAX_SECONDS))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = "timeout"
    if path.is_dir():
        (path / "exit_code").write_text(code, encoding="utf-8")


def delete(rt: Runtime, kind: str, job_id: str) -> None:
    """Stop the job if it runs and delete its files."""
    job = find(rt, kind, job_id)
    pid_text = _read(job.path / "pid")
    if job.status == "Running" and pid_text is not None:
        with suppress(ProcessLookupError):
            os.killpg(int(pid_text), signal.SIGKILL)
    doomed = job.path.with_name(f".deleted-{job.id}-{time.monotonic_ns()}")
    job.path.rename(doomed)  # atomically gone for readers
    shutil.rmtree(doomed, ignore_errors=True)
