"""Versioned VW models on disk, with a ``current`` pointer that serving follows.

Layout (``ModelStore(root)``)::

    <root>/versions/<id>/model.vw        the VW model file (weights + learning state, VW's --save_resume)
    <root>/versions/<id>/metadata.json   ModelVersion metadata (below)
    <root>/current                       {"version": "<id>", "updated_at": "..."}; replaced atomically
    <root>/.staging/                     versions being written (never read)

A version id is a content hash: the first 20 hex digits of the sha256 of ``model.vw``. Publishing writes
the files into ``.staging``, fsyncs them, renames the directory to ``versions/<id>`` (atomic on one file
system; an identical model already there is kept), then replaces ``current`` by writing a temporary file
and renaming it over the old one. A reader therefore sees either the old or the new current version,
never a partial one. Version directories are immutable once published; ``rollback`` only moves the pointer.

Metadata (``metadata.json``): ``id``, ``created_at`` (UTC), ``vw_args`` (the VW command line),
``vw_version``, ``policy`` (the PolicyConfig it was trained under: mode, exploration, learning,
interactions, bits, seed), ``feature_schema`` and ``schema_hash`` (see ``recommender.policy.examples``),
``groups`` (the user and item FeatureGroups), ``event_range`` (events learned from, or null),
``parent_version``, ``model_sha256`` and ``checkpoint`` (the trainer's position in the event log when it
published this version, or null; see ``recommender.learning.trainer``). The checkpoint is written in the same
metadata file as the model's checksum, so a version's weights and its position are published together.

Loading checks the checksum (``ModelCorruptError``) and, when the caller says which feature groups it
serves with, that the model was trained on the same schema (``ModelSchemaMismatchError``).

``open_model_store(config)`` is the one way to open the configured store, and ``load_serving_model`` the one
loader of the model a process serves or continues training: the service, the trainer and batch training
all start from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from features.config import FeatureGroup
from recommender.errors import (
    ExplorationChangeError,
    ModelCorruptError,
    ModelNotFoundError,
    ModelSchemaMismatchError,
    ModelStoreError,
    PolicyError,
)
from recommender.policy.examples import feature_schema, schema_hash
from recommender.policy.policy import EventRange, Policy, content_id
from recommender.policy.vw import vw_version
from recommender.settings.app import AppConfig
from recommender.settings.policy import ExplorationSettings, PolicyConfig, parse_exploration

log = logging.getLogger(__name__)

METADATA_FORMAT = 1
MODEL_FILE = "model.vw"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class ModelVersion:
    """One published model's metadata. ``path`` is its directory."""

    id: str
    created_at: datetime
    vw_args: tuple[str, ...]
    vw_version: str
    policy: Mapping[str, Any]
    schema_hash: str
    feature_schema: Mapping[str, Any]
    event_range: EventRange | None
    parent_version: str | None
    model_sha256: str
    path: Path
    # The trainer's checkpoint (which event-log files these weights have learned), or None.
    checkpoint: Mapping[str, Any] | None = None

    @property
    def exploration(self) -> Mapping[str, Any]:
        return self.policy.get("exploration", {})

    def as_dict(self) -> dict[str, Any]:
        """The metadata document as stored in ``metadata.json``."""
        return {
            "format": METADATA_FORMAT,
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "vw_args": list(self.vw_args),
            "vw_version": self.vw_version,
            "policy": dict(self.policy),
            "schema_hash": self.schema_hash,
            "feature_schema": dict(self.feature_schema),
            "event_range": self.event_range.as_dict() if self.event_range else None,
            "parent_version": self.parent_version,
            "model_sha256": self.model_sha256,
            "checkpoint": dict(self.checkpoint) if self.checkpoint is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> ModelVersion:
        try:
            return cls(
                id=str(data["id"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                vw_args=tuple(str(a) for a in data["vw_args"]),
                vw_version=str(data.get("vw_version", "")),
                policy=dict(data["policy"]),
                schema_hash=str(data["schema_hash"]),
                feature_schema=dict(data["feature_schema"]),
                event_range=EventRange.from_dict(data["event_range"]) if data.get("event_range") else None,
                parent_version=data.get("parent_version"),
                model_sha256=str(data["model_sha256"]),
                path=path,
                checkpoint=dict(data["checkpoint"]) if data.get("checkpoint") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCorruptError(f"{path / METADATA_FILE}: invalid model metadata: {exc!r}") from exc


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_files(
    policy: Policy,
    directory: Path,
    event_range: EventRange | None,
    checkpoint: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Write model.vw and metadata.json into the existing empty ``directory``; mark the policy saved."""
    model_path = directory / MODEL_FILE
    policy.write_model_file(model_path)
    model_bytes = model_path.read_bytes()
    version_id = content_id(model_bytes)
    builder = policy.builder
    version = ModelVersion(
        id=version_id,
        created_at=datetime.now(UTC),
        vw_args=tuple(policy.config.vw_args()),
        vw_version=vw_version(),
        policy=policy.config.model_dump(mode="json", by_alias=True),
        schema_hash=builder.schema_hash,
        feature_schema=builder.schema,
        event_range=event_range if event_range is not None else policy.events_seen,
        parent_version=policy.model_version or None,
        model_sha256=hashlib.sha256(model_bytes).hexdigest(),
        path=directory,
        checkpoint=checkpoint,
    )
    document = version.as_dict()
    document["groups"] = {
        "user": builder.user_group.model_dump(mode="json"),
        "item": builder.item_group.model_dump(mode="json"),
    }
    metadata_path = directory / METADATA_FILE
    metadata_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fsync_file(model_path)
    _fsync_file(metadata_path)
    policy.mark_saved(version_id)
    return version


def write_model_dir(policy: Policy, directory: Path, *, event_range: EventRange | None = None) -> ModelVersion:
    """Save ``policy`` as a model directory (must not exist); written beside it and renamed into place."""
    if directory.exists():
        raise ModelStoreError(f"{directory} already exists; a model directory is written once")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        version = _write_files(policy, staging, event_range)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(directory.parent)
    return _with_path(version, directory)


def _with_path(version: ModelVersion, path: Path) -> ModelVersion:
    return dataclasses.replace(version, path=path)


def read_metadata(directory: Path) -> tuple[ModelVersion, dict[str, Any]]:
    """The ModelVersion of a model directory and its raw metadata document."""
    path = directory / METADATA_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{directory}: no model metadata ({METADATA_FILE})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCorruptError(f"{path}: unreadable model metadata: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != METADATA_FORMAT:
        raise ModelCorruptError(f"{path}: not a model metadata document of format {METADATA_FORMAT}")
    return ModelVersion.from_dict(document, directory), document


def _schema_difference(stored: Mapping[str, Any], serving: Mapping[str, Any]) -> str:
    problems = []
    for key in sorted(set(stored) | set(serving)):
        if key in ("user", "item"):
            old, new = stored.get(key, {}), serving.get(key, {})
            for name in sorted(set(old) | set(new)):
                if name not in new:
                    problems.append(f"{key}.{name} was trained on but is not served")
                elif name not in old:
                    problems.append(f"{key}.{name} is served but was not trained on")
                elif old[name] != new[name]:
                    problems.append(f"{key}.{name} changed from {old[name]} to {new[name]}")
        elif stored.get(key) != serving.get(key):
            problems.append(f"{key} changed from {stored.get(key)!r} to {serving.get(key)!r}")
    return "; ".join(problems) or "schemas differ"


def read_model_dir(
    directory: Path,
    *,
    user_group: FeatureGroup | None = None,
    item_group: FeatureGroup | None = None,
    exploration: ExplorationSettings | Mapping[str, Any] | None = None,
) -> Policy:
    """Load the Policy saved in ``directory``.

    ``user_group``/``item_group``: the groups the caller serves with; a model trained on another schema
    is refused (ModelSchemaMismatchError). Left out, the groups stored with the model are used.
    ``exploration``: apply these settings at load (same rules as ``Policy.with_exploration``).
    """
    version, document = read_metadata(directory)
    model_path = directory / MODEL_FILE
    try:
        model_bytes = model_path.read_bytes()
    except OSError as exc:
        raise ModelCorruptError(f"{model_path}: cannot read the model file: {exc}") from exc
    if hashlib.sha256(model_bytes).hexdigest() != version.model_sha256:
        raise ModelCorruptError(f"{model_path}: checksum mismatch (the file is damaged or was modified)")
    try:
        stored_groups = document["groups"]
        users = user_group or FeatureGroup.model_validate(stored_groups["user"])
        items = item_group or FeatureGroup.model_validate(stored_groups["item"])
        config = PolicyConfig.model_validate(version.policy)
    except (KeyError, TypeError, ValidationError) as exc:
        raise ModelCorruptError(f"{directory / METADATA_FILE}: invalid model metadata: {exc}") from exc
    serving_schema = feature_schema(users, items)
    if schema_hash(serving_schema) != version.schema_hash:
        raise ModelSchemaMismatchError(
            f"model {version.id} was trained on feature schema {version.schema_hash}, "
            f"serving uses {schema_hash(serving_schema)}: {_schema_difference(version.feature_schema, serving_schema)}"
        )
    if exploration is not None:
        try:
            new = parse_exploration(exploration)
        except ValidationError as exc:
            raise ExplorationChangeError(f"invalid exploration settings: {exc}") from exc
        refusal = config.exploration.change_refusal(new)
        if refusal is not None:
            raise ExplorationChangeError(refusal)
        config = config.model_copy(update={"exploration": new})
    try:
        return Policy.from_model_file(
            model_path,
            policy_config=config,
            user_group=users,
            item_group=items,
            version=version.id,
            events_seen=version.event_range,
        )
    except PolicyError as exc:
        raise ModelCorruptError(f"{model_path}: VW cannot load the model: {exc}") from exc


class ModelStore:
    """Versioned models under ``root`` with an atomically updated ``current`` pointer.

    ``user_group``/``item_group`` (optional): the feature groups this process serves with; every
    ``load`` then refuses models trained on another schema. Safe to use from several processes: publishes
    never modify a published version, and the pointer is replaced atomically.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        user_group: FeatureGroup | None = None,
        item_group: FeatureGroup | None = None,
    ) -> None:
        self.root = Path(root)
        self.user_group = user_group
        self.item_group = item_group

    @property
    def _versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def _pointer(self) -> Path:
        return self.root / "current"

    def publish(
        self,
        policy: Policy,
        *,
        event_range: EventRange | None = None,
        make_current: bool = True,
        checkpoint: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Save ``policy`` as a new version (its id is the model's content hash) and, by default, make it
        current. ``event_range`` defaults to the events the policy has learned from; ``checkpoint`` (JSON)
        is stored in the same metadata file."""
        staging_root = self.root / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="publish-", dir=staging_root))
        try:
            version = _write_files(policy, staging, event_range, checkpoint)
            final = self._versions_dir / version.id
            if final.exists():
                # Same bytes, same id: the version is already published (content-addressed).
                shutil.rmtree(staging, ignore_errors=True)
                version = read_metadata(final)[0]
            else:
                staging.rename(final)
                _fsync_dir(self._versions_dir)
                version = _with_path(version, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if make_current:
            self._set_current(version.id)
        return version

    def _set_current(self, version_id: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        document = json.dumps({"version": version_id, "updated_at": datetime.now(UTC).isoformat()})
        fd, tmp = tempfile.mkstemp(prefix=".current.", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(document + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._pointer)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)

    def current_version(self) -> str | None:
        """The current version id, or None when nothing has been published."""
        try:
            document = json.loads(self._pointer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelCorruptError(f"{self._pointer}: unreadable current-version pointer: {exc}") from exc
        version = document.get("version") if isinstance(document, dict) else None
        if not isinstance(version, str) or not version:
            raise ModelCorruptError(f"{self._pointer}: the current-version pointer names no version")
        return version

    def version(self, version_id: str) -> ModelVersion:
        """The metadata of one version. Raises ModelNotFoundError."""
        directory = self._version_dir(version_id)
        return read_metadata(directory)[0]

    def _version_dir(self, version_id: str) -> Path:
        if not version_id or "/" in version_id or version_id.startswith("."):
            raise ModelNotFoundError(f"{version_id!r} is not a model version id")
        directory = self._versions_dir / version_id
        if not directory.is_dir():
            raise ModelNotFoundError(f"model version {version_id} does not exist in {self.root}")
        return directory

    def versions(self) -> list[ModelVersion]:
        """All readable versions, oldest first. Unreadable version directories are logged and skipped."""
        if not self._versions_dir.is_dir():
            return []
        found = []
        for directory in self._versions_dir.iterdir():
            if not directory.is_dir():
                continue
            try:
                found.append(read_metadata(directory)[0])
            except ModelStoreError as exc:
                log.warning("skipping model version directory %s: %s", directory, exc)
        return sorted(found, key=lambda v: (v.created_at, v.id))

    def load(
        self,
        version_id: str | None = None,
        *,
        exploration: ExplorationSettings | Mapping[str, Any] | None = None,
        user_group: FeatureGroup | None = None,
        item_group: FeatureGroup | None = None,
    ) -> Policy:
        """Load a version (None: the current one) as a Policy.

        Raises ModelNotFoundError, ModelCorruptError (bad checksum, metadata or VW file) or
        ModelSchemaMismatchError (trained on another feature schema than the groups given here or to
        the store). ``exploration`` applies new exploration settings at load, keeping the weights.
        """
        if version_id is None:
            version_id = self.current_version()
            if version_id is None:
                raise ModelNotFoundError(f"no current model version in {self.root}")
        return read_model_dir(
            self._version_dir(version_id),
            user_group=user_group or self.user_group,
            item_group=item_group or self.item_group,
            exploration=exploration,
        )

    def rollback(self, version_id: str) -> ModelVersion:
        """Make an existing version current again (after checking that its files are intact)."""
        directory = self._version_dir(version_id)
        version = read_metadata(directory)[0]
        model_path = directory / MODEL_FILE
        try:
            digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ModelCorruptError(f"{model_path}: cannot read the model file: {exc}") from exc
        if digest != version.model_sha256:
            raise ModelCorruptError(f"{model_path}: checksum mismatch; refusing to roll back to it")
        self._set_current(version_id)
        return version


def open_model_store(config: AppConfig, root: str | Path | None = None) -> ModelStore:
    """The model store at ``policy.model_dir`` (or ``root``), refusing models trained on another feature
    schema than the configured user and item groups."""
    return ModelStore(root or config.policy.model_dir, user_group=config.user_group, item_group=config.item_group)


def load_serving_model(
    store: ModelStore, config: AppConfig, *, fresh_if_unloadable: bool = False
) -> tuple[Policy, ModelVersion | None]:
    """The model to serve or continue training, with its version (None for a fresh model).

    The store's current version under ``config.policy.exploration``; when VW cannot apply that exploration
    to the stored weights, under the model's own (logged as an error: ops asked for a change that did not
    happen). Nothing published yet: a fresh model of ``config.policy``. A current version that cannot be
    loaded raises ModelStoreError or PolicyError, unless ``fresh_if_unloadable`` (serving must start): then
    it is logged and a fresh model is returned.
    """
    try:
        current = store.current_version()
        if current is not None:
            version = store.version(current)
            try:
                return store.load(current, exploration=config.policy.exploration), version
            except ExplorationChangeError as exc:
                log.error("the configured exploration cannot apply to model %s, keeping its own: %s", current, exc)
                return store.load(current), version
    except (ModelStoreError, PolicyError) as exc:
        if not fresh_if_unloadable:
            raise
        log.error("cannot load the current model from %s, starting from a fresh one: %s", store.root, exc)
    return Policy.create(config.policy, config.user_group, config.item_group), None
