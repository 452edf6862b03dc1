"""Where Personalizer's API lives: the API version is part of the path (REST v1.0, v1.1-preview.x, as the
older SDK ``azure-cognitiveservices-personalizer`` calls it) or a query parameter on unversioned paths (the
current SDK ``azure-ai-personalizer`` sends ``/personalizer/rank?api-version=2022-09-01-preview``).

``add_route`` registers one view under every prefix that has the operation: multi-slot and the newer
administration operations exist from v1.1-preview.1 on.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import PathConverter

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


_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def unknown_path(rest: str) -> None:
    """Any other path under ``/personalizer/``: 405 where another method has the path, else 404; in
    Personalizer's error shape (this view is on its blueprint), as its SDKs parse every error."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    here = request.endpoint
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != here:
            allowed.append(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    versions = f"{', '.join(V1 + PREVIEW)} in the path, or ?{API_VERSION}={', '.join(QUERY_VERSIONS)}"
    raise ApiError(404, "ResourceNotFound", f"no Personalizer operation at {request.path!r} (API versions: "
                   f"{versions})")  # fmt: skip


class _EveryPath(PathConverter):
    """werkzeug's ``path`` converter, newlines included (its ``.`` stops at one): a path with an encoded
    newline under /personalizer/ still gets Personalizer's error shape."""

    regex = r"[^/][\s\S]*?"


def add_fallback(bp: Blueprint) -> None:
    """Route every other path under ``/personalizer/`` to ``unknown_path`` (werkzeug tries its rules with
    converters that match across ``/`` after all others), as an endpoint of ``bp``: its error handlers apply."""

    @bp.record_once
    def _fallback(state: BlueprintSetupState) -> None:
        state.app.url_map.converters["every_path"] = _EveryPath
        state.app.add_url_rule("/personalizer/<every_path:rest>", endpoint=f"{bp.name}.{unknown_path.__name__}",
                               view_func=unknown_path, methods=_METHODS)  # fmt: skip
