"""Loading the YAML configuration into one typed, validated ``AppConfig``.

``load_config(path)`` is called once at start; the resulting object is passed down (no module-level
globals). Loading expands ``${VAR}`` references from the environment, parses YAML, resolves ``extends``
(below), applies the environment overrides below, and validates with unknown keys forbidden. Every error
is a ``ConfigError`` naming the file and the key path, e.g.
``configs/default.yaml: policy.exploration.epsilon: must be <= 1``.

Layering: a file may start from another one, ``extends: <path>`` (relative to the folder of the file that
says it; ``${VAR}`` allowed), and hold only what differs::

    extends: default.yaml          # configs/default.yaml, for a file in configs/
    join:
      reward_wait_time: 60

The files are deep-merged, the extending file over its base, key by key: a mapping is merged into the
base's mapping, anything else (a number, a string, a list) replaces the base's value; a mapping naming
another ``algorithm`` than the base's (``policy.exploration``) replaces the base's mapping whole. A base may extend
another (a chain; a cycle is an error). An error names the file the offending value came from, or, for a
key no file sets, the file loaded and the files it extends. There is one file to name on the command
line, to follow for hot reloads and to hand to the processes ``recommender serve`` starts, and the
layering is written in the file itself: no second ``--config`` to keep in step across them.
``config_signature(path)`` changes whenever any file of the chain changes, for the followers.

Environment overrides (URLs and secrets never need to live in the file):

- ``RECOMMENDER_REDIS_URL`` -> ``features.redis.url``
- ``RECOMMENDER_FEATURE_BACKEND`` -> ``features.backend`` (``memory`` or ``redis``)
- ``RECOMMENDER_API_KEYS`` -> ``service.api_keys`` (comma-separated)
- ``RECOMMENDER_BUS_REDIS_URL`` -> ``bus.redis_url``
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from recommender.errors import ConfigError
from recommender.settings.app import AppConfig

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"

# Environment variable -> key path in the YAML document.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "RECOMMENDER_REDIS_URL": ("features", "redis", "url"),
    "RECOMMENDER_FEATURE_BACKEND": ("features", "backend"),
    "RECOMMENDER_API_KEYS": ("service", "api_keys"),
    "RECOMMENDER_BUS_REDIS_URL": ("bus", "redis_url"),
}

# The key of a file naming the file it builds on (see the module docstring).
EXTENDS = "extends"

# Where each value of a merged document came from: key path -> the file (or environment variable).
Sources = dict[tuple[str, ...], str]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(text: str, env: Mapping[str, str], path: Path) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if fallback is not None:
            return fallback
        raise ConfigError(f"{path}: environment variable {name} is referenced but not set")

    return _VAR.sub(substitute, text)


def _set_path(document: dict[str, Any], keys: tuple[str, ...], value: str) -> None:
    node = document
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot apply override to {'.'.join(keys)}: {key} is not a mapping")
    node[keys[-1]] = value


def format_validation_error(source: str, error: ValidationError, sources: Sources | None = None) -> str:
    """One line per problem: ``<source>: <key.path>: <message>``, where ``source`` is, if ``sources`` says
    where the offending key (or the nearest mapping above it) was set, that file."""
    lines = []
    for problem in error.errors():
        loc = tuple(str(part) for part in problem["loc"])
        location = ".".join(loc) or "(top level)"
        message = problem["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{_source_of(loc, sources) or source}: {location}: {message}")
    return "\n".join(lines)


def _source_of(loc: tuple[str, ...], sources: Sources | None) -> str | None:
    """The file that set ``loc`` or its nearest enclosing key; None when none did."""
    if not sources:
        return None
    for end in range(len(loc), 0, -1):
        found = sources.get(loc[:end])
        if found is not None:
            return found
    return None


def parse_config(document: Mapping[str, Any], source: str = "<config>", sources: Sources | None = None) -> AppConfig:
    """Validate an already-parsed document. Raises ConfigError naming ``source`` (or the file ``sources``
    gives for the offending key) and the key path."""
    try:
        return AppConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, sources)) from exc


def _read_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """One YAML file, ``${VAR}`` expanded and parsed: a mapping, ``extends`` included."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(_expand(text, env, path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return document


