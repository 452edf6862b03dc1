"""Turning feature rows (JSON objects as logged) into numeric matrices for reward models.

A feature row maps names to values. Flattening rules, applied recursively with ``.``-joined prefixes:

- number or bool -> ``name``: value
- string -> ``name=value``: 1 (one-hot)
- list of strings (tags) -> ``name=tag``: 1 for each tag
- list of numbers (vector) -> ``name[i]``: value
- mapping (a VW namespace) -> its entries under ``name.``; a list of mappings -> each of them
- None -> nothing. Keys starting with ``_`` are VW metadata (``_tag``, ``_synthetic``...) and are skipped.

The flattened dicts are vectorized with scikit-learn's ``DictVectorizer`` (sorted feature names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sklearn.feature_extraction import DictVectorizer


def flatten_features(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The flat numeric dict of one feature row (see the module docstring)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        key = str(key)
        if key.startswith("_"):
            continue
        _flatten_value(f"{prefix}{key}", value, out)
    return out


def _flatten_value(name: str, value: Any, out: dict[str, float]) -> None:
    if value is None:
        return
    if isinstance(value, bool | int | float):
        if isinstance(value, float) and not np.isfinite(value):
            return
        out[name] = float(value)
    elif isinstance(value, str):
        out[f"{name}={value}"] = 1.0
    elif isinstance(value, Mapping):
        out.update(flatten_features(value, prefix=f"{name}."))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, str):
                out[f"{name}={item}"] = 1.0
            elif isinstance(item, Mapping):
                out.update(flatten_features(item, prefix=f"{name}."))
            elif isinstance(item, bool | int | float):
                out[f"{name}[{i}]"] = float(item)


def vectorize(rows: Iterable[Mapping[str, float]]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Dense (n, d) float64 matrix of flat dicts, and the feature names (d may be 0)."""
    rows = list(rows)
    if not rows:
        return np.zeros((0, 0)), ()
    vectorizer = DictVectorizer(sparse=False, sort=True)
    matrix = vectorizer.fit_transform(rows)
    return np.asarray(matrix, dtype=np.float64), tuple(vectorizer.get_feature_names_out())
