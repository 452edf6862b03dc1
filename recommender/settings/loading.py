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
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from features.config import FeatureStoreConfig
from recommender.errors import ConfigError
from recommender.settings.policy import PolicyConfig
from recommender.settings.service import BusConfig, JoinConfig, ServiceConfig
from recommender.settings.trainer import TrainerConfig

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


class AppConfig(BaseModel):
    """The whole configuration. Each section is owned by the package that uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: FeatureStoreConfig
    policy: PolicyConfig = PolicyConfig()
    service: ServiceConfig = ServiceConfig()
    join: JoinConfig = JoinConfig()
    bus: BusConfig = BusConfig()
    trainer: TrainerConfig = TrainerConfig()


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


class ConfigFollower:
    """The configuration in a file, re-read when the file changes (checked at most every
    ``min_interval`` seconds). A call returns the current AppConfig; an invalid edit is logged and
    refused, and the previous configuration stays. For long-running processes other than the serving
    workers (which have their own watcher): the trainer and the separate joiner.
    """

    def __init__(self, path: str | Path, config: AppConfig, *, min_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.current = config
        self.min_interval = min_interval
        self._signature = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def __call__(self) -> AppConfig:
        now = time.monotonic()
        if now - self._checked < self.min_interval:
            return self.current
        self._checked = now
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                self.current = load_config(self.path)
                log.info("configuration reloaded from %s", self.path)
            except ConfigError as exc:
                log.error("configuration change refused, the previous settings stay: %s", exc)
        return self.current
