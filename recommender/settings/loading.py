"""Loading the YAML configuration into one typed, validated ``AppConfig``.

``load_config(path)`` is called once at start; the resulting object is passed down (no module-level
globals). Loading expands ``${VAR}`` references from the environment, parses YAML, applies the
environment overrides below, and validates with unknown keys forbidden. Every error is a ``ConfigError``
naming the file and the key path, e.g. ``configs/default.yaml: policy.exploration.epsilon: must be <= 1``.

Environment overrides (URLs and secrets never need to live in the file):

- ``RECOMMENDER_REDIS_URL`` -> ``features.redis.url``
- ``RECOMMENDER_FEATURE_BACKEND`` -> ``features.backend`` (``memory`` or ``redis``)
- ``RECOMMENDER_API_KEYS`` -> ``service.api_keys`` (comma-separated)
- ``RECOMMENDER_BUS_REDIS_URL`` -> ``bus.redis_url``
"""

from __future__ import annotations

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


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem: ``<source>: <key.path>: <message>``."""
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{source}: {location}: {message}")
    return "\n".join(lines)


def parse_config(document: Mapping[str, Any], source: str = "<config>") -> AppConfig:
    """Validate an already-parsed document. Raises ConfigError naming ``source`` and the key path."""
    try:
        return AppConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_document(path: str | Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read, expand and parse one YAML file, applying environment overrides; no validation."""
    path = Path(path)
    env = os.environ if env is None else env
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
    for variable, keys in ENV_OVERRIDES.items():
        if env.get(variable):
            _set_path(document, keys, env[variable])
    return document


def load_config(path: str | Path = DEFAULT_CONFIG_PATH, env: Mapping[str, str] | None = None) -> AppConfig:
    """Load and validate the configuration file at ``path``."""
    return parse_config(load_document(path, env), source=str(path))
