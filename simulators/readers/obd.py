"""Reading logs in the Open Bandit Dataset layout (ZOZOTOWN; Saito et al. 2021).

Layout: a campaign CSV (e.g. ``open_bandit_dataset/random/all/all.csv``) with columns

    [index], timestamp, item_id, position, click, propensity_score,
    user_feature_0..3 (hashed categorical), user-item_affinity_0..(n_items - 1)

and ``item_context.csv`` beside it: ``[index], item_id, item_feature_0`` (numeric) and
``item_feature_1..3`` (categorical). ``path`` may be the CSV file or its directory (which must then hold
exactly one campaign CSV besides ``item_context.csv``).

Preprocessing follows OBP's ``OpenBanditDataset.pre_process``: positions 1..3 become 0..2, the context
is the one-hot encoding of the ``user_feature_*`` columns (first level dropped), the action context is
``item_feature_0`` plus the integer codes of the categorical item features. The affinity columns are
kept out of the context, as in OBP. Each row is its own round (the dataset does not say which rows
share an impression).

Bad rows are excluded and reported with their CSV line numbers, one reason per row (the first found):
``item_id`` not in ``item_context.csv`` (``unknown_action``); a position that is not a whole number >= 1,
e.g. ``2.5`` or ``0`` (``malformed``); a missing ``propensity_score`` (``missing_propensity``) or one
outside (0, 1] (``propensity_out_of_range``); a missing click (``missing_reward``); a click other than 0
or 1 (``malformed``); an empty ``user_feature_*`` value (``malformed``: the one-hot context would make
"missing" a category of its own); and, when the file has a ``timestamp`` column (not wholly empty), a
missing or unparseable timestamp (``malformed``), so one bad timestamp does not cost the whole log its
time order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulators.data import LoggedBandit
from simulators.errors import LogReadError
from simulators.readers.bad_rows import (
    MALFORMED,
    MISSING_PROPENSITY,
    MISSING_REWARD,
    PROPENSITY_OUT_OF_RANGE,
    UNKNOWN_ACTION,
    BadRowCollector,
    LoadedLog,
)

FORMAT = "obd"
ITEM_CONTEXT = "item_context.csv"
REQUIRED = ("item_id", "position", "click", "propensity_score")


def _locate(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        csvs = sorted(p for p in path.glob("*.csv") if p.name != ITEM_CONTEXT)
        if len(csvs) != 1:
            raise LogReadError(f"{path}: expected one campaign CSV besides {ITEM_CONTEXT}, found {len(csvs)}")
        data = csvs[0]
    elif path.exists():
        data = path
    else:
        raise LogReadError(f"OBD log {path} does not exist")
    items = data.parent / ITEM_CONTEXT
    return data, items if items.exists() else None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise LogReadError(f"cannot read {path}: {exc}") from exc
    return frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed")])


def _action_context(items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(item ids in order, action-context matrix): item_feature_0 numeric + codes of the others."""
    items = items.sort_values("item_id").reset_index(drop=True)
    features = [c for c in items.columns if c.startswith("item_feature")]
    columns = []
    for name in sorted(c for c in features if c != "item_feature_0"):
        columns.append(pd.factorize(items[name].astype(str), sort=True)[0].astype(np.float64))
    if "item_feature_0" in items:
        columns.append(pd.to_numeric(items["item_feature_0"], errors="coerce").fillna(0.0).to_numpy(np.float64))
    matrix = np.column_stack(columns) if columns else np.zeros((len(items), 0))
    return items["item_id"].to_numpy(), matrix


def _cell(frame: pd.DataFrame, column: str, row: int) -> str:
    """A CSV value as the file shows it: text quoted, numbers plain (``2.5``, not ``np.float64(2.5)``)."""
    value = frame[column].iat[row]
    return repr(value) if isinstance(value, str) else str(value)


