"""WSGI servers as process groups for the comparison benchmarks (``bench_versus``, ``bench_servers``).

``ServedProcesses`` starts one server (one or more commands, all on one port), waits for its ``GET /readyz``
(``service_setup.wait_ready``), lists its whole process tree by pid (for CPU accounting) and stops it.
``server_commands`` gives the commands of each server in the same shape: 2 processes x 2 threads where the
server has threads (bjoern has none: 2 single-threaded processes sharing the port with ``SO_REUSEPORT``), on
127.0.0.1, keep-alive, no access log. ``ensure_server`` installs an optional server into this virtualenv on
demand (pip; bjoern's build needs Debian's ``libev-dev``, installed with apt-get when missing) and says why
when it cannot.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.service_setup import ROOT, descendants, wait_ready
from benchmarks.wrk_load import apt_install

BIN = Path(sys.executable).parent
# Each optional server: (what shows it is installed: a module or a file in the venv's bin, its pip package).
OPTIONAL = {"uwsgi": ("bin:uwsgi", "uWSGI"), "granian": ("module:granian", "granian"),
            "bjoern": ("module:bjoern", "bjoern")}  # fmt: skip
OURS = "benchmarks.ours_wsgi:application"


def gunicorn_command(target: str, port: int, worker_class: str = "gthread") -> list[str]:
    """gunicorn with 2 workers x 2 threads of ``worker_class`` serving ``target`` (``module:callable``)."""
    return [sys.executable, "-m", "gunicorn", "-k", worker_class, "-w", "2", "--threads", "2",
            "-b", f"127.0.0.1:{port}", "--keep-alive", "75", "--log-level", "warning", target]  # fmt: skip


def server_commands(server: str, port: int, target: str = OURS) -> list[list[str]]:
    """The commands that serve ``target`` with ``server`` (gthread, uwsgi, granian, bjoern) on ``port``."""
    if server == "gthread":
        return [gunicorn_command(target, port)]
    if server == "uwsgi":
        return [[str(BIN / "uwsgi"), "--http11-socket", f"127.0.0.1:{port}", "--module", target, "--master",
                 "--processes", "2", "--threads", "2", "--enable-threads", "--lazy-apps", "--die-on-term",
                 "--need-app", "--disable-logging", "--listen", "128"]]  # fmt: skip
    if server == "granian":
        return [[str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "2", "--blocking-threads", "2", "--no-access-log", "--log-level", "warning",
                 target]]  # fmt: skip
    if server == "bjoern":
        module = target.split(":")[0]
        return [[sys.executable, "-m", module, "--bjoern", "127.0.0.1", str(port)] for _ in range(2)]
    raise ValueError(f"unknown server {server!r}")


def _installed(check: str) -> bool:
    kind, name = check.split(":")
    return (BIN / name).exists() if kind == "bin" else importlib.util.find_spec(name) is not None


def ensure_server(server: str) -> str | None:
    """None when ``server`` can run (installing it with pip if needed), else why not (one line)."""
    if server not in OPTIONAL:
        return None
    check, package = OPTIONAL[server]
    if _installed(check):
        return None
    if server == "bjoern" and not Path("/usr/include/ev.h").exists() and not apt_install("libev-dev"):
        return "its build needs Debian's libev-dev, which is not installed and could not be (apt-get)"
    print(f"{server} not installed: pip install {package}", file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", package], capture_output=True, text=True,
                          check=False)  # fmt: skip
    importlib.invalidate_caches()
    if done.returncode != 0 or not _installed(check):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip install {package} failed: {last[:200]}"
    return None


class ServedProcesses:
    """A server's processes (``commands``) on ``port``, output to ``<workdir>/<name>.log``.

    ``start()`` returns once ``GET /readyz`` answers 200 (RuntimeError if a process exits first);
    ``pids()`` is every process of the group right now; ``stop()`` sends SIGTERM (then SIGKILL after 30 s)
    to each process started and is safe to call twice."""

    def __init__(self, name: str, commands: Sequence[Sequence[str]], port: int, workdir: Path,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.name, self.commands, self.port, self.workdir = name, commands, port, workdir
        inherited = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        self.env = {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}
        self.processes: list[subprocess.Popen] = []

    def start(self, timeout: float = 90.0) -> ServedProcesses:
        with open(self.workdir / f"{self.name}.log", "ab") as output:  # each child keeps its own copy
            for command in self.commands:
                self.processes.append(subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=output,
                                                       stderr=subprocess.STDOUT))  # fmt: skip
        for process in self.processes:
            wait_ready(self.port, timeout, process=process)
        return self

    def pids(self) -> list[int]:
        return [pid for process in self.processes for pid in descendants(process.pid)]

    def log_text(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
