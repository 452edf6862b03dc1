"""``recommender policy ...``: train the VW policy from the event log, list and roll back model versions, and
move learning policies and models to and from Azure Personalizer's files (``recommender.settings.vw_arguments``,
``recommender.policy.model_import``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from recommender.cli.errors import CliError
from recommender.cli.train import add_batch_arguments, run_batch
from recommender.settings.app import AppConfig
from recommender.settings.policy import PolicyConfig
from recommender.settings.vw_arguments import LearningPolicy, learning_policy_from_json

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

    import_policy = commands.add_parser(
        "import-personalizer",
        help="map a Personalizer learning-policy file onto the policy section (YAML)",
        description="Read an Azure Personalizer learning-policy file "
        '({"name": ..., "arguments": "--cb_explore_adf '
        '..."}) and print the policy section its VW arguments map to, as YAML to put into configs/. Arguments '
        "the policy section cannot express are refused, each one named.",
    )
    import_policy.add_argument("file", type=Path, help="the learning-policy JSON file")
    import_policy.add_argument("--out", type=Path, help="write the YAML here instead of printing it")
    import_policy.set_defaults(handler=_import_personalizer)

    export_policy = commands.add_parser(
        "export-personalizer",
        help="write the configured policy section as a Personalizer learning-policy file",
        description="Write the configured policy section as an Azure Personalizer learning-policy file: "
        '{"name": ..., "arguments": "<VW arguments>"}.',
    )
    export_policy.add_argument("--name", default="recommender", help="the policy's name (default: recommender)")
    export_policy.add_argument("--out", type=Path, help="write the JSON here instead of printing it")
    export_policy.set_defaults(handler=_export_personalizer)

    import_model = commands.add_parser(
        "import-model",
        help="publish a VW model file (e.g. Personalizer's model export) as a model version",
        description="Read the VW arguments stored in a VW model file (such as the one Azure Personalizer "
        "exported), map them onto the policy section (refusing, each one named, those it cannot express), "
        "and publish the model as a new version of the model store, current unless --no-current.",
    )
    import_model.add_argument("file", type=Path, help="the VW model file")
    import_model.add_argument("--models", type=Path, help="model store directory (default: policy.model_dir)")
    import_model.add_argument("--no-current", action="store_true", help="publish without making it current")
    import_model.set_defaults(handler=_import_model)


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


# The policy keys VW arguments determine (the rest, item_cache_size and model_dir, are this deployment's).
_VW_KEYS = ("mode", "exploration", "learning", "interactions", "bits", "seed")


def policy_yaml(policy: PolicyConfig, header: str) -> str:
    """The ``policy`` keys that VW arguments determine, as YAML to paste into configs/, after a comment."""
    section = policy.model_dump(mode="json", by_alias=True)
    body = yaml.safe_dump({"policy": {k: section[k] for k in _VW_KEYS}}, sort_keys=False, default_flow_style=None)
    return f"# {header}\n{body}"


def _output(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    try:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from exc


def _import_personalizer(args: argparse.Namespace, config: AppConfig) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    learning_policy = learning_policy_from_json(text, config.policy)
    name = f" {learning_policy.name!r}" if learning_policy.name else ""
    _output(policy_yaml(learning_policy.policy, f"the Personalizer learning policy{name} of {args.file}"), args.out)
    return 0


def _export_personalizer(args: argparse.Namespace, config: AppConfig) -> int:
    _output(LearningPolicy(args.name, config.policy).to_json(), args.out)
    return 0


def _import_model(args: argparse.Namespace, config: AppConfig) -> int:
    from recommender.policy.model_import import import_vw_model  # VW: only for the commands that use models
    from recommender.policy.model_store import open_model_store

    store = open_model_store(config, args.models)
    imported = import_vw_model(args.file, store, config, make_current=not args.no_current)
    state = "published" if args.no_current else "published and made current"
    print(f"model version {imported.version.id} {state} in {store.root}")
    print(policy_yaml(imported.policy, f"the policy section of {args.file}'s stored arguments: {imported.arguments}"))
    return 0