def _empty_values(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Per row, the first of ``columns`` with an empty (missing or blank) value, else None."""
    first = pd.Series(None, index=frame.index, dtype=object)
    for name in reversed(columns):
        values = frame[name]
        empty = values.isna() | (values.astype(str).str.strip() == "")
        first = first.mask(empty, name)
    return first


def read_obd(path: str | Path, *, strict: bool = False) -> LoadedLog:
    """Read an OBD-layout campaign CSV (see the module docstring) into a ``LoadedLog``."""
    data_path, items_path = _locate(Path(path))
    frame = _read_csv(data_path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise LogReadError(f"{data_path}: not in the Open Bandit Dataset layout, lacks columns {missing}")
    n_read = len(frame)
    line = np.arange(n_read) + 2  # header is line 1
    item_ids = None
    action_context = None
    if items_path is not None:
        items = _read_csv(items_path)
        if "item_id" not in items.columns:
            raise LogReadError(f"{items_path}: lacks column item_id")
        item_ids, action_context = _action_context(items)
    item = pd.to_numeric(frame["item_id"], errors="coerce")
    position = pd.to_numeric(frame["position"], errors="coerce")
    click = pd.to_numeric(frame["click"], errors="coerce")
    pscore = pd.to_numeric(frame["propensity_score"], errors="coerce")
    user_columns = [c for c in frame.columns if str(c).startswith("user_feature")]
    empty_feature = _empty_values(frame, user_columns)
    # A timestamp column left wholly empty is read as no timestamps, not as every row being bad.
    has_time = "timestamp" in frame.columns and bool(frame["timestamp"].notna().any())
    if has_time:
        parsed_time = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True)
    else:
        parsed_time = pd.Series(pd.Timestamp(0, tz="UTC"), index=frame.index)
    if item_ids is not None:
        known = item.isin(item_ids)
        if not np.array_equal(np.sort(item_ids), np.arange(len(item_ids))):
            raise LogReadError(f"{items_path}: item_id must be 0..n_items-1")
        n_actions = len(item_ids)
    else:
        known = item.notna() & (item >= 0) & (item == item.round())
        n_actions = int(item[known].max()) + 1 if known.any() else 1

    bad = BadRowCollector()
    keep = np.ones(n_read, dtype=bool)
    checks = (
        (item.isna() | ~known, UNKNOWN_ACTION, lambda i: f"item_id {_cell(frame, 'item_id', i)} is not a known item"),
        (
            position.isna() | (position < 1) | (position != position.round()),
            MALFORMED,
            lambda i: f"position {_cell(frame, 'position', i)} is not a whole number >= 1",
        ),
        (pscore.isna(), MISSING_PROPENSITY, lambda i: "propensity_score is missing"),
        (
            (pscore <= 0) | (pscore > 1),
            PROPENSITY_OUT_OF_RANGE,
            lambda i: f"propensity_score {pscore.iat[i]} is outside (0, 1]",
        ),
        (click.isna() | ~np.isfinite(click.fillna(0.0)), MISSING_REWARD, lambda i: "click is missing"),
        (~click.isin((0, 1)), MALFORMED, lambda i: f"click {_cell(frame, 'click', i)} is not 0 or 1"),
        (
            empty_feature.notna(),
            MALFORMED,
            lambda i: f"{empty_feature.iat[i]} is empty",
        ),
        (
            parsed_time.isna(),
            MALFORMED,
            lambda i: f"timestamp {_cell(frame, 'timestamp', i)} is not a date and time",
        ),
    )
    for failed, reason, detail in checks:
        rows = np.flatnonzero(failed.to_numpy() & keep)
        if rows.size:
            bad.add_many([f"line {line[i]}" for i in rows], reason, [detail(i) for i in rows[:5]])
            keep[rows] = False
    report = bad.report(str(data_path), FORMAT, n_read, int(keep.sum()), strict=strict)

    kept = frame.loc[keep]
    if user_columns:
        # Levels from the kept rows only: an excluded row's value does not become a context column.
        context = pd.get_dummies(kept[user_columns].astype(str), drop_first=True).to_numpy(np.float64)
    else:
        context = np.zeros((int(keep.sum()), 0))
    timestamp = None
    if has_time:  # every kept row has one: rows without are bad rows above
        parsed = parsed_time[keep]
        timestamp = parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    bandit = LoggedBandit(
        context=context,
        action=item[keep].to_numpy(np.int64),
        position=position[keep].to_numpy(np.int64) - 1,
        reward=click[keep].to_numpy(np.float64),
        pscore=pscore[keep].to_numpy(np.float64),
        n_actions=n_actions,
        action_context=action_context,
        timestamp=timestamp,
        item_ids=tuple(str(i) for i in item_ids) if item_ids is not None else None,
        source=f"{FORMAT}:{data_path}",
    )
    return LoadedLog(bandit=bandit, report=report)
