"""``GET /events/stream``: the audit log as Server-Sent Events (API.md style, docs/stream.md).

Each message: ``id`` = the event's ``seq``, ``event`` = its ``op``, ``data`` = the event JSON
(the shape of ``GET /events``). Starts after ``Last-Event-ID`` or ``?since=`` (exclusive;
the header wins), else with the next event. A comment every ``stream_heartbeat`` seconds of silence
keeps proxies from closing an idle connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from loom.api._hub import Filters, Hub, Page, Subscriber, encode_frame
from loom.api.access import Access, project_access
from loom.api.contract import operation_id
from loom.errors import ValidationError
from loom.service import Project

__all__ = ["EventStream", "router", "start_position"]

_NO_NUL = r"^[^\x00]*$"
_PAGE = 500

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}", generate_unique_id_function=operation_id)
AccessDep = Annotated[Access, Depends(project_access)]

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A stream of Server-Sent Events, one per audit event: `id` is the event's `seq`, "
            "`event` its `op`, `data` the event as JSON (the items of `GET /events`). "
            "Lines starting with `:` are comments (the opening line and a heartbeat every "
            "15 s). The connection stays open; reconnect with `Last-Event-ID` to resume."
        ),
        "headers": {
            "X-Loom-Since": {
                "description": "The seq the stream starts after (resume from here).",
                "schema": {"type": "integer"},
            }
        },
        "content": {
            "text/event-stream": {
                # OpenAPI 3.1: for an event stream, `schema` describes one event.
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "seq"},
                        "event": {"type": "string", "description": "the event's op"},
                        "data": {
                            "type": "string",
                            "description": "the event, as an item of GET /events",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/AuditEvent"},
                        },
                    },
                },
                "example": (
                    ': loom event stream\nretry: 1000\n\nid: 42\nevent: claim\ndata: {"v":1,'
                    '"ts":"2026-02-28T10:00:00.000Z","entity":"change","entity_id":'
                    '"001-01_alpha","op":"claim","actor":"server","by":"@alice","seq":42}\n\n'
                ),
            }
        },
    }
}


def start_position(since: int | None, last_event_id: str | None) -> int | None:
    """Where the stream starts (exclusive): ``Last-Event-ID`` wins over ``since``; None is
    "from now"."""
    if last_event_id is None or last_event_id.strip() == "":
        return since
    value = last_event_id.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValidationError(
            "Last-Event-ID must be an event seq (a non-negative integer)", kind="invalid_cursor"
        )
    return int(value)


@router.get(
    "/events/stream",
    summary="Follow the audit log as Server-Sent Events (resumable with Last-Event-ID)",
    response_class=Response,
    responses=_STREAM_DOC,
)
async def stream_events(
    request: Request,
    access: AccessDep,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    entity: Annotated[str | None, Query(max_length=100, pattern=_NO_NUL)] = None,
    entity_id: Annotated[str | None, Query(max_length=200, pattern=_NO_NUL)] = None,
    scope: Annotated[str | None, Query(max_length=200, pattern=_NO_NUL)] = None,
    op: Annotated[str | None, Query(max_length=100, pattern=_NO_NUL)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    start = start_position(since, last_event_id)
    hub: Hub = request.app.state.hub
    sub = await hub.subscribe(access.project, start, Filters(entity, entity_id, scope, op))
    return EventStream(hub, access.project, sub)


Render = Callable[[dict[str, Any]], bytes]


class _ChunkSink(Protocol):
    """The server's ``loom.chunks`` ASGI extension (``loom._http_protocol.ChunkSink``)."""

    on_shutdown: Callable[[], None] | None

    def write_now(self, body: bytes) -> bool: ...

    def abort(self) -> None: ...


