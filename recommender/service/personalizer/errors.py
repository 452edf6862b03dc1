"""Personalizer's error body for the routes of its API: ``{"error": {"code", "message", "target", "details"}}``.

The shape the SDKs parse (azure-core's ``HttpResponseError`` reads ``error.code`` and ``error.message``;
msrest's ``ErrorResponseException`` deserializes ``ErrorResponse``), so a client catches its SDK's own typed
error carrying our message. The routes raise our ``ApiError`` as everywhere in the service; these handlers,
registered on the Personalizer blueprints, render it in Personalizer's shape. Our stable codes map onto
Personalizer's (``BadRequest``, ``ResourceNotFound``...); a code that is already Personalizer's (the routes
raise ``InvalidRankRequest``, ``OperationNotAllowed``...) passes as it is.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response
from werkzeug.exceptions import HTTPException

from recommender.service.errors import ApiError, json_response

log = logging.getLogger(__name__)

# Our codes (recommender.service.errors, the /v1 routes' helpers) -> Personalizer's.
_CODES = {
    "invalid_request": "BadRequest",
    "invalid_json": "BadRequest",
    "unauthorized": "Unauthorized",
    "unknown_event": "ResourceNotFound",
    "duplicate_event": "Conflict",
    "unavailable": "ServiceUnavailable",
    "not_found": "ResourceNotFound",
    "method_not_allowed": "MethodNotAllowed",
    "request_entity_too_large": "RequestEntityTooLarge",
}


def personalizer_code(code: str) -> str:
    return _CODES.get(code, code)


def error_body(code: str, message: str, target: str | None = None, details: list[dict[str, Any]] | None = None
               ) -> dict[str, Any]:  # fmt: skip
    error: dict[str, Any] = {"code": personalizer_code(code), "message": message}
    if target is not None:
        error["target"] = target
    if details:
        error["details"] = [
            {"code": error["code"], "message": f"{d['field']}: {d['message']}", "target": d["field"]} for d in details
        ]
    return {"error": error}


def register(bp: Blueprint) -> None:
    """Personalizer's error shape for every error raised while serving ``bp``'s routes."""

    @bp.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return json_response(error_body(error.code, error.message, error.field, error.details), error.status,
                             error.headers)  # fmt: skip

    @bp.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return json_response(error_body(code, error.description or error.name), error.code or 500, headers)

    @bp.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error while serving a Personalizer API request")
        return json_response(error_body("InternalServerError", "the service failed on this request; it was logged"),
                             500)  # fmt: skip
