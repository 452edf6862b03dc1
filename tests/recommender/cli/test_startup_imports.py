"""A command imports only what it uses: ``recommender --help`` (and a command's ``--help``) loads none of the
heavy libraries (pandas and pyarrow through the feature store, VW, Redis, the service's Flask and gunicorn,
the simulators' scientific stack)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("pandas", "pyarrow", "vowpalwabbit", "redis", "flask", "gunicorn", "sklearn", "scipy", "matplotlib", "dask",
         "prometheus_client")  # fmt: skip

# Runs the entry point as the console script does, then lists the modules it loaded.
PROBE = """
import sys
from recommender.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["simulate", "--help"], ["features", "--help"]])
def test_help_imports_no_heavy_library(argv):
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    assert "usage: recommender" in result.stdout
    loaded = {name.split(".")[0] for name in result.stderr.split()}
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
