"""Pure ASGI layers: the request guard (a malformed query string 400, bodies 413/415/408) and
the hot lane (leases, event batches)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.api._scope import BODY_KEY, HOT_KEY, HOT_MATCH, ROUTE_KEY
from loom.api.errors import error_response, stored_error_response, unexpected_error_response
from loom.errors import (
    LoomError,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationError,
)

__all__ = ["BodyGuard", "HotLane", "hot", "read_body"]


_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


async def _send_error(scope: Scope, receive: Receive, send: Send, err: LoomError) -> None:
    """Answer before the app runs (the body was refused; the connection is not reused)."""
    await error_response(err, {"connection": "close"})(scope, receive, send)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(
    scope: Scope, receive: Receive, send: Send, max_bytes: int, timeout: float = 30.0
) -> bytes | None:
    """A mutating request's whole body, or None after answering 413/415/408 (or a
    disconnect).

    The limit is checked against ``Content-Length`` first and against the bytes actually
    received; a non-empty body must be JSON; a body that stalls ``timeout`` seconds between
    two chunks is answered 408 (a slow client otherwise holds its connection forever).
    """
    length = content_type = None
    for name, value in scope["headers"]:
        if name == b"content-length" and length is None:
            length = value
        elif name == b"content-type" and content_type is None:
            content_type = value
    if length is not None and length.isdigit() and (len(length) > 18 or int(length) > max_bytes):
        await _send_error(scope, receive, send, _too_large(max_bytes))
        return None
    chunks: list[bytes] = []
    size = 0
    more = True
    loop = asyncio.get_running_loop()
    try:
        # One timer for the whole body, pushed back after every chunk (asyncio.wait_for per
        # chunk would start a task each time: a measurable share of a lease request).
        async with asyncio.timeout(timeout) as deadline:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
                if more:
                    deadline.reschedule(loop.time() + timeout)
    except TimeoutError:
        await _send_error(scope, receive, send, _body_timeout(timeout))
        return None
    if size > max_bytes:
        await _send_error(scope, receive, send, _too_large(max_bytes))
        return None
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if body.strip():
        media = (content_type or b"").decode("latin-1")
        if not _is_json(media):
            await _send_error(
                scope,
                receive,
                send,
                UnsupportedMediaType(
                    "request bodies must be JSON (Content-Type: application/json)",
                    content_type=media[:100],
                ),
            )
            return None
    return body


def _body_timeout(timeout: float) -> RequestTimeout:
    return RequestTimeout(f"request body stalled for {timeout:g} seconds", kind="body_timeout")


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds {max_bytes} bytes", max_bytes=max_bytes)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _has_nameless_parameter(query: bytes) -> bool:
    """Whether a raw query string holds a parameter with an empty name (``?=x``, ``?a=1&=x``).

    Such a string is malformed (there is no parameter it could mean), so every route answers
    it 400 rather than ignoring it as an unknown parameter. Empty pieces (``?a=1&&b=2``, a
    trailing ``&``) hold no parameter at all and stay harmless, as in every query parser."""
    return query.startswith(b"=") or b"&=" in query


def _nameless_parameter() -> ValidationError:
    return ValidationError(
        "malformed query string: a parameter has an empty name", kind="invalid_parameter"
    )


class BodyGuard:
    """The outermost check of every request, before routing and authentication: refuses a
    query string with a nameless parameter (400 ``invalid_parameter``), then reads a mutating
    request's body up to ``max_bytes`` and replays it to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nameless_parameter(scope.get("query_string", b"")):
            await _send_error(scope, receive, send, _nameless_parameter())
            return
        if (
            scope["type"] != "http"
            or scope["method"] not in _WITH_BODY
            # The dashboard's HTML forms (urlencoded, a few fields) read their own bodies.
            or scope["path"].startswith("/ui/")
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(scope, receive, send, self.max_bytes, self.timeout)
        if body is not None:
            scope[BODY_KEY] = body
            await self.app(scope, _replay(body, receive), send)


Endpoint = Callable[[Request], Awaitable[Response]]
_HOT = "loom_hot"


def hot(endpoint: Endpoint) -> Endpoint:
    """Mark a ``POST`` handler (registered on an ``APIRouter`` as usual, which declares it
    in the OpenAPI document) to be served by :class:`HotLane` too: the one declaration yields
    both. Such a handler takes the bare ``Request`` and parses its own body after the access
    check (``loom.api.bodies.parse_body``), so both paths answer alike."""
    setattr(endpoint, _HOT, True)
    return endpoint


class HotLane:
    """Serves the hot ``POST`` endpoints ahead of the framework's routing machinery.

    Agents call claim, heartbeat, release and allocate far more often than anything else, and
    event batches carry hundreds of events each. Through the full stack (exception
    middleware, exit stack, route matching, dependency solving, request/response wrappers)
    each request paid ~35 µs before its handler ran. The lane is the innermost middleware
    of the app: every middleware outside it (the body guard, and any added later) still
    sees these requests; it then runs the *same* endpoint function the router would (the
    routes stay registered, and in the OpenAPI document), with the same error rendering
    (:func:`~loom.api.errors.stored_error_response`); anything else goes on to the router.
    ``create_app(hot_lane=False)`` leaves it out; tests/api/test_hot_lane.py checks that both
    paths give the same answers.
    """

    def __init__(
        self, app: ASGIApp, routes: Iterable[BaseRoute], max_bytes: int, timeout: float = 30.0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.routes: list[tuple[re.Pattern[str], Endpoint, str]] = [
            (route.path_regex, route.endpoint, route.path)
            for route in routes
            if isinstance(route, APIRoute)
            and getattr(route.endpoint, _HOT, False)
            and route.methods == {"POST"}
        ]

    def serves(self, scope: Scope) -> bool:
        """Whether this request is one of the lane's (a ``POST`` to a hot route). The match
        is kept in the scope for :meth:`__call__` (one regex match per request, not two)."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return False
        path = scope["path"]
        for route in self.routes:
            match = route[0].match(path)
            if match is not None:
                scope[HOT_MATCH] = (route, match)
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = scope.pop(HOT_MATCH, None)
        if matched is not None:
            (_, endpoint, template), match = matched
            scope[ROUTE_KEY] = template  # the metrics' route label
            await self._serve(endpoint, match.groupdict(), scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            for pattern, endpoint, template in self.routes:
                match = pattern.match(path)
                if match is not None:
                    scope[ROUTE_KEY] = template  # the metrics' route label
                    await self._serve(endpoint, match.groupdict(), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(
        self,
        endpoint: Endpoint,
        params: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body = scope.get(BODY_KEY)  # read by the body guard
        if body is None:
            body = await read_body(scope, receive, send, self.max_bytes, self.timeout)
            if body is None:
                return
            scope[BODY_KEY] = body
        scope["path_params"] = params
        scope[HOT_KEY] = True
        request = Request(scope, _replay(body, receive))
        try:
            try:
                response = await endpoint(request)
            except LoomError as err:
                response = await stored_error_response(request, err)
        except Exception as exc:  # the endpoint's, or storing its error's: the 500 envelope
            response = unexpected_error_response(exc)
        await response(scope, receive, send)
