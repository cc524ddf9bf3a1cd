"""uvicorn's HTTP protocol, with Loom's error envelope, a header timeout and a connection cap.

uvicorn answers a request it cannot parse (NUL in a header, a bad ``Content-Length``, an
unknown method, ``Transfer-Encoding`` with ``Content-Length``...) itself, in plain text,
before any application runs. These subclasses of its protocols answer with the JSON envelope
of API.md §0 instead (``400 bad_request``, kind ``malformed_request``), close connections
whose request head does not arrive within ``header_timeout`` seconds (``408``, including
connections that never send a byte: uvicorn keeps those open forever), and refuse
connections beyond ``max_connections`` (``503``). What cannot be answered at all: a peer
that closed or reset the connection, and bytes that are not HTTP/1 (TLS on the plain port),
which get the same 400 the moment the parser gives up.

The httptools flavour also hands each request a ``loom.chunks`` ASGI extension
(:class:`ChunkSink`): a streaming response (the event stream) can write a chunk straight to
the connection when the connection takes it without waiting, so the stream's fan-out does
not wake one task per subscriber and event batch. Through it a long-lived response also
learns that the server is shutting down (uvicorn's graceful shutdown would otherwise wait
its whole timeout for an open event stream, then cancel it with a traceback), and can drop
a peer that stopped reading without leaving a half-sent response behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # uvicorn prefers httptools when it is installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a uvicorn[standard] extra
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

__all__ = ["ChunkSink", "envelope_response", "protocol_class"]

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}
_CODES = {400: "bad_request", 408: "request_timeout", 503: "service_unavailable"}


def envelope_response(status: int, kind: str, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying the error envelope; the connection then closes."""
    body = json.dumps(
        {"error": message, "code": _CODES[status], "kind": kind}, separators=(",", ":")
    ).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class _Limits:
    """The timers and the cap, shared by both protocol flavours."""

    header_timeout: float = 10.0
    max_connections: int = 1024
    _head_timer: asyncio.TimerHandle | None = None
    transport: Any
    server_state: Any
    loop: asyncio.AbstractEventLoop

    def _answer(self, status: int, kind: str, message: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(envelope_response(status, kind, message))
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._answer(
            408,
            "header_timeout",
            f"no complete request head within {self.header_timeout:g} seconds",
        )

    def _over_capacity(self) -> bool:
        if len(self.server_state.connections) <= self.max_connections:
            return False
        self._answer(503, "too_many_connections", "too many open connections; retry later")
        return True


def _malformed(msg: str) -> str:
    return f"malformed HTTP request ({msg.rstrip('.')})"


class ChunkSink:
    """The ``loom.chunks`` extension of one request: :meth:`write_now` writes one chunk of a
    chunked response body at once, or answers False (and writes nothing) when that would mean
    waiting: the peer is not reading (the transport is paused), the connection is gone, or
    the response is not a started chunked one. The caller then sends through ASGI as usual.

    ``on_shutdown``: set by a long-lived response; called (once, on the loop) when the
    server begins its graceful shutdown while this request's response is still open."""

    __slots__ = ("cycle", "on_shutdown")

    def __init__(self, cycle: Any) -> None:
        self.cycle = cycle
        self.on_shutdown: Callable[[], None] | None = None

    def abort(self) -> None:
        """Drop the connection now (a peer that stopped reading): nothing more is sent, and
        the response counts as ended by the peer, not as one the application left unfinished
        (the connection is marked lost on the loop's next turn)."""
        self.cycle.transport.abort()

    def shutting_down(self) -> None:
        callback, self.on_shutdown = self.on_shutdown, None
        if callback is not None and not self.cycle.response_complete:
            callback()

    def write_now(self, body: bytes) -> bool:
        cycle = self.cycle
        if (
            not body
            or cycle.flow.write_paused
            or cycle.disconnected
            or cycle.response_complete
            or cycle.chunked_encoding is not True
            or cycle.transport.is_closing()
        ):
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True


if HttpToolsProtocol is not None:

    class LoomHttpToolsProtocol(_Limits, HttpToolsProtocol):
        _sink: ChunkSink | None = None  # the current request's

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if not self._over_capacity():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle.scope is self.scope:  # (not an upgrade)
                self._sink = ChunkSink(cycle)
                self.scope["extensions"] = {"loom.chunks": self._sink}  # type: ignore[dict-item]

        def shutdown(self) -> None:
            """The server's graceful shutdown: an open long-lived response is told to end
            (then the connection closes, as uvicorn closes any after its response)."""
            super().shutdown()
            sink = self._sink
            if sink is not None and sink.cycle is self.cycle:
                sink.shutting_down()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # waiting for the next request's head (keep-alive)

        def send_400_response(self, msg: str) -> None:
            self._answer(400, "malformed_request", _malformed(msg))


class LoomH11Protocol(_Limits, H11Protocol):
    """The h11 flavour (when httptools is absent): the envelope and the connection cap."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._over_capacity()

    def send_400_response(self, msg: str) -> None:
        self._answer(400, "malformed_request", _malformed(msg))


def protocol_class(header_timeout: float, max_connections: int) -> type[Any]:
    """The protocol class for ``uvicorn.Config(http=...)``, configured with these limits.

    The limits are class attributes set in the calling process (a module-level class is
    what a ``--workers`` config can carry to its spawned workers: each worker calls this
    again with its settings)."""
    cls: type[Any] = LoomHttpToolsProtocol if HttpToolsProtocol is not None else LoomH11Protocol
    cls.header_timeout = header_timeout
    cls.max_connections = max_connections
    return cls
