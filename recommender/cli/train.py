"""``recommender train``: the trainer of the learning loop (docs/learning.md).

Continuous (default): follow the event log (``join.event_log_dir``), learn new joined events, publish a model
version to ``policy.model_dir`` every ``trainer.model_update_interval`` seconds, until SIGTERM/SIGINT (the
events learned since the last publish are published on the way out). ``--batch``: learn a range of the log
once and publish, the same code as ``recommender policy train``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

from recommender.cli.errors import CliError
from recommender.logs import configure_logging
from recommender.service.gunicorn.supervisor import exit_with_supervisor
from recommender.settings.app import AppConfig
from recommender.settings.follow import ConfigFollower


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def add_batch_arguments(parser: argparse.ArgumentParser, *, log_required: bool) -> None:
    """The options of batch training, shared by ``recommender train --batch`` and ``recommender policy train``."""
    parser.add_argument(
        "--log", type=Path, required=log_required,
        help="Parquet event log: root, partition or file" + ("" if log_required else " (default: join.event_log_dir)"),
    )  # fmt: skip
    parser.add_argument("--since", type=_utc, help="first hour to learn (ISO date/time, UTC; whole hour partitions)")
    parser.add_argument("--until", type=_utc, help="learn hours starting before this (ISO date/time, UTC)")
    parser.add_argument("--out", type=Path, help="model store directory (default: policy.model_dir)")
    parser.add_argument("--passes", type=int, default=1, help="passes over the log (default: %(default)s)")
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="start from the store's current version and skip the files its checkpoint has learned",
    )
    parser.add_argument("--no-activate", action="store_true", help="publish the version without making it current")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="learn from joined events and publish model versions (continuous or --batch)",
        description="Continuous (default): follow the event log (join.event_log_dir), learn every joined event "
        "exactly once, and publish a model version to the model store (policy.model_dir) every "
        "trainer.model_update_interval seconds, with a checkpoint of the log files it has learned; restarts resume "
        "from the current version's checkpoint. Serving workers pick up each version within "
        "service.config_reload_seconds. On the embedded default 'recommender serve' starts one by itself, beside "
        "its worker; with Redis run it yourself, one per model store. trainer.mode logging_only pauses learning. "
        "--batch: learn a range of a log "
        "once and publish (warm start, backfills), as 'recommender policy train' does.",
    )
    parser.add_argument("--batch", action="store_true", help="learn a range of the log once and exit")
    parser.add_argument("--once", action="store_true", help="continuous mode: learn what is there, publish, exit")
    add_batch_arguments(parser, log_required=False)
    parser.set_defaults(handler=_train)


def run_batch(args: argparse.Namespace, config: AppConfig) -> int:
    """Batch training from parsed ``add_batch_arguments`` options; prints what was learned and published."""
    from recommender.learning.batch import train_batch  # VW and pyarrow: only for the commands that learn
    from recommender.policy.model_store import open_model_store

    if args.passes < 1:
        raise CliError(f"--passes must be >= 1, got {args.passes}")
    if args.since and args.until and args.since >= args.until:
        raise CliError("--since must be before --until")
    store = open_model_store(config, args.out)
    if args.resume and store.current_version() is None:
        print(f"no current version in {store.root}; starting from a fresh model")
    report = train_batch(
        config, args.log or Path(config.join.event_log_dir), store=store, passes=args.passes, resume=args.resume,
        make_current=not args.no_activate, since=args.since, until=args.until,
    )  # fmt: skip
    events = report.events
    span = f"{events.first_timestamp:%Y-%m-%d %H:%M} .. {events.last_timestamp:%Y-%m-%d %H:%M}" if events else "none"
    print(
        f"learned {report.learned} examples ({events.count if events else 0} events x {report.passes} pass(es), "
        f"events {span})"
    )
    if report.skipped_files:
        print(f"skipped {report.skipped_files} file(s) the starting model had already learned")
    state = "published" if args.no_activate else "published and made current"
    print(f"model version {report.version.id} {state} in {store.root}")
    return 0


def _train(args: argparse.Namespace, config: AppConfig) -> int:
    if args.batch:
        return run_batch(args, config)
    batch_only = [name for name in ("log", "since", "until", "resume", "no_activate") if getattr(args, name)]
    if batch_only or args.passes != 1:
        raise CliError(f"--{(batch_only or ['passes'])[0].replace('_', '-')} needs --batch")
    return run_continuous(config, Path(args.config), models=args.out, once=args.once)


def run_continuous(config: AppConfig, config_path: Path, *, models: Path | None = None, once: bool = False) -> int:
    """Follow the event log until SIGTERM/SIGINT (or one cycle with ``once``). The config file is re-read
    when it changes: mode, interval and exploration apply live; an invalid edit keeps the old settings."""
    from recommender.learning.trainer import Trainer  # VW and pyarrow: only for the commands that learn
    from recommender.policy.model_store import open_model_store

    configure_logging()
    # The trainer asks once per poll: check the file every time (a stat), reload only when it changed.
    settings = ConfigFollower(config_path, config, min_interval=0.0)
    trainer = Trainer(open_model_store(config, models), config.join.event_log_dir, settings)
    try:
        if once:
            report = trainer.run_once(publish=True)
            published = report.published.id if report.published else "nothing new to publish"
            print(f"learned {report.learned} events (skipped {report.skipped}); model version: {published}")
            return 0
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: (stop.set(), trainer.stop(publish=False)))
        trainer.start()
        exit_with_supervisor(stop)  # stop.wait(), or until the `recommender serve` that started this one is gone
        trainer.stop(publish=True)
        return 0
    finally:
        trainer.close()
