"""One model version's directory: the VW model file and its metadata, written once and read with checks.

``write_model_dir`` writes ``model.vw`` (VW's --save_resume file) and ``metadata.json`` (``ModelVersion``:
id, VW arguments and version, policy config, the model's own exploration, feature schema and its hash, groups,
events seen, parent, the model's sha256, the trainer's checkpoint) into a directory, fsynced and renamed into
place.
``read_model_dir`` loads it back as a Policy after checking the checksum (``ModelCorruptError``) and, when the
caller says which feature groups it serves with, the schema (``ModelSchemaMismatchError``), and gives VW the
model's own exploration (``ModelVersion.model_exploration``) whatever exploration it serves. The versioned
store of such directories, with its ``current`` pointer, is ``recommender.policy.model_store``.
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
from recommender.settings.policy import ExplorationSettings, PolicyConfig, exploration_errors, parse_exploration

log = logging.getLogger(__name__)

METADATA_FORMAT = 1
MODEL_FILE = "model.vw"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class ModelVersion:
    """One published model's metadata. ``path`` is its directory.

    ``policy``: the PolicyConfig served when the version was saved. ``model_exploration``: the exploration VW's
    reduction inside ``model.vw`` was built with (the model's own; ``vw_args`` is its command line). The two
    differ only in fields the policy rescales (``ExplorationSettings.rescaled``: SquareCB's gamma_scale).
    Metadata written before it was recorded has none: the model's own is then ``policy``'s exploration, since
    no field VW stores could change on a trained model then.
    """

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
    # The exploration VW's reduction was built with; None in metadata written before it was recorded.
    recorded_model_exploration: Mapping[str, Any] | None = None

    @property
    def exploration(self) -> Mapping[str, Any]:
        """The exploration served when the version was saved."""
        return self.policy.get("exploration", {})

    @property
    def model_exploration(self) -> Mapping[str, Any]:
        """The exploration VW's reduction in ``model.vw`` was built with (see the class docstring)."""
        if self.recorded_model_exploration is not None:
            return self.recorded_model_exploration
        return self.exploration

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
            "model_exploration": dict(self.model_exploration),
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
                recorded_model_exploration=(
                    dict(data["model_exploration"]) if data.get("model_exploration") is not None else None
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCorruptError(f"{path / METADATA_FILE}: invalid model metadata: {exc!r}") from exc


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version_files(
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
    own = policy.model_exploration
    version = ModelVersion(
        id=version_id,
        created_at=datetime.now(UTC),
        vw_args=tuple(policy.config.model_copy(update={"exploration": own}).vw_args()),
        vw_version=vw_version(),
        policy=policy.config.model_dump(mode="json", by_alias=True),
        schema_hash=builder.schema_hash,
        feature_schema=builder.schema,
        event_range=event_range if event_range is not None else policy.events_seen,
        parent_version=policy.model_version or None,
        model_sha256=hashlib.sha256(model_bytes).hexdigest(),
        path=directory,
        checkpoint=checkpoint,
        recorded_model_exploration=own.as_dict(),
    )
    document = version.as_dict()
    document["groups"] = {
        "user": builder.user_group.model_dump(mode="json"),
        "item": builder.item_group.model_dump(mode="json"),
    }
    metadata_path = directory / METADATA_FILE
    metadata_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    fsync_file(model_path)
    fsync_file(metadata_path)
    policy.mark_saved(version_id)
    return version


def write_model_dir(policy: Policy, directory: Path, *, event_range: EventRange | None = None) -> ModelVersion:
    """Save ``policy`` as a model directory (must not exist); written beside it and renamed into place."""
    if directory.exists():
        raise ModelStoreError(f"{directory} already exists; a model directory is written once")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        version = write_version_files(policy, staging, event_range)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(directory.parent)
    return with_path(version, directory)


def with_path(version: ModelVersion, path: Path) -> ModelVersion:
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
    ``exploration``: serve these settings (same rules as ``Policy.with_exploration``); left out, the ones
    served when the version was saved. Either way VW runs with the model's own (``model_exploration``).
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
        own = parse_exploration(version.model_exploration)
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
            raise ExplorationChangeError(f"invalid exploration settings: {exploration_errors(exc)}") from exc
        refusal = own.change_refusal(new, mode=config.mode)
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
            model_exploration=own,
        )
    except PolicyError as exc:
        raise ModelCorruptError(f"{model_path}: VW cannot load the model: {exc}") from exc
