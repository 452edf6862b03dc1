"""Every example in the code and the docs runs.

- The doctests (``>>>`` examples) of every module of features/, recommender/ and simulators/ that has them.
- Each fenced ``python`` block of README.md and docs/*.md, in a fresh namespace, in a working directory of
  its own that holds a copy of ``configs/``.
- The ``recommender ...`` commands of their shell blocks, as subprocesses, in order, one working directory
  per document. A command's inputs that the docs take from elsewhere are prepared first (see ``workdir``);
  ``SKIPPED`` names the commands that do not end by themselves. A usage synopsis (``[--flag]``,
  ``<version>``, ``PATH``, ``...``) is not run: each option it names must appear in the command's --help.
"""

from __future__ import annotations

import doctest
import importlib
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from tests.redis_harness import RedisServer
from tests.simulators.log_files import cb_line, write_obd, write_policy_log

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "recommender", "simulators")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands that run until stopped, and where they are tested instead.
SKIPPED = {
    "recommender serve": "the service runs until stopped; tests/recommender/service serve it and call it over HTTP",
    "recommender train": "the continuous trainer follows the event log until stopped; tests/recommender/learning",
}
# Documents whose commands act on a shared store: they run against a redis-server of their own.
ON_REDIS = {"feature-store.md"}


# ----- doctests ---------------------------------------------------------------------------------------------
def _modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


DOCTEST_MODULES = _modules_with_examples()


def test_the_modules_with_examples_are_found():
    assert {"simulators.evaluate", "simulators.log_evaluation"} <= set(DOCTEST_MODULES)


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    assert tests, f"{name} has '>>>' but no doctest"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