class EventStream(Response):
    """The ASGI response of one subscriber: its backlog, then its queue, until the client
    goes away or the hub cuts it off (see :class:`loom.api._hub.Hub`)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: Hub,
        project: Project,
        sub: Subscriber,
        render: Render = encode_frame,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
        recheck_seconds: float = 2.0,
    ) -> None:
        """``still_allowed``: asked every ``recheck_seconds`` while the stream is open; the
        stream ends when it answers False (the dashboard's session was signed out)."""
        super().__init__(
            status_code=200,
            headers={
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                # Where the stream starts (the seq it follows): a client that reconnects
                # before its first event resumes from here, not from "now".
                "X-Loom-Since": str(sub.cursor),
            },
            media_type=self.media_type,
        )
        # No Content-Length: the body is open-ended (chunked).
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.hub = hub
        self.project = project
        self.sub = sub
        self.encode = render
        self.still_allowed = still_allowed
        self.recheck_seconds = recheck_seconds
        self._chunks: _ChunkSink | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._chunks = scope.get("extensions", {}).get("loom.chunks")
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            writer = asyncio.create_task(self._write(send))
            self.sub.task = writer
            tasks: list[asyncio.Future[Any]] = [
                writer,
                asyncio.create_task(_wait_disconnect(receive)),
            ]
            if self.still_allowed is not None:
                tasks.append(asyncio.create_task(self._recheck(self.still_allowed)))
            if self._chunks is not None:  # the server shutting down ends the stream
                stopping = asyncio.get_running_loop().create_future()
                self._chunks.on_shutdown = functools.partial(_settle, stopping)
                tasks.append(stopping)
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(BaseException):
                        await task
        finally:
            self.hub.unsubscribe(self.project, self.sub)
        # A cut-off subscriber may not be reading: never wait long for the last chunk; if it
        # does not go, drop the connection (the client resumes with Last-Event-ID).
        try:
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": b"", "more_body": False}), 0.1
            )
        except Exception:
            if self._chunks is not None:
                self._chunks.abort()
                await asyncio.sleep(0)  # the connection is marked lost before we return

    async def _send(self, send: Send, body: bytes) -> None:
        self.sub.sending = True  # the hub writes nothing directly meanwhile (order)
        try:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            self.sub.sending = False

    def _direct(self, page: Page) -> bool:
        """``Subscriber.direct``: the hub's fast path (no queue, no task wake-up)."""
        sub = self.sub
        if sub.sending or page.first <= sub.cursor or self._chunks is None:
            return False
        if not self._chunks.write_now(page.body):
            return False
        sub.cursor = page.last
        sub.beat = False
        return True

    async def _write(self, send: Send) -> None:
        sub = self.sub
        await self._send(send, b": loom event stream\nretry: 1000\n\n")
        while True:  # the backlog: the same reads as GET /events, a page at a time
            backlog = await self.hub.backlog(self.project, sub.cursor)
            chunk = [self.encode(ev) for ev in backlog if sub.filters.match(ev)]
            if backlog:
                sub.cursor = int(backlog[-1]["seq"])
            if chunk:
                await self._send(send, b"".join(chunk))
            if len(backlog) < _PAGE:
                break
        if self._chunks is not None and self.encode is encode_frame:
            sub.direct = self._direct
        while True:
            await sub.ready.wait()
            chunk = []
            raw = self.encode is encode_frame
            for page in sub.take():
                sub.pending -= len(page.body)
                if page.last <= sub.cursor:
                    continue  # already sent from the backlog
                if raw and page.first > sub.cursor:
                    chunk.append(page.body)  # the common case: the page's frames, joined once
                else:
                    for seq, event, frame in page.items:
                        if seq > sub.cursor:  # else already sent from the backlog
                            chunk.append(frame if raw else self.encode(event))
                sub.cursor = page.last
            if chunk:
                sub.beat = False
                await self._send(send, b"".join(chunk))
            elif sub.beat:
                sub.beat = False
                await self._send(send, b": keepalive\n\n")

    async def _recheck(self, still_allowed: Callable[[], Awaitable[bool]]) -> None:
        """Return (ending the stream) once ``still_allowed`` says no."""
        while True:
            await asyncio.sleep(self.recheck_seconds)
            if not await still_allowed():
                return


def _settle(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
