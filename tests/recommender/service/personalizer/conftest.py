"""The Personalizer API's tests: the real service over HTTP with API keys, and the real SDK clients from PyPI
(azure-ai-personalizer, azure-cognitiveservices-personalizer) pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as OldPersonalizerClient
from azure.core.credentials import AzureKeyCredential
from msrest.authentication import CognitiveServicesCredentials

from tests.recommender.served_app import ServedApp, service_document

KEY = "p" * 8 + "-0123456789abcdef"


def personalizer_document(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """The test service's config: API keys on, an in-process store and bus (one worker)."""
    changes.setdefault("service", {})["api_keys"] = [KEY]
    return service_document(tmp_path, None, **changes)


@pytest.fixture
def served(serve: Callable[..., ServedApp], tmp_path: Path) -> ServedApp:
    """A single-slot service (policy.mode: cb)."""
    return serve(personalizer_document(tmp_path))


@pytest.fixture
def served_ccb(serve: Callable[..., ServedApp], tmp_path: Path) -> ServedApp:
    """A multi-slot service (policy.mode: ccb)."""
    return serve(personalizer_document(tmp_path / "ccb", policy={"mode": "ccb"}))


def _no_retries() -> dict[str, Any]:
    return {"retry_total": 0}  # a refused request is refused; azure-core would otherwise retry 5xx answers


@pytest.fixture
def client(served: ServedApp) -> Iterator[PersonalizerClient]:
    with PersonalizerClient(served.url, AzureKeyCredential(KEY), **_no_retries()) as sdk:
        yield sdk


@pytest.fixture
def admin(served: ServedApp) -> Iterator[PersonalizerAdministrationClient]:
    with PersonalizerAdministrationClient(served.url, AzureKeyCredential(KEY), **_no_retries()) as sdk:
        yield sdk


@pytest.fixture
def old_client(served: ServedApp) -> OldPersonalizerClient:
    return OldPersonalizerClient(served.url, CognitiveServicesCredentials(KEY))
