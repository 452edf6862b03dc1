"""``recommender experiment``: the running experiment's report, and promoting its winning arm.

    recommender experiment report [--log DIR] [--json FILE] [--html FILE]
    recommender experiment promote ARM

``report`` analyses ``experiments.current`` from the event log (``join.event_log_dir`` unless ``--log``): the
table on stdout, the figures as JSON and an HTML page with plots when asked. ``promote`` writes the arm's
settings into the config file (a ``policy`` arm's exploration becomes ``policy.exploration``) and ends the
experiment (``experiments.current: null``); the running service applies both on its next reload. Promoting the
baseline ends the experiment and keeps the policy section as it is: every request gets the configured policy
again (the storefront's own order for everyone is ``trainer.mode: apprentice``). A separately learned arm (its
own learning settings, hence its own model) first has its current model version published as the main store's
current version, then its settings written and the experiment ended: the order, and why, is in
``recommender.experiments.promotion``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from recommender.cli.errors import CliError
from recommender.errors import ModelStoreError, PolicyError
from recommender.settings.app import AppConfig
from recommender.settings.config_writer import read_document, stage_document
from recommender.settings.experiments import Experiment


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="online A/B experiments: report, promote the winner")
    commands = parser.add_subparsers(dest="experiment_command", metavar="SUBCOMMAND", required=True)
    report = commands.add_parser("report", help="the running experiment's figures and decision, from the event log")
    report.add_argument("--log", type=Path, help="event-log root (default: join.event_log_dir)")
    report.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    report.add_argument("--html", type=Path, help="also write an HTML report with plots to this file")
    report.set_defaults(handler=_report)
    promote = commands.add_parser("promote", help="write an arm's settings into the config and end the experiment")
    promote.add_argument("arm", help="the arm to promote")
    promote.set_defaults(handler=_promote)


def _current(config: AppConfig) -> Experiment:
    experiment = config.experiments.current
    if experiment is None:
        raise CliError("no experiment is running (experiments.current is not set)")
    return experiment


def _report(args: argparse.Namespace, config: AppConfig) -> int:
    # lazy: pyarrow, scipy and matplotlib are paid only by the command that uses them
    from recommender.experiments.log_stats import analyze_log, read_arm_log
    from recommender.experiments.report import format_table, render_html

    experiment = _current(config)
    log = read_arm_log(args.log or config.join.event_log_dir, experiment.name, since=experiment.started_at)
    analysis = analyze_log(log, experiment, config.experiments)
    print(format_table(analysis))
    try:
        if args.json is not None:
            args.json.write_text(json.dumps(analysis.as_dict(), indent=2) + "\n")
        if args.html is not None:
            args.html.write_text(render_html(log, analysis, config.experiments.mixture_scale))
    except OSError as exc:
        raise CliError(f"cannot write the report: {exc}") from exc
    return 0


def _promote(args: argparse.Namespace, config: AppConfig) -> int:
    experiment = _current(config)
    try:
        arm = experiment.arm(args.arm)
    except KeyError:
        raise CliError(f"{args.arm!r} is not an arm of {experiment.name!r} "
                       f"(arms: {', '.join(a.name for a in experiment.arms)})") from None  # fmt: skip
    if arm.kind == "pinned":
        raise CliError(f"arm {arm.name!r} is model version {arm.model_version}: make it current with "
                       f"'recommender policy rollback {arm.model_version}'")  # fmt: skip
    path = Path(args.config)
    document = read_document(path)
    if arm.kind == "policy":
        for name in ("exploration", "learning", "interactions"):
            if (value := getattr(arm, name)) is not None:
                document.setdefault("policy", {})[name] = (
                    value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel)
                    else [list(group) for group in value]
                )  # fmt: skip
    document.setdefault("experiments", {})["current"] = None
    staged = stage_document(path, document)  # refuse to write a file the service would refuse
    # The new config is checked before anything is published: a refused file leaves the model store as it was.
    promoted = None
    if arm.kind == "policy" and arm.learns_separately(config.policy):
        # VW (through the model store): only for this command, not for listing the CLI's commands.
        from recommender.experiments.promotion import ensure_current, promote_arm_model
        try:  # step 1: the arm's model becomes the main one before any config says so (promotion module)
            promoted = promote_arm_model(config, experiment.name, arm)
        except (ModelStoreError, PolicyError) as exc:
            staged.discard()
            raise CliError(f"arm {arm.name!r} learns its own model, which cannot be promoted: {exc}") from exc
    staged.commit()  # step 2: the arm's settings, the experiment ended
    if promoted is not None:
        if ensure_current(config, promoted.id):  # step 3: a main trainer's publish that straddled step 1
            print(f"model version {promoted.id} made current again over a version the trainer published meanwhile")
        print(f"promoted arm {arm.name!r}: its model is main model version {promoted.id}, its settings are the "
              f"policy section; experiment {experiment.name!r} ended in {path}")  # fmt: skip
        return 0
    if arm.kind == "baseline":
        print(f"arm {arm.name!r} is the baseline (the storefront's own order): experiment {experiment.name!r} ended "
              f"in {path}, the policy section unchanged; every request gets the configured policy again (to serve "
              "the storefront's order to everyone, set trainer.mode: apprentice)")  # fmt: skip
    else:
        print(f"promoted the policy of arm {arm.name!r}; experiment {experiment.name!r} ended in {path}")
    return 0