# ----- fenced blocks of the docs ----------------------------------------------------------------------------
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def _blocks(path: Path) -> list[tuple[int, list[str], str]]:
    """(line of the opening fence, words of its info string, body) of each fenced block of ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1).split(), m.group(2)) for m in FENCE.finditer(text)]


def _doc_name(path: Path) -> str:
    return str(path.relative_to(ROOT))


PYTHON_BLOCKS = [
    pytest.param(path, words, body, id=f"{_doc_name(path)}:{line}")
    for path in DOCS
    for line, words, body in _blocks(path)
    if words[:1] == ["python"]
]


def test_the_python_blocks_are_found():
    ids = {param.id.split(":")[0] for param in PYTHON_BLOCKS}
    assert {"docs/feature-store.md", "docs/offline-evaluation.md"} <= ids


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RECOMMENDER_* override from the environment the tests run in."""
    for name in list(os.environ):
        if name.startswith("RECOMMENDER_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("path", "words", "body"), PYTHON_BLOCKS)
def test_python_block_runs(path, words, body, tmp_path, monkeypatch, clean_env):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc_example__"}
    exec(compile(body, f"{_doc_name(path)} block", "exec"), namespace)  # noqa: S102 - our own docs


# ----- recommender commands of the shell blocks -------------------------------------------------------------
SHELL_WORDS = ([], ["sh"], ["shell"], ["bash"], ["console"])
SYNOPSIS = re.compile(r"[\[\]<>]|\.\.\.|^[A-Z][A-Z_]*$")


def _commands(path: Path) -> list[list[str]]:
    """The ``recommender`` command lines of ``path``'s shell blocks (continuations joined, comments dropped)."""
    commands = []
    for _, words, body in _blocks(path):
        if words not in SHELL_WORDS:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if re.match(r"\s*recommender(\s|$)", line):
                commands.append(shlex.split(line, comments=True))
    return commands


def _is_synopsis(argv: list[str]) -> bool:
    return any(SYNOPSIS.search(token) for token in argv[1:])


def _runnable(path: Path) -> list[list[str]]:
    return [argv for argv in _commands(path) if shlex.join(argv) not in SKIPPED and not _is_synopsis(argv)]


DOCS_WITH_COMMANDS = [pytest.param(path, id=_doc_name(path)) for path in DOCS if _runnable(path)]


def _recommender() -> list[str]:
    script = Path(sys.executable).with_name("recommender")
    return [str(script)] if script.exists() else [sys.executable, "-m", "recommender.cli.main"]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _recommender() + argv[1:], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _obd_rows(n: int, seed: int = 1) -> list[str]:
    """``n`` rows of a uniform-random logger over the three OBD_ITEMS, clicks from a fixed click model."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        item, position, feature = rng.randrange(3), rng.randint(1, 3), rng.choice(["f1", "f2"])
        click = int(rng.random() < (0.5 if (item == 2) == (feature == "f1") else 0.1))
        rows.append(f"2019-11-24 00:{i // 60:02d}:{i % 60:02d},{item},{position},{click},0.3333,{feature},0.1")
    return rows


def _dsjson_lines(n: int, seed: int = 2) -> list[str]:
    """``n`` DSJSON CB decisions over three actions, each from an epsilon-greedy pmf, clicks at random."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        probs = [0.1, 0.1, 0.1]
        probs[rng.randrange(3)] = 0.8
        index = rng.choices(range(3), weights=probs)[0]
        cost = -1.0 if rng.random() < (0.6 if index == 0 else 0.2) else 0.0
        lines.append(cb_line(index, probs, cost=cost, EventId=f"ev-{i}"))
    return lines


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A project-like working directory holding what the documented commands read but do not write:
    ``configs/``; ``var/events`` and ``var/models`` (decisions a published VW policy made, as the running
    service would have logged them, and that policy's model store); an Open Bandit Dataset campaign at
    ``open_bandit_dataset/random/all``; a VW DSJSON log ``personalizer.json``; Azure Personalizer's default
    learning-policy file ``learning-policy.json``."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    write_policy_log(load_config(DEFAULT_CONFIG_PATH), tmp_path / "var" / "events", tmp_path / "var" / "models")
    write_obd(tmp_path / "open_bandit_dataset" / "random" / "all", _obd_rows(600))
    (tmp_path / "personalizer.json").write_text("\n".join(_dsjson_lines(400)) + "\n")
    shutil.copy(ROOT / "tests/simulators/data/personalizer-learning-policy.json", tmp_path / "learning-policy.json")
    return tmp_path


@pytest.fixture
def command_env(clean_env: None) -> dict[str, str]:
    """The environment of the commands: this one, without RECOMMENDER_* overrides."""
    return dict(os.environ)


@pytest.mark.parametrize("path", DOCS_WITH_COMMANDS)
def test_documented_commands_run(path, workdir, command_env):
    server = None
    if path.name in ON_REDIS:
        server = RedisServer().start()
        command_env |= {"RECOMMENDER_FEATURE_BACKEND": "redis", "RECOMMENDER_REDIS_URL": server.url}
    try:
        for argv in _runnable(path):
            command = shlex.join(argv)
            result = _run(argv, workdir, command_env)
            assert result.returncode == 0, f"{command}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            for flag in ("--out", "--report", "--json-out"):
                if flag in argv:
                    assert (workdir / argv[argv.index(flag) + 1]).exists(), f"{command} wrote no {flag}"
    finally:
        if server is not None:
            server.stop()


SYNOPSES = [
    pytest.param(argv, id=f"{_doc_name(path)}: {' '.join(argv)}")
    for path in DOCS
    for argv in _commands(path)
    if _is_synopsis(argv)
]


@pytest.mark.parametrize("argv", SYNOPSES)
def test_documented_synopsis_names_real_options(argv, tmp_path, command_env):
    words = ["recommender"]
    for token in argv[1:]:
        if not re.fullmatch(r"[a-z][a-z-]*", token):
            break
        words.append(token)
    result = _run([*words, "--help"], tmp_path, command_env)
    assert result.returncode == 0, result.stderr
    missing = [flag for flag in re.findall(r"--[a-z][a-z-]*", shlex.join(argv)) if flag not in result.stdout]
    assert not missing, f"{shlex.join(words)} --help does not list {missing}"


def test_the_skipped_commands_are_still_documented():
    seen = {shlex.join(argv) for path in DOCS for argv in _commands(path)}
    assert set(SKIPPED) <= seen, f"SKIPPED names commands the docs no longer have: {set(SKIPPED) - seen}"
