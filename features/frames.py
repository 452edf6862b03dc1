"""Batch input for materialization: checking a pandas DataFrame (or Parquet) against a group's schema.

``iter_encoded_chunks`` yields ``[(entity_id, encoded_row), ...]`` chunks; structural problems (a
missing column, a null or duplicate entity id) are found before the first chunk, value problems (a
mistyped value, a NaN where not allowed) when their chunk is encoded. Every error names the column and
the row (position in the frame and entity id).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from features.config import FeatureGroup
from features.encoding import encode_row, normalize_value
from features.errors import FeatureSchemaError


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file or dataset directory into a DataFrame; errors name the path."""
    path = Path(path)
    if not path.exists():
        raise FeatureSchemaError(f"Parquet input {path} does not exist")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable input
        raise FeatureSchemaError(f"cannot read Parquet input {path}: {exc}") from exc


def check_structure(group_name: str, group: FeatureGroup, frame: pd.DataFrame) -> None:
    """Raise FeatureSchemaError for a missing column or a null, non-string or duplicate entity id."""
    if not isinstance(frame, pd.DataFrame):
        raise FeatureSchemaError(f"group {group_name!r}: expected a pandas DataFrame, got {type(frame).__name__}")
    required = [group.key, *group.features]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise FeatureSchemaError(f"group {group_name!r}: missing columns {missing} (have {list(frame.columns)})")
    extra = [c for c in frame.columns if c not in required]
    if extra:
        raise FeatureSchemaError(f"group {group_name!r}: unknown columns {extra} (declared: {required})")
    ids = frame[group.key]
    null_rows = [int(i) for i in ids.isna().to_numpy().nonzero()[0]]
    if null_rows:
        raise FeatureSchemaError(f"group {group_name!r}: column {group.key!r} is null at rows {null_rows[:5]}")
    bad = [i for i, value in enumerate(ids.tolist()) if not isinstance(value, str) or not value]
    if bad:
        raise FeatureSchemaError(
            f"group {group_name!r}: column {group.key!r} must hold non-empty strings; row {bad[0]} "
            f"has {ids.iloc[bad[0]]!r}"
        )
    duplicated = ids.duplicated(keep=False).to_numpy().nonzero()[0]
    if len(duplicated):
        first = ids.iloc[duplicated[0]]
        rows = [int(i) for i in duplicated if ids.iloc[i] == first]
        raise FeatureSchemaError(
            f"group {group_name!r}: duplicate entity id {first!r} in column {group.key!r} at rows {rows[:5]}"
        )


def iter_encoded_chunks(
    group_name: str, group: FeatureGroup, frame: pd.DataFrame, chunk_size: int
) -> Iterator[list[tuple[str, bytes]]]:
    """Yield the frame's rows, validated and encoded, ``chunk_size`` entities at a time."""
    check_structure(group_name, group, frame)
    ids = frame[group.key].tolist()
    columns = {name: frame[name].tolist() for name in group.features}
    specs = list(group.features.items())
    for start in range(0, len(ids), chunk_size):
        chunk = []
        for row in range(start, min(start + chunk_size, len(ids))):
            values = {
                name: normalize_value(
                    spec,
                    columns[name][row],
                    where=f"group {group_name!r}, column {name!r}, row {row} ({group.key}={ids[row]!r})",
                )
                for name, spec in specs
            }
            chunk.append((ids[row], encode_row(values)))
        yield chunk
