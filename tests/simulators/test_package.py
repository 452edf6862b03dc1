"""The package's face: every name ``from simulators import NAME`` offers resolves, and registering the
command line's commands (which imports ``simulators.cli``, and so the package) loads none of the heavy
libraries the commands' handlers use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import simulators

HEAVY = ("vowpalwabbit", "sklearn", "scipy", "matplotlib", "distributed")


@pytest.mark.parametrize("name", simulators.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(getattr(simulators, name), "__name__", name) == name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        simulators.nothing  # noqa: B018


def test_registering_the_commands_loads_no_heavy_library(tmp_path):
    code = (
        "import argparse, sys; import simulators.cli; "
        "simulators.cli.register(argparse.ArgumentParser().add_subparsers()); "
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
