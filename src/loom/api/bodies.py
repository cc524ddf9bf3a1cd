"""Request bodies of the handlers that take the bare ``Request`` (the hot lane's):
parsing with the pydantic models and the error envelope FastAPI routes give, and the
OpenAPI description of such a body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from loom.api import _bigjson as bigjson
from loom.api._bigjson import LARGE_BODY
from loom.api._scope import BODY_KEY
from loom.api.models import PLAIN_TEXT, is_plain_json_text
from loom.errors import Unprocessable, ValidationError

__all__ = ["parse_body"]

M = TypeVar("M", bound=BaseModel)


@overload
async def parse_body(
    request: Request, model: type[M], bad_request: Mapping[str, str] | None = None
) -> M: ...


@overload
async def parse_body(
    request: Request,
    model: type[M],
    bad_request: Mapping[str, str] | None = None,
    *,
    optional: Literal[True],
) -> M | None: ...


async def parse_body(
    request: Request,
    model: type[M],
    bad_request: Mapping[str, str] | None = None,
    *,
    optional: bool = False,
) -> M | None:
    """The body as ``model``: 400 invalid_json if it is not JSON; a schema violation is 422,
    or 400 with the kind ``bad_request`` names for the field at fault. An ``optional`` body
    may be absent (or ``null``): None.

    Every handler parses its body with this, after the access check, so a request is judged
    in one order (path syntax, token, then body) whichever route or lane serves it. A body
    above ``LARGE_BODY`` (256 KiB) is decoded on a worker thread, in small steps
    (:mod:`loom.api._bigjson`); smaller ones right here (no thread hop on the hot lane)."""
    raw = request.scope.get(BODY_KEY)
    if raw is None:
        raw = await request.body()
    if optional and raw.strip() in (b"", b"null"):
        return None
    if len(raw) > LARGE_BODY:
        return await run_in_threadpool(_parse, raw, model, bad_request, True)
    return _parse(raw, model, bad_request, False)


def _parse(raw: bytes, model: type[M], bad_request: Mapping[str, str] | None, large: bool) -> M:
    context = PLAIN_TEXT if is_plain_json_text(raw) else None
    try:
        if large:
            return model.model_validate(_decode(raw), context=context)
        return model.model_validate_json(raw, context=context)
    except PydanticValidationError as exc:
        errors = _errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            # pydantic's parser refuses some JSON the standard one reads (a lone surrogate
            # escape): decode it so, and let the model say what is wrong with the text.
            try:
                return model.model_validate(_decode(raw))
            except PydanticValidationError as again:
                errors = _errors(again)
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


def _decode(raw: bytes) -> Any:
    """The standard decoder's reading of the body (in steps when it is large)."""
    try:
        return bigjson.loads(raw) if len(raw) > LARGE_BODY else json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationError("malformed JSON body", kind="invalid_json") from None


def _errors(exc: PydanticValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": ["body", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
