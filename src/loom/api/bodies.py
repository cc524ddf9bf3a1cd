"""Request bodies of the handlers that take the bare ``Request`` (the hot lane's):
parsing with the pydantic models and the error envelope FastAPI routes give, and the
OpenAPI description of such a body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request

from loom.api._scope import BODY_KEY
from loom.api.models import PLAIN_TEXT, is_plain_json_text
from loom.errors import Unprocessable, ValidationError

__all__ = ["parse_body"]

M = TypeVar("M", bound=BaseModel)


async def parse_body(
    request: Request, model: type[M], bad_request: Mapping[str, str] | None = None
) -> M:
    """The body as ``model``: 400 invalid_json if it is not JSON; a schema violation is 422,
    or 400 with the kind ``bad_request`` names for the field at fault."""
    raw = request.scope.get(BODY_KEY)
    if raw is None:
        raw = await request.body()
    try:
        return model.model_validate_json(
            raw, context=PLAIN_TEXT if is_plain_json_text(raw) else None
        )
    except PydanticValidationError as exc:
        errors = [
            {"loc": ["body", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            raise ValidationError("malformed JSON body", kind="invalid_json") from None
        where = ".".join(errors[0]["loc"][1:]) or "body"
        field = errors[0]["loc"][1] if len(errors[0]["loc"]) > 1 else ""
        if bad_request and field in bad_request:
            raise ValidationError(
                f"invalid {where}: {errors[0]['msg']}",
                kind=bad_request[field],
                field=field,
                errors=errors,
            ) from None
        raise Unprocessable(
            f"invalid {where}: {errors[0]['msg']}", kind="validation_error", errors=errors
        ) from None
