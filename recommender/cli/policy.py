"""``recommender policy ...``: train the VW policy from the event log, list and roll back model versions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from recommender.cli.train import add_batch_arguments, run_batch
from recommender.settings.app import AppConfig

if TYPE_CHECKING:  # the model store imports VW, which listing the CLI's commands does not need
    from recommender.policy.model_dir import ModelVersion


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="train the contextual-bandit policy and manage model versions",
        description="Train the Vowpal Wabbit policy from the Parquet event log, and list, inspect or roll "
        "back the versions in the model store (policy.model_dir unless --models/--out is given).",
    )
    commands = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="learn from a Parquet event log and publish a new model version",
        description="Learn from every joined event of a Parquet event log (a root directory, a partition "
        "or one file), in timestamp order, then publish the model as a new version in the model store and "
        "make it current. Starts from a fresh model of the configured policy section, or with "
        "--continue from the store's current version (its weights, its exploration algorithm), skipping the "
        "files its checkpoint has learned. --since/--until select whole hour partitions. The same as "
        "'recommender train --batch'.",
    )
    add_batch_arguments(train, log_required=True)
    train.set_defaults(handler=_train)

    show = commands.add_parser(
        "show",
        help="list the model versions, marking the current one",
        description="List the model versions in the store, oldest first, with their creation time, "
        "exploration, events learned from and feature-schema hash; '*' marks the current version.",
    )
    show.add_argument("--models", type=Path, help="model store directory (default: policy.model_dir)")
    show.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    show.set_defaults(handler=_show)

    rollback = commands.add_parser(
        "rollback",
        help="make an earlier model version current again",
        description="Point the store's current version at an existing version (after checking its files). "
        "Serving workers pick it up on their next model check.",
    )
    rollback.add_argument("version", help="model version id (see 'policy show')")
    rollback.add_argument("--models", type=Path, help="model store directory (default: policy.model_dir)")
    rollback.set_defaults(handler=_rollback)


def _train(args: argparse.Namespace, config: AppConfig) -> int:
    return run_batch(args, config)


def _describe(version: ModelVersion, current: str | None) -> str:
    exploration = version.exploration
    params = ", ".join(f"{k}={v}" for k, v in exploration.items() if k != "algorithm")
    events = version.event_range
    seen = f"{events.count} events to {events.last_timestamp:%Y-%m-%d %H:%M}" if events else "no events"
    marker = "*" if version.id == current else " "
    return (
        f"{marker} {version.id}  {version.created_at:%Y-%m-%d %H:%M:%S}  "
        f"{version.policy.get('mode', 'cb')}/{exploration.get('algorithm')}({params})  {seen}  "
        f"schema {version.schema_hash}"
    )


def _show(args: argparse.Namespace, config: AppConfig) -> int:
    from recommender.policy.model_store import open_model_store  # VW: only for the commands that use models

    store = open_model_store(config, args.models)
    versions = store.versions()
    current = store.current_version()
    if args.json:
        print(json.dumps({"current": current, "versions": [v.as_dict() for v in versions]}, indent=2))
        return 0
    if not versions:
        print(f"no model versions in {store.root}")
        return 0
    for version in versions:
        print(_describe(version, current))
    return 0


def _rollback(args: argparse.Namespace, config: AppConfig) -> int:
    from recommender.policy.model_store import open_model_store  # VW: only for the commands that use models

    store = open_model_store(config, args.models)
    version = store.rollback(args.version)
    print(f"current model version is now {version.id} (created {version.created_at:%Y-%m-%d %H:%M:%S})")
    return 0
