"""A Personalizer request body, validated once at the HTTP edge with its pydantic model
(``recommender.service.personalizer.schemas``); a bad one is a 400 naming the JSON path."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from recommender.service.errors import ApiError, from_validation_error

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], code: str) -> M:
    """The request body as ``model``. Raises ApiError 400 with ``code`` (or the JSON error's own code)."""
    try:
        return model.model_validate_json(request.get_data(cache=False))
    except ValidationError as exc:
        error = from_validation_error(exc)
        raise ApiError(400, code if error.code == "invalid_request" else error.code, error.message, field=error.field,
                       details=error.details) from None  # fmt: skip
