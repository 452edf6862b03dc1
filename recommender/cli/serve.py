"""``recommender serve`` (the scoring service under gunicorn) and ``recommender join`` (a joiner process);
see docs/service.md."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from recommender.cli.errors import CliError
from recommender.settings.app import AppConfig
from recommender.settings.loading import format_validation_error
from recommender.settings.service import ServiceConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the scoring service (HTTP, gunicorn)",
        description="Serve /v1/score, /v1/reward and the operational endpoints under gunicorn, with "
        "service.workers processes x service.threads threads (one process while the feature store or the "
        "event bus is in-process). Beside the workers it runs a joiner process ('recommender join') when the bus "
        "is on Redis, and a trainer process ('recommender train') on the embedded default, restarting either if "
        "it exits and stopping it after the workers. The --config file is watched: valid changes to exploration "
        "and the other hot-reloadable settings apply within seconds, without a restart.",
    )
    parser.add_argument("--host", help="bind address (default: service.host)")
    parser.add_argument("--port", type=int, help="port (default: service.port)")
    parser.add_argument("--workers", type=int, help="worker processes (default: service.workers)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: service.threads)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.set_defaults(handler=_serve)

    join = subparsers.add_parser(
        "join",
        help="join decisions and rewards from the Redis event bus into the Parquet event log",
        description="Run a joiner: take decisions from the Redis event bus, wait for their rewards "
        "(join.reward_wait_time), aggregate them and write joined events to join.event_log_dir, exactly once. "
        "'recommender serve' starts one by itself when the bus is on Redis; run more on other hosts to share "
        "the work (they must write to the same event log directory).",
    )
    join.set_defaults(handler=_join)


def _join(args: argparse.Namespace, config: AppConfig) -> int:
    from recommender.service.join_process import run_joiner  # the service's metrics: only when joining

    return run_joiner(config, args.config)


def _serve(args: argparse.Namespace, config: AppConfig) -> int:
    from recommender.service.gunicorn.server import serve  # gunicorn and the service: only when serving

    overrides = {name: getattr(args, name) for name in ("host", "port", "workers", "threads")}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if overrides:
        # Validated like the file, so a bad --port is refused the same way.
        try:
            service = ServiceConfig.model_validate({**config.service.model_dump(), **overrides})
        except ValidationError as exc:
            raise CliError(format_validation_error("command line: service", exc)) from exc
        config = config.model_copy(update={"service": service})
    return serve(config, args.config, log_level=args.log_level, access_log=args.access_log)
