"""Changing settings at runtime the one way they change: by writing the config file the service follows.

Personalizer's administration calls (service configuration, learning policy) change settings while the
service runs. Here that is a write of the followed config file (``recommender serve --config``): the workers'
config watchers re-read it within ``service.config_reload_seconds`` and apply what is hot-reloadable
(``recommender.service.reload``: exploration, default reward, learning mode, model update interval...),
exactly as when ops edit the file; a restart-only setting (``join.reward_wait_time``) is stored and applies
at the next start. The file is written through ``recommender.settings.config_writer``: validated as a whole
before it replaces the old one (an invalid change is refused with 400 and the file is left alone), ``${VAR}``
references kept, comments not. Only the followed file is written: when it is a layer that
``extends`` another (``recommender.settings.loading``), the change lands in the layer (its ``extends`` kept) and
the files below it, e.g. the shipped configuration, stay as written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from recommender.errors import ConfigError
from recommender.service.errors import ApiError
from recommender.service.runtime import Runtime
from recommender.settings.app import AppConfig
from recommender.settings.config_writer import read_document, write_document


def _set(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = document
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def write_changes(rt: Runtime, changes: Mapping[tuple[str, ...], Any], *, code: str) -> AppConfig:
    """Write ``changes`` (key path -> value) into the followed config file; returns the file's new
    configuration once this worker applied its hot part (or after a few reload intervals). Raises ApiError:
    409 when the service follows no file, 400 (``code``) when the result is not a valid configuration."""
    path = rt.config_path
    if path is None or rt.watcher is None:
        raise ApiError(409, "OperationNotAllowed", "this service follows no config file (recommender serve "
                       "--config FILE): settings cannot change while it runs")  # fmt: skip
    try:
        document = read_document(path)
        for key_path, value in changes.items():
            _set(document, key_path, value)
        new = write_document(path, document)
    except ConfigError as exc:
        raise ApiError(400, code, f"the change is not a valid configuration: {exc}".replace("\n", "; ")) from None
    _wait_applied(rt, lambda config: all(_get(config, k) == _get(new, k) for k in changes))
    return new


def _get(config: AppConfig, path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        node = getattr(node, key, None)
    return node


def _wait_applied(rt: Runtime, applied: Callable[[AppConfig], bool]) -> None:
    """Until this worker's snapshot shows the change (restart-only settings never do: bounded wait)."""
    interval = rt.snapshot.config.service.config_reload_seconds
    deadline = time.monotonic() + 3 * interval + 0.5
    while time.monotonic() < deadline and not applied(rt.snapshot.config):
        time.sleep(min(0.05, interval))
