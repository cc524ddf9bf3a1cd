"""A ``TestClient`` whose plain requests cross to the app's event loop once, not eight times.

Starlette's ``TestClient`` runs the app on an event loop in a portal thread and streams the
response back: a request makes about eight blocking calls into that thread (events, a memory
stream, a cancel scope, the app task, each body chunk), each a hand-off between two threads
that need the GIL. Measured here: 1.6-1.8 ms of CPU per request, most of it in those
hand-offs, over some ten thousand in-process requests a run. :class:`OneHopTestClient` runs
the whole exchange in one call instead: the same ASGI app, scope, request body and
``http.disconnect`` after the response, the response read whole.

Anything that may stream for long (the event streams: a path ending in ``/stream``, or a
request that accepts ``text/event-stream``) and WebSocket upgrades take Starlette's own
path, as does every request of a plain ``TestClient``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote

import anyio
from starlette import testclient as _starlette
from starlette.testclient import TestClient, _TestClientTransport

httpx: Any = _starlette.httpx  # the HTTP client package the TestClient is built on (httpx2 here)

__all__ = ["OneHopTestClient"]


def _streams(request: Any) -> bool:
    return (
        request.url.scheme not in ("http", "https")
        or request.url.path.endswith("/stream")
        or "text/event-stream" in request.headers.get("accept", "")
    )


class _OneHopTransport(_TestClientTransport):
    def handle_request(self, request: Any) -> Any:
        if _streams(request):
            return super().handle_request(request)
        url = request.url
        port = url.port or {"http": 80, "https": 443}[url.scheme]
        headers = [] if "host" in request.headers else [(b"host", url.netloc)]
        headers += [(k.lower().encode(), v.encode()) for k, v in request.headers.multi_items()]
        scope: dict[str, Any] = {
            "type": "http",
            "http_version": "1.1",
            "method": request.method,
            "path": unquote(url.path),
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "root_path": self.root_path,
            "scheme": url.scheme,
            "query_string": url.query,
            "headers": headers,
            "client": self.client,
            "server": [url.raw_host.decode("ascii"), port],
            "extensions": {"http.response.debug": {}},
            "state": self.app_state.copy(),
        }
        body = request.read()
        with self.portal_factory() as portal:
            start, chunks, error = portal.call(self._exchange, scope, body)
        if error is not None and self.raise_server_exceptions:
            raise error
        if start is None:
            return httpx.Response(500, headers=[], stream=httpx.ByteStream(b""), request=request)
        # A stream, not ``content=``: httpx would add a Content-Length the app did not send.
        content = b"".join(chunks) if request.method != "HEAD" else b""
        return httpx.Response(
            start["status"],
            headers=[(k.decode(), v.decode()) for k, v in start.get("headers", [])],
            stream=httpx.ByteStream(content),
            request=request,
        )

    async def _exchange(
        self, scope: dict[str, Any], body: bytes
    ) -> tuple[MutableMapping[str, Any] | None, list[bytes], Exception | None]:
        done = anyio.Event()
        sent = False
        start: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # as Starlette's: the disconnect comes after the response
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                assert start is None, 'Received multiple "http.response.start" messages.'
                start = message
            elif message["type"] == "http.response.body":
                assert start is not None, 'Received "http.response.body" before its start.'
                assert not done.is_set(), 'Received "http.response.body" after the last.'
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    done.set()

        error: Exception | None = None
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # as Starlette's: raised or answered 500 by the caller
            error = exc
        finally:
            done.set()
        return start, chunks, error


class OneHopTestClient(TestClient):
    """``TestClient`` with :class:`_OneHopTransport` (same arguments)."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        old = self._transport
        assert isinstance(old, _TestClientTransport)
        self._transport = _OneHopTransport(
            old.app,
            portal_factory=old.portal_factory,
            raise_server_exceptions=old.raise_server_exceptions,
            root_path=old.root_path,
            app_state=old.app_state,
            client=old.client,
        )
