"""One place that maps every error to the JSON envelope (API.md §0), framework ones included."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DisconnectionError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from loom.api._scope import ACCESS_KEY, WRITE_STARTED
from loom.api.access import valid_idempotency_key, write
from loom.api.responses import JSON
from loom.errors import (
    InternalError,
    LoomError,
    MethodNotAllowed,
    NotFound,
    Unavailable,
    ValidationError,
    error_from_envelope,
)

__all__ = [
    "error_response",
    "install_error_handlers",
    "stored_error_response",
    "unexpected_error_response",
]

log = logging.getLogger("loom.api")


def error_response(err: LoomError, headers: dict[str, str] | None = None) -> JSON:
    return JSON(err.to_envelope(), status_code=err.status, headers=headers)


_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _raise(_ctx: object, _project: object, err: LoomError) -> None:
    raise err


async def stored_error_response(request: Request, err: LoomError) -> JSON:
    """The response for an error raised before a mutating request reached its use case.

    API.md §0: every completed response below 500 of a request with an ``Idempotency-Key``
    is stored and replayed, errors included. A body the schema refuses, a bad holder or
    wave... are such responses once the token check passed: they go through the same store
    (the same key with the same request replays it; with another request it is 422
    ``idempotency_key_reused``). Errors of the path, the token or the key itself, and 5xx,
    are answered without being stored.
    """
    key = request.headers.get("idempotency-key")
    access = request.scope.get(ACCESS_KEY)  # set once the path and token checks passed
    if (
        key is None
        or access is None
        or err.status >= 500
        or request.method not in _MUTATING
        or request.scope.get(WRITE_STARTED)
        or not valid_idempotency_key(key)
    ):
        return error_response(err)
    try:
        return await write(request, access, _raise, err)
    except LoomError as answer:  # the same error, now stored; or the store's own answer
        return error_response(answer)


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


async def _on_loom_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, LoomError)
    return await stored_error_response(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSON:
    """A bad query, path or header value (FastAPI checks those after the access dependency):
    a plain 400. Bodies never get here: every handler parses its own (``parse_body``)."""
    assert isinstance(exc, RequestValidationError)
    errors = _clean_validation_errors(exc.errors())
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    return error_response(
        ValidationError(f"invalid {where}: {first['msg']}", kind="invalid_parameter", errors=errors)
    )


async def _on_http_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 404:
        return error_response(NotFound("no such route", kind="route_not_found"), headers)
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path; list them all.
        path = request.scope.get("path", "")
        methods = sorted(
            {
                m
                for route in request.app.router.routes
                if isinstance(route, Route) and route.methods and route.path_regex.match(path)
                for m in route.methods
            }
        )
        if methods:
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return error_response(MethodNotAllowed("method not allowed for this route"), headers)
    err = error_from_envelope(exc.status_code, {"error": str(exc.detail)})
    return JSON(err.to_envelope(), status_code=exc.status_code, headers=headers)


async def _on_unexpected(_request: Request, exc: Exception) -> JSON:
    return unexpected_error_response(exc)


def unexpected_error_response(exc: Exception) -> JSON:
    """503 for a database that is unreachable or failing over, else a logged 500."""
    if isinstance(exc, OperationalError | DisconnectionError):
        # Unreachable, locked or failing over: retryable, so 503 (clients retry it), and
        # without the driver's message (it can name hosts and file paths).
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(Unavailable("database unavailable", kind="database_unavailable"))
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(InternalError("internal server error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LoomError, _on_loom_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    # Database outages are handled where LoomErrors are (the exception middleware), not by
    # the catch-all: Starlette re-raises what reaches its server-error middleware, and the
    # server then logged a full traceback for every clean 503.
    app.add_exception_handler(OperationalError, _on_unexpected)
    app.add_exception_handler(DisconnectionError, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)
