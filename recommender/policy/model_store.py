"""Versioned VW models on disk, with a ``current`` pointer that serving follows.

Layout (``ModelStore(root)``)::

    <root>/versions/<id>/model.vw        the VW model file (weights + learning state, VW's --save_resume)
    <root>/versions/<id>/metadata.json   ModelVersion metadata (below)
    <root>/current                       {"version": "<id>", "updated_at": "...", "history": ["<id>", ...]};
                                         replaced atomically. ``history``: the last HISTORY_LENGTH current
                                         versions, oldest first, this one last
    <root>/.staging/                     versions being written, or being deleted (never read)
    <root>/arms/<experiment>/<arm>/      a separately learned experiment arm's own store, of this same layout
                                         (``arm_store``; recommender.experiments.arm_learning)

A version id is a content hash: the first 20 hex digits of the sha256 of ``model.vw``. Publishing writes
the files into ``.staging``, fsyncs them, renames the directory to ``versions/<id>`` (atomic on one file
system; an identical model already there is kept), then replaces ``current`` by writing a temporary file
and renaming it over the old one. A reader therefore sees either the old or the new current version,
never a partial one. Version directories are immutable once published; ``rollback`` only moves the pointer.

Metadata (``metadata.json``): ``id``, ``created_at`` (UTC), ``vw_args`` (the VW command line),
``vw_version``, ``policy`` (the PolicyConfig it was trained under: mode, exploration, learning,
interactions, bits, seed; the exploration is the one served), ``model_exploration`` (the exploration VW's
reduction in ``model.vw`` was built with, which every load gives VW; see ``recommender.policy.model_dir``),
``feature_schema`` and ``schema_hash`` (see ``recommender.policy.examples``),
``groups`` (the user and item FeatureGroups), ``event_range`` (events learned from, or null),
``parent_version``, ``model_sha256`` and ``checkpoint`` (the trainer's position in the event log when it
published this version, or null; see ``recommender.learning.trainer``). The checkpoint is written in the same
metadata file as the model's checksum, so a version's weights and its position are published together.

Retention (``prune``, called by the trainer after each publish with ``trainer.retention``): the store keeps
the newest ``keep_last`` versions, the pinned ones, the current version and the **rollback targets** (the
``keep_previous_currents`` most recent distinct versions that were current before it, from the pointer's
``history``);
every other version directory is moved into ``.staging`` (one rename: readers see it whole or not at all)
and deleted there.

Loading checks the checksum (``ModelCorruptError``) and, when the caller says which feature groups it
serves with, that the model was trained on the same schema (``ModelSchemaMismatchError``).

``open_model_store(config)`` is the one way to open the configured store, and ``load_serving_model`` the one
loader of the model a process serves or continues training: the service, the trainer and batch training
all start from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.config import FeatureGroup
from recommender.errors import (
    ExplorationChangeError,
    ModelCorruptError,
    ModelNotFoundError,
    ModelStoreError,
    PolicyError,
)
from recommender.policy.model_dir import (
    METADATA_FILE,
    MODEL_FILE,
    ModelVersion,
    fsync_dir,
    read_metadata,
    read_model_dir,
    with_path,
    write_version_files,
)
from recommender.policy.policy import EventRange, Policy
from recommender.settings.app import AppConfig
from recommender.settings.policy import ExplorationSettings
from recommender.settings.trainer import RetentionConfig

log = logging.getLogger(__name__)

# Current versions remembered in ``history`` (rollback targets are chosen among them): a bounded file.
HISTORY_LENGTH = 100
# Under the root: the stores of separately learned experiment arms (``ModelStore.arm_store``).
ARMS_DIR = "arms"



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

    def arm_store(self, experiment: str, arm: str) -> ModelStore:
        """The store of a separately learned experiment arm: ``<root>/arms/<experiment>/<arm>``, same layout,
        same feature groups, its own versions and ``current`` pointer. Names are the validated experiment
        and arm names (letters, digits, ``_.-``); anything else raises ModelStoreError."""
        for name in (experiment, arm):
            if not name or name.startswith(".") or "/" in name or "\\" in name:
                raise ModelStoreError(f"{name!r} cannot name a folder of the model store")
        return ModelStore(self.root / ARMS_DIR / experiment / arm, user_group=self.user_group,
                          item_group=self.item_group)  # fmt: skip

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
        renew: bool = False,
    ) -> ModelVersion:
        """Save ``policy`` as a new version (its id is the model's content hash) and, by default, make it
        current. ``event_range`` defaults to the events the policy has learned from; ``checkpoint`` (JSON)
        is stored in the same metadata file.

        The same bytes published again are the same version, and keep the metadata of its first publication,
        unless ``renew``: then this publication's metadata (creation time, event range, checkpoint) replaces
        it. The trainer and a reset publish with ``renew``: the model's state is the same, and its position in
        the log is the newer one (a second reset of the fresh model starts from the log's position at that
        reset, not at the first; a restarted trainer does not learn files again)."""
        staging_root = self.root / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="publish-", dir=staging_root))
        try:
            version = write_version_files(policy, staging, event_range, checkpoint)
            final = self._versions_dir / version.id
            if final.exists() and renew:
                # The model file is the same bytes; the metadata file is swapped whole (a reader sees either).
                os.replace(staging / METADATA_FILE, final / METADATA_FILE)
                fsync_dir(final)
                shutil.rmtree(staging, ignore_errors=True)
                version = read_metadata(final)[0]
            elif final.exists():
                # Same bytes, same id: the version is already published (content-addressed).
                shutil.rmtree(staging, ignore_errors=True)
                version = read_metadata(final)[0]
            else:
                staging.rename(final)
                fsync_dir(self._versions_dir)
                version = with_path(version, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if make_current:
            self._set_current(version.id)
        return version

    def _set_current(self, version_id: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        history = self.history()
        if not history or history[-1] != version_id:
            history = (history + [version_id])[-HISTORY_LENGTH:]
        # One file: the pointer and the versions that were current before it change together.
        document = {"version": version_id, "updated_at": datetime.now(UTC).isoformat(), "history": history}
        self._replace_file(self._pointer, json.dumps(document))

    def _replace_file(self, path: Path, document: str) -> None:
        """Replace ``path`` by ``document`` atomically (a temporary file renamed over it, fsynced)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(document + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.root)

    def history(self) -> list[str]:
        """The last HISTORY_LENGTH versions made current (by publishes and rollbacks), oldest first; the
        current version last. Only the current version for a pointer written before histories were kept."""
        try:
            document = json.loads(self._pointer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelCorruptError(f"{self._pointer}: unreadable current-version pointer: {exc}") from exc
        if not isinstance(document, dict):
            raise ModelCorruptError(f"{self._pointer}: the current-version pointer names no version")
        history = document.get("history", [document.get("version")])
        if not isinstance(history, list) or not all(isinstance(v, str) and v for v in history):
            raise ModelCorruptError(f"{self._pointer}: not a history of current versions")
        return history

    def rollback_targets(self, count: int) -> list[str]:
        """The ``count`` most recent distinct versions that were current before the current one."""
        current = self.current_version()
        targets: list[str] = []
        for version_id in reversed(self.history()):
            if len(targets) >= count:
                break
            if version_id != current and version_id not in targets:
                targets.append(version_id)
        return targets

    def prune(self, retention: RetentionConfig) -> list[str]:
        """Delete the versions ``retention`` does not keep (see the module docstring); returns their ids,
        oldest first. The current version and the rollback targets are always kept."""
        versions = self.versions()
        current = self.current_version()
        keep = {v.id for v in versions[-retention.keep_last :]} | set(retention.pinned)
        keep.update(self.rollback_targets(retention.keep_previous_currents))
        if current is not None:
            keep.add(current)
        removed = []
        staging_root = self.root / ".staging"
        for version in versions:
            if version.id in keep:
                continue
            staging_root.mkdir(parents=True, exist_ok=True)
            doomed = Path(tempfile.mkdtemp(prefix=f"prune-{version.id}-", dir=staging_root))
            try:
                (self._versions_dir / version.id).rename(doomed / version.id)
            except FileNotFoundError:  # pruned meanwhile by another process
                doomed.rmdir()
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(version.id)
        if removed:
            fsync_dir(self._versions_dir)
            log.info("pruned %d model versions (%s); %d kept", len(removed), ", ".join(removed), len(keep))
        return removed

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
