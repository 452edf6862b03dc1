"""``recommender evaluate`` and ``recommender simulate``.

    recommender evaluate --log PATH --target SPEC [--target SPEC ...] [--estimators ipw,snipw,dr]
                         [--format auto|event-log|obd|dsjson] [--strict] [--alpha 0.05] [--bootstrap 200]
                         [--reward-model logistic|ridge|hgb] [--folds 3] [--seed 0]
                         [--report out.html] [--json] [--json-out out.json]

    recommender simulate --out DIR [--rounds 5000] [--items 10] [--users 200] [--logging uniform|epsilon-greedy|softmax]
                         [--epsilon 0.2] [--seed 0]

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
    write_events(to_joined_events(env, log), args.out)
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
