"""A raw SSE reader for tests: plain sockets, so a test decides exactly when to disconnect."""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from conftest import ADMIN, ORG, REPO

STREAM = f"/api/v1/projects/{ORG}/{REPO}/events/stream"


def event(i: int, **extra: Any) -> dict[str, Any]:
    """A valid client audit event, told apart by ``entity_id``."""
    return {
        "v": 1,
        "ts": "2026-01-01T00:00:00.000Z",
        "entity": "task",
        "entity_id": f"{i}.1",
        "op": "status_change",
        "actor": "cli",
        "by": "@writer",
        "ctx": {"session_id": "s"},
        **extra,
    }


@dataclass
class RawStream:
    """One stream connection read by hand (chunked transfer decoding included)."""

    sock: socket.socket
    headers: dict[str, str]
    _buf: bytes = b""
    _text: str = ""
    ended: bool = False
    finished: bool = False  # the body's last chunk arrived (ended by the server, not cut)
    messages: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def close(self) -> None:
        # shutdown() first: a reader thread blocked in recv() on this socket would otherwise
        # keep the connection open after close() (the server would still be streaming).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _chunk(self) -> bytes | None:
        """The next chunk of the chunked body, None at its end or at EOF."""
        while b"\r\n" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buf += data
        size_line, _, rest = self._buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            data = self.sock.recv(65536)
            if not data:
                return None
            rest += data
        self._buf = rest[size + 2 :]
        if size == 0:
            self.finished = True
            return None
        return rest[:size]

    def next_message(self) -> tuple[int, str, dict[str, Any]] | None:
        """The next event (comments skipped); None when the server ended the stream."""
        while True:
            while "\n\n" not in self._text:
                chunk = self._chunk()
                if chunk is None:
                    self.ended = True
                    return None
                self._text += chunk.decode("utf-8")
            block, _, self._text = self._text.partition("\n\n")
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":") or not line:
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                msg = (int(fields["id"]), fields["event"], json.loads(fields["data"]))
                self.messages.append(msg)
                return msg


def open_stream(
    base_url: str,
    *,
    query: str = "",
    last_event_id: int | None = None,
    token: str = ADMIN,
    rcvbuf: int | None = None,
    timeout: float = 30.0,
    path: str = STREAM,
) -> RawStream:
    """GET the stream on a new socket and read the response head."""
    url = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((url.hostname or "127.0.0.1", url.port or 80))
    lines = [
        f"GET {path}{'?' + query if query else ''} HTTP/1.1",
        f"Host: {url.netloc}",
        f"Authorization: Bearer {token}",
        "Accept: text/event-stream",
    ]
    if last_event_id is not None:
        lines.append(f"Last-Event-ID: {last_event_id}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"no response head: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    headers[":status"] = status_line.split(" ")[1]
    return RawStream(sock, headers, _buf=rest)
