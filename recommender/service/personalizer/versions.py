"""Where Personalizer's API lives: the API version is part of the path (REST v1.0, v1.1-preview.x, as the
older SDK ``azure-cognitiveservices-personalizer`` calls it) or a query parameter on unversioned paths (the
current SDK ``azure-ai-personalizer`` sends ``/personalizer/rank?api-version=2022-09-01-preview``).

``add_route`` registers one view under every prefix that has the operation: multi-slot and the newer
administration operations exist from v1.1-preview.1 on.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, request

from recommender.service.errors import ApiError

V1 = ("v1.0",)
PREVIEW = ("v1.1-preview.1", "v1.1-preview.2", "v1.1-preview.3")
QUERY_VERSIONS = ("2022-09-01-preview",)  # api-version values of the unversioned paths
API_VERSION = "api-version"


def check_api_version(version: str | None) -> None:
    """On an unversioned path (``version`` None) the ``api-version`` query parameter must be one we serve."""
    if version is not None:
        return
    given = request.args.get(API_VERSION)
    if given not in QUERY_VERSIONS:
        raise ApiError(400, "BadRequest", f"{API_VERSION}: {given!r} is not a supported API version (supported: "
                       f"{', '.join(QUERY_VERSIONS)}, or a version in the path: {', '.join(V1 + PREVIEW)})",
                       field=API_VERSION)  # fmt: skip


def add_route(bp: Blueprint, path: str, view: Callable[..., object], methods: list[str], *, since_preview: bool = False
              ) -> None:  # fmt: skip
    """Serve ``view`` at ``/personalizer/<version><path>`` for each path version that has it, and at the
    unversioned ``/personalizer<path>`` (``version=None``)."""
    versions = PREVIEW if since_preview else V1 + PREVIEW
    choice = ", ".join(f'"{v}"' for v in versions)
    endpoint = view.__name__
    bp.add_url_rule(f"/personalizer/<any({choice}):version>{path}", endpoint=endpoint, view_func=view,
                    methods=methods)  # fmt: skip
    bp.add_url_rule(f"/personalizer{path}", endpoint=endpoint, view_func=view, methods=methods,
                    defaults={"version": None})  # fmt: skip
