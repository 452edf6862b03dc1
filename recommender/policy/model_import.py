"""Importing a VW model trained elsewhere (Azure Personalizer's model export) as a model version.

``import_vw_model(path, store, config)`` reads the arguments VW stored in the model file
(``recommender.policy.vw.model_file_arguments``), maps them onto the ``policy`` section with
``recommender.settings.vw_arguments.policy_from_arguments`` (which refuses, naming each one, the arguments
the section cannot express), loads the file under that section with ``Policy.from_model_file`` and
publishes it with ``ModelStore.publish``: a version like any other, with metadata, checksum and the
configured feature groups, that ``policy show`` lists and ``policy rollback`` can leave.

Compatible means: VW loads the file, every stored argument maps, and the mapped section is a valid
``policy`` section. The weights are kept as they are; they apply to features hashed as the model's
trainer hashed them (the same namespace and feature names), so they carry over to requests that send
the same features, and are learned afresh for features the model never saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recommender.errors import ModelStoreError
from recommender.policy.model_dir import ModelVersion
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy, content_id
from recommender.policy.vw import model_file_arguments
from recommender.settings.app import AppConfig
from recommender.settings.policy import PolicyConfig
from recommender.settings.vw_arguments import policy_from_arguments


@dataclass(frozen=True)
class ImportedModel:
    """The published ``version``, the ``policy`` section it maps to and the ``arguments`` VW stored."""

    version: ModelVersion
    policy: PolicyConfig
    arguments: str


def import_vw_model(
    path: str | Path,
    store: ModelStore,
    config: AppConfig,
    *,
    make_current: bool = True,
    checkpoint: Mapping[str, Any] | None = None,
) -> ImportedModel:
    """Publish the VW model file at ``path`` into ``store`` (see the module docstring). ``checkpoint``: the
    trainer checkpoint stored with the version (``ModelStore.publish``), e.g. the current version's, so that
    the trainer continues from the log position it had reached instead of learning the whole log again.

    Raises ModelStoreError when the file cannot be read, PolicyError when VW cannot load it, and
    VWArgumentsError (a ConfigError) naming the stored arguments that do not map.
    """
    path = Path(path)
    try:
        model_bytes = path.read_bytes()
    except OSError as exc:
        raise ModelStoreError(f"cannot read the model file {path}: {exc.strerror or exc}") from exc
    arguments = model_file_arguments(path)
    policy_config = policy_from_arguments(arguments, config.policy)
    policy = Policy.from_model_file(
        path,
        policy_config=policy_config,
        user_group=config.user_group,
        item_group=config.item_group,
        version=content_id(model_bytes),
    )
    try:
        version = store.publish(policy, make_current=make_current, checkpoint=checkpoint)
    finally:
        policy.close()
    return ImportedModel(version, policy_config, arguments)
