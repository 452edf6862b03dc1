"""The Parquet event log of joined events: its one schema, and writing and reading it.

This is the only module that imports ``pyarrow``. Layout on disk (hive partitioning):

    <root>/date=YYYY-MM-DD/hour=HH/<part>.parquet

Columns (``EVENT_LOG_SCHEMA``), one row per joined decision:

- ``event_id`` string, ``timestamp`` timestamp[us, UTC] (decision time), ``user_id`` string or null
- ``user_features``, ``context`` string: JSON objects of the features exactly as used
- ``candidate_ids`` list<dictionary<int32, string>>, in the order the policy saw them
- ``candidate_features`` list<dictionary<int32, string>>: one JSON object per candidate
- ``pmfs`` list<list<double>>: one distribution per slot over all candidates
- ``chosen`` list<int32>: candidate index per slot; ``ranking`` list<int32>
- ``model_version`` string, ``exploration`` string (JSON of the settings in force)
- ``degraded``, ``deferred`` bool
- ``experiment``, ``arm`` string or null: the running experiment and the decision's arm (null outside
  experiments, and in logs written before these columns existed: read as null)
- ``slot_names`` list<string> or null: the page's names of its slots (Personalizer's slot ids), in slot order;
  null when it named none (and in logs written before this column existed)
- ``rewards`` list<double> and ``reward_is_default`` list<bool>: one per slot
- ``joined_at`` timestamp[us, UTC]

The partition columns ``date`` and ``hour`` are derived from ``timestamp`` and are not part of the file
schema. Every write and read is checked against the schema; a mismatch raises ``EventLogError``.

The two candidate columns are dictionary-encoded (each distinct id and feature text once per file, and per cell
an int32 code), in memory as in the file: a catalog's few hundred rows recur in every decision, so the writer
hands Parquet the codes it already has instead of 200 texts per event for Parquet to hash again, and a read of a
whole log holds each distinct text once, not once per cell (no single array of every cell's text, which Arrow
caps at 2 GiB). Logs written before (plain ``list<string>`` cells) read the same: their cells are encoded on
read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate, chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recommender.errors import EventLogError, RecordError
from recommender.events.codec import dumps, passing_row_text, row_of, row_text
from recommender.records import Decision, JoinedEvent

_TS = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CODED_TEXT = pa.dictionary(pa.int32(), pa.string())  # a dictionary-encoded text cell

EVENT_LOG_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("user_features", pa.string(), nullable=False),
        pa.field("context", pa.string(), nullable=False),
        pa.field("candidate_ids", pa.list_(_CODED_TEXT), nullable=False),
        pa.field("candidate_features", pa.list_(_CODED_TEXT), nullable=False),
        pa.field("pmfs", pa.list_(pa.list_(pa.float64())), nullable=False),
        pa.field("chosen", pa.list_(pa.int32()), nullable=False),
        pa.field("ranking", pa.list_(pa.int32()), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("exploration", pa.string(), nullable=False),
        pa.field("degraded", pa.bool_(), nullable=False),
        pa.field("deferred", pa.bool_(), nullable=False),
        pa.field("rewards", pa.list_(pa.float64()), nullable=False),
        pa.field("reward_is_default", pa.list_(pa.bool_()), nullable=False),
        pa.field("joined_at", _TS, nullable=False),
        pa.field("experiment", pa.string()),
        pa.field("arm", pa.string()),
        pa.field("slot_names", pa.list_(pa.string())),
    ]
)

# Columns added after the first logs were written: a file without them reads them as nulls.
_ADDED_COLUMNS = ("experiment", "arm", "slot_names")

# Columns of dictionary-encoded cells (``list<string>`` in logs written before).
_CODED_COLUMNS = ("candidate_ids", "candidate_features")

# Row-group statistics (min/max) only for the scalar columns, where a reader's filter could use them; over the
# list columns (200 feature texts per event) they cost an eighth of the write and would never prune anything.
_STATISTICS_COLUMNS = [f.name for f in EVENT_LOG_SCHEMA if not pa.types.is_list(f.type)]

_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.int32())]), flavor="hive")


def _candidate_columns(decisions: Sequence[Decision]) -> tuple[pa.Array, pa.Array]:
    """The ``candidate_ids`` and ``candidate_features`` columns (dictionary-encoded cells, one offsets array).

    ``candidate_features`` without a Python string object per cell: a batch of decisions over a catalog repeats
    the same few hundred row objects tens of thousands of times, so each distinct row object is encoded once
    (``row_text``: a cache hit for rows the feature store or the bus decoded), and Arrow turns the cells' object
    identities into the int32 codes into those texts (the rows are alive for the whole call, so an id names one
    row). The only Python work per cell is reading its id. The ids are fresh strings per decision (parsed from
    the bus): Arrow takes them in one pass and encodes them in C.
    """
    offsets = pa.array([0, *accumulate(len(d.candidate_ids) for d in decisions)], type=pa.int32())
    ids = pa.array(list(chain.from_iterable(d.candidate_ids for d in decisions)), type=pa.string()).dictionary_encode()
    rows = list(chain.from_iterable(d.candidate_features for d in decisions))
    identities = pa.array(np.fromiter(map(id, rows), dtype=np.uint64, count=len(rows)))
    encoded = identities.dictionary_encode()  # indices: int32 codes; dictionary: the distinct ids
    codes = encoded.indices.to_numpy()
    cell_of_code = np.empty(len(encoded.dictionary), dtype=np.int64)
    cell_of_code[codes] = np.arange(len(codes))  # a cell of each distinct row (any: they hold the same row)
    texts = pa.array([row_text(rows[cell]) for cell in cell_of_code.tolist()], type=pa.string())
    features = pa.DictionaryArray.from_arrays(encoded.indices, texts)
    return pa.ListArray.from_arrays(offsets, ids), pa.ListArray.from_arrays(offsets, features)


def events_to_table(events: Sequence[JoinedEvent]) -> pa.Table:
    """Columnar form of ``events`` under ``EVENT_LOG_SCHEMA``."""
    decisions = [e.decision for e in events]
    candidate_ids, candidate_features = _candidate_columns(decisions)
    # The records' sequences (tuples) go to Arrow as they are: a copy of each as a list would be thousands
    # of large containers per batch, all alive until the table is built, for the garbage collector to scan.
    columns = {
        "event_id": [d.event_id for d in decisions],
        "timestamp": [d.timestamp for d in decisions],
        "user_id": [d.user_id for d in decisions],
        "user_features": [passing_row_text(d.user_features) for d in decisions],
        "context": [dumps(dict(d.context)) for d in decisions],
        "candidate_ids": candidate_ids,
        "candidate_features": candidate_features,
        "pmfs": [d.pmfs for d in decisions],
        "chosen": [d.chosen for d in decisions],
        "ranking": [d.ranking for d in decisions],
        "model_version": [d.model_version for d in decisions],
        "exploration": [dumps(dict(d.exploration)) for d in decisions],
        "degraded": [d.degraded for d in decisions],
        "deferred": [d.deferred for d in decisions],
        "rewards": [e.rewards for e in events],
        "reward_is_default": [e.reward_is_default for e in events],
        "joined_at": [e.joined_at for e in events],
        "experiment": [d.experiment for d in decisions],
        "arm": [d.arm for d in decisions],
        "slot_names": [d.slot_names or None for d in decisions],
    }
    try:
        return pa.Table.from_pydict(columns, schema=EVENT_LOG_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise EventLogError(f"joined events do not fit the event log schema: {exc}") from exc


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write a table of ``events_to_table`` to one Parquet file at ``path`` (not atomically: ``write_events``
    renames it into place). Dictionary-encoded columns go to Parquet with their dictionaries as they are."""
    pq.write_table(table, path, write_statistics=_STATISTICS_COLUMNS)


