"""VW's binary cache of a converted log's partition files: what every replay reads instead of the VW text.

Parsing the text (``simulators.replay_log``: 17-digit floats, ~750 bytes per example) is most of what VW's
parser thread does in a replay, and every setting of a sweep parsed the same text again. VW's cache format
holds the parsed examples (label, tag, each namespace's hashed feature indices and values), so a replay
from it skips the text parser and reads half the bytes. A cache is written once per partition and
parse signature, next to the partition (``part-00000.vw`` -> ``part-00000.vw-9.11.9-b18.cache``), and read
by every replay with that signature, in process or on any worker that sees the files.

What a cache depends on, from VW 9's source (vowpalwabbit/core/src/parser.cc, cache_parser/, vw.cc):

- Its header records VW's version and the ``-b`` bits it was written with. A reader of another version
  refuses it (an error); a reader with *more* bits ignores it and silently rewrites it from its text input.
  A cache is therefore named by the VW version and the bits, and read only with exactly those.
- Examples are written in ``setup_example`` before anything the learning arguments change: after the text
  parser (which masks feature indices to the bits) and ``--sort_features``; before ``--ignore``/``--keep``,
  the constant feature, n-grams and the stride (all applied again to every example read from the cache).
  Interactions, exploration, learning rates and cb_type act in the learner. So for ``--cb_explore_adf``
  arguments without a text-parsing option (``PARSE_OPTIONS``) a cache of the same bits gives exactly the
  pmfs of the text; ``cache_bits`` says which arguments qualify (others replay from the text).
- At the end of a pass VW resets its inputs and re-reads each cache's header (``reset_source``): cache
  inputs must be regular files, which is why they are never fed through a pipe.

Concurrency: ``ensure_cache`` writes to a name of its own and renames it into place (atomic on POSIX), so
workers building the same cache at once each write a whole file and a reader only ever opens a complete
one. ``cache_task`` builds the caches of a sweep as tasks before the settings fan out, so they are built
once (``simulators.optimize.run_sweep``); a replay that still finds one missing builds it itself. A cache
older than its partition is rebuilt, and converting a partition removes its caches
(``simulators.replay_log.convert_partition``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from recommender.policy.vw import run_driver

# VW's default number of hash bits (``-b``) when the arguments do not give one.
DEFAULT_BITS = 18

# The reduction whose examples (a shared line, one line per action, a blank line) our converted logs hold.
CACHED_REDUCTION = "--cb_explore_adf"

# Options that change what VW's text parser produces (or how it reads the input): a replay with any of
# these reads the text. Options VW applies to an example after the cache is written (--ignore, --keep,
# --noconstant, --ngram, --skips, interactions) are not here.
PARSE_OPTIONS = frozenset(
    {
        "--hash",
        "--hash_seed",
        "--affix",
        "--spelling",
        "--redefine",
        "--dictionary",
        "--dictionary_path",
        "--chain_hash",
        "--sort_features",
        "--audit",
        "-a",
        "--invert_hash",
        "--named_labels",
        "--json",
        "--dsjson",
        "--csv",
        "--flatbuffer",
        "--passes",
        "--cache",
        "-c",
        "--cache_file",
        "--kill_cache",
        "-k",
        "-d",
        "--data",
        "--daemon",
    }
)

_VW_VERSION = metadata.version("vowpalwabbit")


def cache_bits(args: Sequence[str]) -> int | None:
    """The ``-b`` bits a replay with ``args`` reads its caches at, or None when it must read the text
    (not ``--cb_explore_adf``, or an option of ``PARSE_OPTIONS``)."""
    tokens = [str(a) for a in args]
    names = {t.split("=", 1)[0] for t in tokens if t.startswith("-")}
    if CACHED_REDUCTION not in names or names & PARSE_OPTIONS:
        return None
    bits = str(DEFAULT_BITS)
    for i, token in enumerate(tokens):
        if token in ("-b", "--bit_precision") and i + 1 < len(tokens):
            bits = tokens[i + 1]
        elif token.startswith("--bit_precision="):
            bits = token.split("=", 1)[1]
    return int(bits) if bits.isdigit() else None  # not a number: the text run lets VW say what is wrong


def cache_path(partition: str | Path, bits: int) -> Path:
    """Where the cache of ``partition`` (a converted log's ``.vw`` file) at ``bits`` lives: next to it."""
    partition = Path(partition)
    return partition.with_name(f"{partition.stem}.vw-{_VW_VERSION}-b{bits}.cache")


def caches_of(partition: str | Path) -> list[Path]:
    """Every cache file of ``partition`` (any VW version or bits), e.g. to remove them when it is rewritten."""
    partition = Path(partition)
    return sorted(partition.parent.glob(f"{partition.stem}.vw-*.cache"))


def ensure_cache(partition: str | Path, bits: int) -> Path:
    """The cache of ``partition`` at ``bits``, written first when missing or older than the partition.

    Written by VW itself (a predict-only ``--cb_explore_adf`` pass over the text with ``--cache_file``) under
    a name of its own, then renamed into place: safe when several processes build it at once. Raises
    PolicyError when VW cannot parse the partition.
    """
    partition = Path(partition)
    cache = cache_path(partition, bits)
    source = partition.stat()  # FileNotFoundError for a missing partition, as the text replay raises
    try:
        if cache.stat().st_mtime_ns >= source.st_mtime_ns:
            return cache
    except FileNotFoundError:
        pass
    temporary = cache.with_name(f"{cache.name}.{uuid.uuid4().hex}.tmp")
    try:
        # -t: predict only, the cheapest pass that parses every example (the cache does not record it).
        args = [CACHED_REDUCTION, "-t", "-b", str(bits), "--quiet", "--cache_file", str(temporary)]
        run_driver(args, partition, os.devnull)
        os.replace(temporary, cache)
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_name(temporary.name + ".writing").unlink(missing_ok=True)  # VW's own name while writing
    return cache


def ensure_caches(partitions: Sequence[str | Path], bits: int) -> list[Path] | None:
    """``ensure_cache`` for each partition, in order; None when a cache cannot be written next to its
    partition (a read-only directory): the replay then reads the text."""
    try:
        return [ensure_cache(partition, bits) for partition in partitions]
    except OSError:
        return None


@dataclass(frozen=True)
class CacheJob:
    """One cache to make sure of, a task: the partition file ``partition`` at ``bits``."""

    partition: str
    bits: int


def cache_task(job: CacheJob) -> str:
    """``ensure_cache`` as a task: the same on any worker that sees the partition; returns the cache's path."""
    return str(ensure_cache(job.partition, job.bits))


def cache_jobs(runs: Iterable[tuple[Sequence[str | Path], Sequence[str]]]) -> list[CacheJob]:
    """The distinct caches replays ``(partition files, VW arguments)`` read, one job each (none for a replay
    that reads the text)."""
    jobs: dict[tuple[str, int], CacheJob] = {}
    for paths, args in runs:
        bits = cache_bits(args)
        if bits is not None:
            for path in paths:
                jobs.setdefault((str(path), bits), CacheJob(str(path), bits))
    return list(jobs.values())
