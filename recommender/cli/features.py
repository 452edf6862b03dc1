"""``recommender features ...``: load, read and manage feature groups from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recommender.settings.app import AppConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="load, read and manage feature groups",
        description="Load, read and manage feature groups in the configured feature store "
        "(features.backend: memory or redis).",
    )
    commands = parser.add_subparsers(dest="features_command", metavar="SUBCOMMAND", required=True)

    load = commands.add_parser(
        "load",
        help="materialize a group from Parquet into a new version and switch to it",
        description="Validate a Parquet file or dataset directory against the group's schema, write it "
        "into a new version beside the live one (pipelined chunks, progress bar), then switch the group "
        "to it atomically and drop the old version. A failed load leaves the live version untouched.",
    )
    load.add_argument("--group", required=True, help="feature group name, e.g. items")
    load.add_argument("--parquet", required=True, type=Path, help="Parquet file or dataset directory")
    load.add_argument("--no-activate", action="store_true", help="load the new version but keep the old one live")
    load.add_argument("--keep-previous", action="store_true", help="do not drop the previously live version")
    load.set_defaults(handler=_load)

    get = commands.add_parser(
        "get",
        help="print the features of a user and items as JSON",
        description="Print the features of one user and a list of items, read in one round trip, as "
        "JSON. Missing entities get the group defaults and are listed under 'missing'.",
    )
    get.add_argument("--user", help="user id (omit for defaults)")
    get.add_argument("--items", required=True, help="comma-separated item ids")
    get.set_defaults(handler=_get)

    sample = commands.add_parser(
        "sample",
        help="write the sample beauty catalog as Parquet files",
        description="Write the deterministic sample catalog (items.parquet, users.parquet) to a directory, "
        "ready for 'features load'.",
    )
    sample.add_argument("--out", required=True, type=Path, help="output directory")
    sample.set_defaults(handler=_sample)

    versions = commands.add_parser("versions", help="list a group's versions and the live one")
    versions.add_argument("--group", required=True)
    versions.set_defaults(handler=_versions)

    activate = commands.add_parser("activate", help="switch a group to a loaded version")
    activate.add_argument("--group", required=True)
    activate.add_argument("--version", required=True)
    activate.set_defaults(handler=_activate)

    drop = commands.add_parser("drop", help="delete a version that is not live")
    drop.add_argument("--group", required=True)
    drop.add_argument("--version", required=True)
    drop.set_defaults(handler=_drop)


def _open(config: AppConfig):
    from features import open_store

    return open_store(config.features)


def _load(args: argparse.Namespace, config: AppConfig) -> int:
    from tqdm import tqdm

    from features.frames import read_parquet

    store = _open(config)
    frame = read_parquet(args.parquet)
    with tqdm(total=len(frame), unit="rows", desc=f"loading {args.group}", file=sys.stderr) as bar:
        report = store.load_frame(
            args.group, frame, activate=not args.no_activate, drop_previous=not args.keep_previous, progress=bar.update
        )
    state = "live" if report.activated else "loaded, not live"
    print(f"{report.group}: {report.rows} rows in version {report.version} ({state}); "
          f"previous: {report.previous_version}")
    if config.features.backend == "memory":
        print("note: features.backend is memory, so this load lived only in this process (a validation run); "
              "configure Redis to keep it.", file=sys.stderr)
    return 0


def _get(args: argparse.Namespace, config: AppConfig) -> int:
    store = _open(config)
    item_ids = [item for item in args.items.split(",") if item]
    found = store.read_user_items(args.user, item_ids)
    result = {
        "user": {"id": args.user, "features": dict(found.user), "missing": found.user_missing},
        "items": [{"id": i, "features": dict(row)} for i, row in zip(item_ids, found.items, strict=True)],
        "missing_items": list(found.missing_items),
    }
    print(json.dumps(result, indent=2))
    return 0


def _sample(args: argparse.Namespace, config: AppConfig) -> int:
    from features.sample_catalog import items_frame, users_frame

    args.out.mkdir(parents=True, exist_ok=True)
    items_frame().to_parquet(args.out / "items.parquet", index=False)
    users_frame().to_parquet(args.out / "users.parquet", index=False)
    print(f"wrote {args.out / 'items.parquet'} and {args.out / 'users.parquet'}")
    return 0


def _versions(args: argparse.Namespace, config: AppConfig) -> int:
    store = _open(config)
    live = store.live_version(args.group)
    for version in store.versions(args.group):
        print(f"{version}{'  (live)' if version == live else ''}")
    return 0


def _activate(args: argparse.Namespace, config: AppConfig) -> int:
    _open(config).activate(args.group, args.version)
    print(f"{args.group}: {args.version} is live")
    return 0


def _drop(args: argparse.Namespace, config: AppConfig) -> int:
    _open(config).drop_version(args.group, args.version)
    print(f"{args.group}: dropped {args.version}")
    return 0