def write_events(events: Iterable[JoinedEvent], root: str | Path) -> list[Path]:
    """Append ``events`` to the log under ``root``, one new file per (date, hour) partition touched.

    Files are written under a temporary name and renamed, so a reader never sees a partial file.
    Returns the paths written (empty when ``events`` is empty).
    """
    root = Path(root)
    by_partition: dict[tuple[date, int], list[JoinedEvent]] = {}
    for event in events:
        ts = event.decision.timestamp.astimezone(UTC)
        by_partition.setdefault((ts.date(), ts.hour), []).append(event)  # formatted once per partition
    written = []
    for (day, hour), group in sorted(by_partition.items()):
        directory = root / f"date={day:%Y-%m-%d}" / f"hour={hour:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = directory / f".{name}.tmp"
        write_table(events_to_table(group), tmp)
        final = directory / name
        tmp.rename(final)
        written.append(final)
    return written


def _window(since: datetime | None, until: datetime | None, *, partitioned: bool) -> list[ds.Expression]:
    """Filters keeping decisions with ``since <= timestamp < until``; with ``partitioned``, terms on the
    partition columns let pyarrow skip the hour directories outside the window without opening their files
    (null partition values: files not under a date=/hour= directory, which only the timestamp term judges)."""
    terms: list[ds.Expression] = []
    on_date, on_hour, timestamp = ds.field("date"), ds.field("hour"), ds.field("timestamp")
    if since is not None:
        start = since.astimezone(UTC)
        day = f"{start:%Y-%m-%d}"
        terms.append(timestamp >= pa.scalar(start, type=_TS))
        if partitioned:
            terms.append(on_date.is_null() | (on_date > day) | ((on_date == day) & (on_hour >= start.hour)))
    if until is not None:
        end = until.astimezone(UTC)
        day = f"{end:%Y-%m-%d}"
        terms.append(timestamp < pa.scalar(end, type=_TS))
        if partitioned:
            terms.append(on_date.is_null() | (on_date < day) | ((on_date == day) & (on_hour <= end.hour)))
    return terms


