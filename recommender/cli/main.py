"""The ``recommender`` command line.

Each subcommand lives in its own module exposing ``register(subparsers) -> None``; the module adds its
parser and sets ``handler=<function(args, config) -> int>``. Registration must stay cheap: heavy imports
(VW, scikit-learn, Dask) belong inside the handlers.

Errors: any of the project's own exceptions (and bad arguments) end in one line on stderr,
``recommender: error: <message>``, and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from features.errors import FeatureStoreError
from recommender.errors import RecommenderError
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config

# Modules that contribute subcommands, in --help order.
COMMAND_MODULES = (
    "recommender.cli.features",
    "recommender.cli.policy",
    "recommender.cli.serve",
    "recommender.cli.train",
    "simulators.cli",
)


class CliError(RecommenderError):
    """A user-facing command-line error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recommender",
        description="Contextual-bandit recommender: feature store, VW policy, scoring service, offline replay.",
    )
    parser.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG_PATH),
        help="YAML configuration file (default: %(default)s)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        return int(args.handler(args, config) or 0)
    except (RecommenderError, FeatureStoreError) as exc:
        message = str(exc).replace("\n", "; ")
        print(f"recommender: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
