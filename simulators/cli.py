"""``recommender evaluate`` and ``recommender simulate``.

    recommender evaluate --log PATH --target SPEC [--target SPEC ...] [--estimators ipw,snipw,dr]
                         [--format auto|event-log|obd|dsjson] [--strict] [--alpha 0.05] [--bootstrap 200]
                         [--reward-model logistic|ridge|hgb] [--folds 3] [--seed 0]
                         [--report out.html] [--json] [--json-out out.json]

    recommender optimize --log PATH [--setting OVERRIDES ...] [--search KEY=V1|V2 ...] [--search-space FILE]
                         [--budget N] [--no-configured] [--estimators ipw,snipw,dr] [--primary dr]
                         [--since ISO] [--until ISO] [--position S] [--importance] [--importance-key KEY ...]
                         [--workers N | --scheduler ADDR] [--workdir DIR] [--partition-rows N]
                         [--json] [--json-out FILE] [--report FILE.html] [--write-config FILE.yaml]

    recommender simulate --out DIR [--rounds 5000] [--items 10] [--users 200] [--logging uniform|epsilon-greedy|softmax]
                         [--epsilon 0.2] [--seed 0]

``optimize`` replays learning settings over the log (``simulators.log_optimization``), compares them with the
logged policy and recommends one, or says that nothing beat it; outputs are written atomically (temporary
file and rename), so Ctrl-C leaves no half-written file.

``evaluate`` prints a table of estimates, intervals and weight diagnostics (or, with ``--json``, the JSON
document on stdout), and writes the HTML report and JSON file when asked. ``simulate`` writes a synthetic
log in our event-log format and prints the exact values of the logging
policy, its greedy version and the uniform policy (also saved as ``_truth.json``), to check against.

Registration imports nothing heavy: the handlers import the package's modules when they run. Those bring
scikit-learn and scipy, about 1.2 s that ``recommender --help`` and every other command would otherwise pay
(measured after the parser is built); the HTML report's matplotlib, 0.35 s more, is imported only for
``--report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recommender.settings.app import AppConfig
from simulators.errors import SimulatorError

_ALL = "ipw,snipw,dm,dr,sndr,switch-dr,dr-os"


def register(subparsers: Any) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="off-policy evaluation of target policies on a logged decision log",
        description="Estimate what target policies would have earned on a log (IPW, SNIPW, DM, DR, SNDR, "
        "Switch-DR, DR-OS) with confidence intervals and weight diagnostics.",
    )
    evaluate.add_argument("--log", required=True, help="event-log root/partition/file, OBD CSV or dir, DSJSON file")
    evaluate.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="SPEC",
        help="uniform | logged | greedy | epsilon:EPS | dist:PATH | model:STORE[@VERSION] | "
        "vw:OVERRIDES[;train_fraction=F] (repeat to compare)",
    )
    evaluate.add_argument("--estimators", default=_ALL, help="comma-separated; NAME or NAME:lambda=V (default: all)")
    evaluate.add_argument("--format", default="auto", choices=("auto", "event-log", "obd", "dsjson"))
    evaluate.add_argument("--strict", action="store_true", help="fail on any bad row instead of excluding it")
    evaluate.add_argument("--alpha", type=float, default=0.05, help="intervals at level 1 - alpha (default 0.05)")
    evaluate.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates; 0 disables (default 200)")
    evaluate.add_argument(
        "--reward-model",
        default=None,
        choices=("logistic", "ridge", "hgb"),
        help="reward model for DM/DR (default: logistic for 0/1 rewards, else ridge)",
    )
    evaluate.add_argument("--folds", type=int, default=3, help="cross-fitting folds of the reward model (default 3)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--report", type=Path, help="write the HTML report here")
    evaluate.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    evaluate.add_argument("--json-out", type=Path, help="also write the JSON document to this file")
    evaluate.set_defaults(handler=run_evaluate)

    optimize = subparsers.add_parser(
        "optimize",
        help="replay learning settings over a log and recommend one",
        description="Counterfactual progressive validation of learning settings (the configured one, listed "
        "ones, a search space): estimates with intervals, paired differences with the logged policy "
        "(Bonferroni-corrected), a recommendation, feature importance.",
    )
    optimize.add_argument("--log", required=True, help="event-log root/partition/file, OBD CSV or dir, DSJSON file")
    optimize.add_argument("--format", default="auto", choices=("auto", "event-log", "obd", "dsjson"))
    optimize.add_argument("--strict", action="store_true", help="fail on any bad row instead of excluding it")
    optimize.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="OVERRIDES",
        help="policy overrides as vw: targets take them, e.g. exploration.gamma_scale=20 (repeat)",
    )
    optimize.add_argument("--search", action="append", default=[], metavar="KEY=V1|V2", help="a search-space key")
    optimize.add_argument("--search-space", type=Path, help="YAML search space (mode, budget, seed, space)")
    optimize.add_argument("--budget", type=int, help="random search: how many points of the space")
    optimize.add_argument("--no-configured", action="store_true", help="leave the configured setting out")
    optimize.add_argument("--estimators", default="ipw,snipw,dr", help="comma-separated (default ipw,snipw,dr)")
    optimize.add_argument("--primary", default="dr", help="the estimator that ranks and recommends (default dr)")
    optimize.add_argument("--alpha", type=float, default=0.05, help="family-wise error level (default 0.05)")
    optimize.add_argument("--since", type=_utc, help="first decision time (ISO 8601, UTC)")
    optimize.add_argument("--until", type=_utc, help="end of the time range, exclusive (ISO 8601, UTC)")
    optimize.add_argument(
        "--position", type=int, help="replay this slot only (default: every slot of a multi-slot log)"
    )
    optimize.add_argument(
        "--partition-rows", type=int, help="rows per file of the converted log (default 50000)"
    )
    optimize.add_argument("--importance", action="store_true", help="feature importance of the configured setting")
    optimize.add_argument(
        "--importance-key",
        action="append",
        default=None,
        metavar="KEY",
        help="feature importance of this key only (repeatable; implies --importance): user, context, item, "
        "user.NAME, item.NAME, or a JSON namespace context.NAME, action.NAME, context.NAME.GROUP",
    )
    optimize.add_argument("--workers", type=int, default=0, help="replay on a local Dask cluster of N workers")
    optimize.add_argument("--scheduler", help="replay on the Dask cluster at this scheduler address")
    optimize.add_argument("--workdir", type=Path, help="where the converted log goes (default: a temp dir)")
    optimize.add_argument("--seed", type=int, default=0)
    optimize.add_argument("--quiet", action="store_true", help="no progress bar")
    optimize.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    optimize.add_argument("--json-out", type=Path, help="also write the JSON document to this file")
    optimize.add_argument("--report", type=Path, help="write the HTML report here")
    optimize.add_argument("--write-config", type=Path, metavar="PATH", help="write the recommendation as YAML")
    optimize.set_defaults(handler=run_optimize)

    simulate = subparsers.add_parser(
        "simulate",
        help="write a synthetic decision log with known ground truth",
        description="Generate a log from a synthetic environment (logistic click model) in the event-log format.",
    )
    simulate.add_argument("--out", type=Path, required=True, help="event-log root directory to write")
    simulate.add_argument("--rounds", type=int, default=5000)
    simulate.add_argument("--users", type=int, default=200)
    simulate.add_argument("--items", type=int, default=10)
    simulate.add_argument("--logging", default="epsilon-greedy", choices=("uniform", "epsilon-greedy", "softmax"))
    simulate.add_argument("--epsilon", type=float, default=0.2, help="exploration of the epsilon-greedy logger")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.set_defaults(handler=run_simulate)


def run_evaluate(args: argparse.Namespace, config: AppConfig) -> int:
    # Lazy: see the module docstring.
    from simulators.evaluate import EvaluationConfig
    from simulators.log_evaluation import evaluate_log
    from simulators.text_report import format_table

    estimators = [e for e in (s.strip() for s in args.estimators.split(",")) if e]
    settings = EvaluationConfig(
        alpha=args.alpha,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        reward_model=args.reward_model,
        n_folds=args.folds,
    )
    run = evaluate_log(
        args.log, args.target, estimators, settings, format=args.format, strict=args.strict, app_config=config
    )
    document = run.report.to_json()
    if args.json:
        print(document)
    else:
        print(format_table(run.report))
    try:
        if args.json_out:
            args.json_out.write_text(document + "\n", encoding="utf-8")
        if args.report:
            from simulators.html_report import render_html  # lazy: matplotlib, see the module docstring

            args.report.write_text(render_html(run), encoding="utf-8")
    except OSError as exc:
        raise SimulatorError(f"cannot write output: {exc}") from exc
    if args.report and not args.json:
        print(f"report written to {args.report}", file=sys.stderr)
    return 0


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run_optimize(args: argparse.Namespace, config: AppConfig) -> int:
    # Lazy: see the module docstring (the same scientific stack, and VW).
    from simulators.log_optimization import optimize_log
    from simulators.optimize import OptimizeConfig, write_atomically
    from simulators.optimize_report import config_snippet, format_slots_table, slots_document
    from simulators.replay_log import PARTITION_ROWS
    from simulators.search_space import load_search_space

    if args.workers < 0 or (args.workers and args.scheduler):
        raise SimulatorError("use --workers N (N >= 1) or --scheduler ADDRESS, not both")
    estimators = tuple(e for e in (s.strip() for s in args.estimators.split(",")) if e)
    settings = OptimizeConfig(estimators=estimators, primary=args.primary, alpha=args.alpha, seed=args.seed)
    search = load_search_space(args.search_space, args.search, budget=args.budget, seed=args.seed)
    kwargs = dict(
        app_config=config,
        settings=args.setting,
        search=search,
        include_configured=not args.no_configured,
        config=settings,
        format=args.format,
        strict=args.strict,
        since=args.since,
        until=args.until,
        position=args.position,
        importance=args.importance or bool(args.importance_key),
        importance_keys=args.importance_key,
        progress=not args.quiet,
        workdir=args.workdir,
        rows_per_partition=PARTITION_ROWS if args.partition_rows is None else args.partition_rows,
    )
    if args.workers or args.scheduler:
        from simulators.dask_backend import replay_map  # lazy: dask, only when asked for

        with replay_map(workers=args.workers, scheduler=args.scheduler) as map_function:
            run = optimize_log(args.log, map_function=map_function, **kwargs)
    else:
        run = optimize_log(args.log, **kwargs)
    result = run.result
    document = json.dumps(slots_document(run.slots, run.refused), indent=2, allow_nan=False)
    outputs: list[tuple[Path, str]] = []
    if args.json_out:
        outputs.append((args.json_out, document + "\n"))
    if args.report:
        from simulators.optimize_html import render_optimize_html  # lazy: matplotlib, see the module docstring

        outputs.append((args.report, render_optimize_html(run.slots, run.refused)))
    if args.write_config:
        outputs.append((args.write_config, config_snippet(result, config.policy)))
    try:
        for path, text in outputs:
            write_atomically(path, text)
    except OSError as exc:
        raise SimulatorError(f"cannot write output: {exc}") from exc
    print(document if args.json else format_slots_table(run.slots, run.refused))
    for note in run.skipped:
        print(f"skipped an invalid search point: {note}", file=sys.stderr)
    if run.inferred_groups is not None:
        print(f"the log's features do not fit the configured feature groups ({run.inferred_groups}): "
              "replayed with groups inferred from the logged values", file=sys.stderr)  # fmt: skip
    return 0


def run_simulate(args: argparse.Namespace, config: AppConfig) -> int:
    # Lazy: see the module docstring.
    from recommender.events.log import write_events
    from simulators.synthetic import (
        EpsilonGreedyPolicy,
        SoftmaxPolicy,
        SyntheticEnvironment,
        UniformPolicy,
        to_joined_events,
    )

    if args.rounds < 1 or args.users < 1 or args.items < 2:
        raise SimulatorError("simulate needs --rounds >= 1, --users >= 1 and --items >= 2")
    env = SyntheticEnvironment(n_users=args.users, n_items=args.items, seed=args.seed)
    logging_policy = {
        "uniform": UniformPolicy(),
        "epsilon-greedy": EpsilonGreedyPolicy(epsilon=args.epsilon),
        "softmax": SoftmaxPolicy(),
    }[args.logging]
    try:
        table = logging_policy.table(env)
    except ValueError as exc:
        raise SimulatorError(str(exc)) from exc
    log = env.generate_log(table, args.rounds, seed=args.seed)
    try:
        write_events(to_joined_events(env, log), args.out)
    except OSError as exc:
        raise SimulatorError(f"cannot write the log to {args.out}: {exc.strerror or exc}") from exc
    greedy = np.zeros_like(table)
    greedy[np.arange(env.n_users), np.argmax(table[:, :, 0], axis=1), 0] = 1.0
    truth = {
        "logged": env.policy_value(table),
        "greedy": env.policy_value(greedy),
        "uniform": env.policy_value(UniformPolicy().table(env)),
        "rounds": args.rounds,
        "logging": args.logging,
        "seed": args.seed,
    }
    # A leading underscore keeps the file out of the Parquet dataset scan.
    (args.out / "_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(truth))
    return 0
