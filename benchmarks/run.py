"""Run the benchmarks and write their figures into docs/benchmarks.md.

Each ``benchmarks/bench_<name>.py`` module exposes ``run(quick: bool) -> str`` returning a Markdown
section (heading included). The section is stored in docs/benchmarks.md between the markers
``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->``, so one benchmark can be rerun alone
(``--only <name>``) without touching the others' figures.

Usage: ``python -m benchmarks.run [--only NAME ...] [--quick]``. The benchmarks in ``ON_REQUEST`` take many
minutes and run only when named with ``--only``.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import (
    bench_anatomy,
    bench_bus,
    bench_experiments,
    bench_feast,
    bench_feature_store,
    bench_joiner,
    bench_learning,
    bench_ope,
    bench_personalizer,
    bench_policy,
    bench_replay,
    bench_replay_live,
    bench_servers,
    bench_service,
    bench_trainer,
    bench_versus,
)
from benchmarks.doc_sections import DOC, store_section

HEADER = """# Benchmarks

Produced by `make bench` (`python -m benchmarks.run`). Figures are medians and p99 over many runs, and
ratios against a baseline measured in the same run, because the machine is shared and noisy. Each
section says when and where it was measured.
"""


# Each benchmark by the name of its section in docs/benchmarks.md, in the order they run.
BENCHMARKS = {
    "feature_store": bench_feature_store,
    "feast": bench_feast,  # creates var/feast-venv and var/feast-go-venv on first run (a few minutes)
    "ope": bench_ope,
    "policy": bench_policy,
    "replay": bench_replay,
    "replay_live": bench_replay_live,  # about 400,000 rows of per-row live learning: a few minutes
    "service": bench_service,
    "bus": bench_bus,  # the event bus alone: one redis-server and a 3-node cluster, 1 and 2 shards (a few minutes)
    "joiner": bench_joiner,  # the joiner alone on a fed Redis bus, its Parquet share and profile (about a minute)
    "personalizer": bench_personalizer,
    "trainer": bench_trainer,
    "versus": bench_versus,
    "anatomy": bench_anatomy,  # the parts of one score request, ours against the afternoon build (a few minutes)
    "servers": bench_servers,
    "learning": bench_learning,
    "experiments": bench_experiments,
}
# Run only when named (--only): learning, 16,000 requests at 100/s on each of four storefronts, about 12 minutes;
# experiments, a 1,000,000-row event log written and read, a few minutes.
ON_REQUEST = {"learning", "experiments"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run; figures not recorded)")
    args = parser.parse_args(argv)
    for name in args.only or [name for name in BENCHMARKS if name not in ON_REQUEST]:
        module = BENCHMARKS[name]
        print(f"== {name}", flush=True)
        section = module.run(quick=args.quick)
        print(section, flush=True)
        if not args.quick:
            # Read just before writing: a benchmark takes minutes, and other sections may be stored meanwhile.
            document = DOC.read_text() if DOC.exists() else HEADER
            DOC.write_text(store_section(document, name, section))
            print(f"wrote {name} into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