def _base_of(path: Path, document: Mapping[str, Any]) -> Path | None:
    """The file ``document`` (read from ``path``) extends, or None."""
    if EXTENDS not in document:
        return None
    value = document[EXTENDS]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {EXTENDS}: must be the path of the configuration file this one builds on "
                          f"(relative to {path.parent}), not {value!r}")  # fmt: skip
    base = Path(value).expanduser()
    return base if base.is_absolute() else path.parent / base


# A mapping that names its kind (``policy.exploration``'s ``algorithm``): a layer naming another kind
# replaces the base's mapping whole, since the base's keys belong to the other kind (epsilon_greedy over
# squarecb would otherwise keep ``gamma_scale`` and be refused).
KIND_KEYS = ("algorithm",)


def _other_kind(base: Mapping[str, Any], layer: Mapping[str, Any]) -> bool:
    return any(key in layer and key in base and layer[key] != base[key] for key in KIND_KEYS)


def _merge(base: dict[str, Any], layer: Mapping[str, Any], source: str, sources: Sources,
           prefix: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """``layer`` deep-merged into ``base`` (changed in place and returned); what ``layer`` set is recorded
    in ``sources`` as coming from ``source``."""
    for key, value in layer.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _other_kind(base[key], value):
            _merge(base[key], value, source, sources, path)
        else:
            base[key] = value
            for known in [known for known in sources if known[: len(path)] == path]:
                del sources[known]  # the base's values under a replaced key are gone
            sources[path] = source
    return base


def _layered(path: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], Sources, list[Path]]:
    """The merged document of ``path`` and the files it extends, where its values came from, and the
    files, ``path`` first."""
    chain: list[Path] = []
    documents: list[dict[str, Any]] = []
    current: Path | None = path
    while current is not None:
        if any(current.resolve() == seen.resolve() for seen in chain):
            cycle = " -> ".join(str(p) for p in [*chain, current])
            raise ConfigError(f"{chain[-1]}: {EXTENDS}: the files extend each other in a cycle: {cycle}")
        chain.append(current)
        document = _read_file(current, env)
        documents.append(document)
        current = _base_of(current, document)
    merged: dict[str, Any] = {}
    sources: Sources = {}
    for file, document in zip(reversed(chain), reversed(documents), strict=True):
        _merge(merged, {k: v for k, v in document.items() if k != EXTENDS}, str(file), sources)
    for variable, keys in ENV_OVERRIDES.items():
        if env.get(variable):
            _set_path(merged, keys, env[variable])
            sources[keys] = f"environment variable {variable}"
    return merged, sources, chain


def _describe(chain: list[Path]) -> str:
    """How errors name a layered configuration: the file loaded and what it extends."""
    if len(chain) == 1:
        return str(chain[0])
    return f"{chain[0]} (extends {' -> '.join(str(p) for p in chain[1:])})"


def load_document(path: str | Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read, expand and parse a YAML file and the files it extends, merged, with the environment overrides
    applied; no validation."""
    return _layered(Path(path), os.environ if env is None else env)[0]


def load_config(path: str | Path = DEFAULT_CONFIG_PATH, env: Mapping[str, str] | None = None) -> AppConfig:
    """Load and validate the configuration file at ``path`` (with the files it extends)."""
    document, sources, chain = _layered(Path(path), os.environ if env is None else env)
    return parse_config(document, source=_describe(chain), sources=sources)


def config_signature(path: str | Path) -> tuple[tuple[int, int, int] | None, ...]:
    """(mtime_ns, size, inode) of ``path`` and of each file it extends, in order; None for a file that
    cannot be read (the chain stops there). Changes when any of them changes: what the config followers
    compare. A file is parsed only when its own stat changed (``_extends_of`` caches by stat)."""
    signature: list[tuple[int, int, int] | None] = []
    current: Path | None = Path(path)
    while current is not None and len(signature) < 32:  # 32: a cycle, which loading reports
        try:
            stat = os.stat(current)
        except OSError:
            signature.append(None)
            break
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        signature.append(key)
        current = _extends_of(current, key)
    return tuple(signature)


@functools.lru_cache(maxsize=64)
def _extends_of(path: Path, stat_key: tuple[int, int, int]) -> Path | None:
    """The file ``path`` extends, as of its stat ``stat_key``; None also when it cannot be read or parsed
    (loading reports that)."""
    try:
        return _base_of(path, _read_file(path, os.environ))
    except ConfigError:
        return None
