"""The ``recommender`` command line.

Each group of subcommands lives in its own module exposing ``register(subparsers) -> None``; the module
adds its parsers and sets ``handler=<function(args, config) -> int>``. Registration must stay cheap, so
the handler modules import the heavy parts (VW, pyarrow, gunicorn and Flask, scikit-learn, Dask) inside the
handlers that use them: listing the commands or one command's ``--help`` then costs the configuration's
imports only, not the ~1 s that VW, pyarrow and the service add.

Errors: any of the project's own exceptions (and bad arguments) end in one line on stderr,
``recommender: error: <message>``, and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from features.errors import FeatureStoreError
from recommender.cli import experiment, export, features, policy, serve, train
from recommender.errors import RecommenderError
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from simulators import cli as simulators_cli

# Modules that contribute subcommands, in --help order.
COMMAND_MODULES = (features, policy, serve, train, simulators_cli, export, experiment)


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
    for module in COMMAND_MODULES:
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
