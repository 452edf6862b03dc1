"""Writing a config file back the one safe way: validated as a whole file before it replaces the old one.

Both writers of a running service's configuration (Personalizer's administration calls and ``recommender
experiment promote``) change a few keys of the file the service follows. The file is read as YAML without
expanding ``${VAR}`` references (secrets given through the environment stay references; comments are not
kept), the changed document is written under a temporary name beside it (so that a relative ``extends:``
still resolves), validated with ``load_config``, and only then renamed over the original: a follower never
sees a half-written or invalid file, and a refused change leaves the file as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from recommender.errors import ConfigError
from recommender.settings.app import AppConfig
from recommender.settings.loading import load_config

ConfigDocument = dict[str, object]


def read_document(path: Path) -> ConfigDocument:
    """The YAML mapping in ``path`` as written (``{}`` for an empty file). Raises ConfigError when it is not
    a mapping or not YAML, OSError when it cannot be read."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level is not a mapping")
    return document


@dataclass(frozen=True)
class StagedConfig:
    """A validated replacement of ``path``, written to ``staged`` and not yet in place."""

    path: Path
    staged: Path
    config: AppConfig

    def commit(self) -> AppConfig:
        """Rename the staged file over ``path`` (atomic on one file system); returns its configuration."""
        self.staged.replace(self.path)
        return self.config

    def discard(self) -> None:
        """Remove the staged file; ``path`` stays as it was."""
        self.staged.unlink(missing_ok=True)


def stage_document(path: Path, document: ConfigDocument) -> StagedConfig:
    """Write ``document`` beside ``path`` and validate it. Raises ConfigError (the staged file removed) when
    it is not a valid configuration; the caller commits or discards the result."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    try:
        config = load_config(staged)
    except BaseException:  # invalid, or interrupted: never leave the staged file behind
        staged.unlink(missing_ok=True)
        raise
    return StagedConfig(path, staged, config)


def write_document(path: Path, document: ConfigDocument) -> AppConfig:
    """Replace ``path`` with ``document`` once it validates; returns its configuration. Raises ConfigError
    (``path`` unchanged) when it does not."""
    return stage_document(path, document).commit()
