"""``recommender export``: write our Parquet event log in another system's format (VW DSJSON).

    recommender export --log PATH --out FILE [--format dsjson] [--strict]

The DSJSON file is what Azure Personalizer exported and what VW reads with ``--dsjson``; see
``simulators.dsjson_export`` for its exact shape. A summary goes to stderr: the decisions written and
the event-log rows excluded as bad (none are written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recommender.settings.app import AppConfig

FORMATS = ("dsjson",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the Parquet event log as VW DSJSON (what Personalizer exported)",
        description="Write every usable joined decision of a Parquet event log (a root directory, a partition "
        "or one file) as one DSJSON line: what Azure Personalizer's log export wrote and VW reads with "
        "--dsjson. Rows the reader excludes as bad are not written; the summary on stderr counts them.",
    )
    parser.add_argument("--log", type=Path, required=True, help="event-log root, partition or Parquet file")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (replaced atomically)")
    parser.add_argument("--format", default="dsjson", choices=FORMATS, help="output format (default: dsjson)")
    parser.add_argument("--strict", action="store_true", help="fail on any bad row instead of leaving it out")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace, config: AppConfig) -> int:
    from simulators.dsjson_export import export_dsjson  # lazy: pyarrow and the readers' scientific stack

    result = export_dsjson(args.log, args.out, strict=args.strict)
    print(f"wrote {result.decisions} decisions to {result.path}; {result.report.summary()}", file=sys.stderr)
    return 0