def read_table(
    path: str | Path,
    *,
    filter_expression: Any = None,
    columns: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    equals: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read a log (a root directory, a partition directory, or one file) as a table sorted by timestamp.

    ``columns``: only these columns of ``EVENT_LOG_SCHEMA``, in this order (None: all); only they are read
    from the files. ``since``/``until`` (aware datetimes): only decisions with ``since <= timestamp < until``,
    and hour partitions outside that window are not opened. ``equals``: only rows whose column equals the
    value (e.g. ``{"experiment": name}``; row groups whose statistics exclude it are skipped).
    A directory holding no log files yet gives an empty table. Files and directories whose names start
    with ``.`` or ``_`` (temporary and staging files) are not read. Raises EventLogError when the path
    does not exist or a file does not carry the log's columns.
    """
    path = Path(path)
    if not path.exists():
        raise EventLogError(f"event log {path} does not exist")
    wanted = list(EVENT_LOG_SCHEMA.names) if columns is None else list(columns)
    unknown = [name for name in wanted if name not in EVENT_LOG_SCHEMA.names]
    if unknown:
        raise EventLogError(f"the event log has no columns {unknown}")
    read = list(dict.fromkeys([*wanted, "timestamp", "event_id"]))  # and the sort keys
    terms = [ds.field(name) == value for name, value in (equals or {}).items()]
    if filter_expression is not None:
        terms.append(filter_expression)
    try:
        discovery: dict[str, Any] = {
            "format": "parquet",
            "partitioning": _PARTITIONING if path.is_dir() else None,
            "exclude_invalid_files": False,
        }
        dataset = ds.dataset(path, **discovery)
        if not dataset.files:  # a log directory nothing was written to yet (or only staging files)
            return EVENT_LOG_SCHEMA.empty_table().select(wanted)
        # The schema is inferred from one file; an older one lacks the added columns, which must still be read
        # from the files that have them (and be null in those that do not).
        absent = [EVENT_LOG_SCHEMA.field(name) for name in _ADDED_COLUMNS if name not in dataset.schema.names]
        # The dictionary-encoded columns as such, whichever layout that one file has: cells of the files of the
        # earlier layout are encoded as each file is read, never materialized as one array of every cell's text.
        present = [EVENT_LOG_SCHEMA.field(f.name) if f.name in _CODED_COLUMNS and not _is_coded(f.type) else f
                   for f in dataset.schema]  # fmt: skip
        if absent or present != list(dataset.schema):  # (replace_schema refuses a changed type)
            dataset = ds.dataset(path, schema=pa.schema([*present, *absent]), **discovery)
        missing = [f.name for f in EVENT_LOG_SCHEMA if f.name not in dataset.schema.names]
        if missing:
            raise EventLogError(f"event log {path} lacks columns {missing}")
        terms += _window(since, until, partitioned="date" in dataset.schema.names)
        table = dataset.to_table(columns=read, filter=_all_of(terms))
    except (pa.ArrowInvalid, OSError) as exc:
        raise EventLogError(f"cannot read event log {path}: {exc}") from exc
    try:
        table = table.cast(pa.schema([EVENT_LOG_SCHEMA.field(name) for name in read]))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise EventLogError(f"event log {path} does not match the log schema: {exc}") from exc
    try:
        return table.sort_by([("timestamp", "ascending"), ("event_id", "ascending")]).select(wanted)
    except pa.ArrowInvalid as exc:  # e.g. a column over 2 GiB of text cannot be sorted as one array
        raise EventLogError(f"cannot sort event log {path} by time: {exc}; read fewer columns or a window") from exc


def _is_coded(column: pa.DataType) -> bool:
    """Whether ``column`` is a list of dictionary-encoded cells (the current layout of ``_CODED_COLUMNS``)."""
    return pa.types.is_list(column) and pa.types.is_dictionary(column.value_type)


def _all_of(terms: Sequence[ds.Expression]) -> ds.Expression | None:
    if not terms:
        return None
    combined = terms[0]
    for term in terms[1:]:
        combined = combined & term
    return combined


def event_from_row(row: Mapping[str, Any]) -> JoinedEvent:
    """The validated JoinedEvent of one log row (a dict of the schema's columns, as ``to_pylist`` gives).

    Raises RecordError (an invariant of the records fails), ValueError (feature JSON does not parse) or
    TypeError/KeyError (a column is missing or of the wrong type).
    """
    decision = Decision(
        event_id=row["event_id"],
        timestamp=row["timestamp"],
        user_id=row["user_id"],
        user_features=json.loads(row["user_features"]),
        context=json.loads(row["context"]),
        candidate_ids=tuple(row["candidate_ids"]),
        candidate_features=tuple(row_of(f) for f in row["candidate_features"]),
        pmfs=tuple(tuple(p) for p in row["pmfs"]),
        chosen=tuple(row["chosen"]),
        ranking=tuple(row["ranking"]),
        model_version=row["model_version"],
        exploration=json.loads(row["exploration"]),
        degraded=row["degraded"],
        deferred=row["deferred"],
        experiment=row.get("experiment"),
        arm=row.get("arm"),
        slot_names=tuple(row.get("slot_names") or ()),
    )
    return JoinedEvent(
        decision=decision,
        rewards=tuple(row["rewards"]),
        reward_is_default=tuple(row["reward_is_default"]),
        joined_at=row["joined_at"],
    )


def table_to_events(table: pa.Table) -> Iterator[JoinedEvent]:
    """Rebuild validated JoinedEvent records from a log table. Raises EventLogError naming the row.

    Each batch's columns are converted to Python values a column at a time (``column_values``): row by row,
    ``to_pylist`` spends ~75 us per event of 20 candidates on the two candidate columns alone.
    """
    first = 0
    for batch in table.to_batches():
        names = batch.schema.names
        columns = [column_values(batch.column(name)) for name in names]
        for i, values in enumerate(zip(*columns, strict=True)):
            row = dict(zip(names, values, strict=True))
            try:
                yield event_from_row(row)
            except (RecordError, ValueError, TypeError, KeyError) as exc:
                raise EventLogError(
                    f"event log row {first + i} (event_id={row.get('event_id')!r}) is invalid: {exc}"
                ) from exc
        first += batch.num_rows


def column_values(array: pa.Array) -> list[Any]:
    """``array.to_pylist()``, with list cells as tuples where the column is dictionary-encoded, computed faster
    for the log's two slow kinds of column: dictionary-encoded candidate cells (each distinct text made a
    Python string once per batch, then shared by every cell that holds it) and UTC timestamps."""
    if array.null_count == 0 and _is_coded(array.type):
        bounds = array.offsets.to_numpy().tolist()  # the slice's own offsets, into the unsliced child
        coded = array.values.slice(bounds[0], bounds[-1] - bounds[0])
        if coded.null_count == 0:
            texts = coded.dictionary.to_pylist()
            cells = list(map(texts.__getitem__, coded.indices.to_numpy().tolist()))
            start = bounds[0]
            return [tuple(cells[a - start : b - start]) for a, b in zip(bounds, bounds[1:], strict=False)]
    if array.null_count == 0 and array.type == _TS:
        micros = array.cast(pa.int64()).to_numpy().tolist()
        return [_EPOCH + timedelta(microseconds=m) for m in micros]
    return array.to_pylist()


def read_events(path: str | Path) -> list[JoinedEvent]:
    """All joined events under ``path``, in timestamp order."""
    return list(table_to_events(read_table(path)))
