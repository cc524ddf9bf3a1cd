"""Finding 7 (and the connection part of 8): every error the server can answer is the JSON
envelope — uvicorn's protocol errors included —, HEAD works on GET routes, a database outage
is one log line, and idle or slow connections are closed."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from api.conftest import ADMIN_H, P, ok, push
from conftest import LiveServer, make_settings, start_server
from loom.settings import Settings


def _raw(server: LiveServer, data: bytes, wait: float = 5.0) -> bytes:
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=wait + 5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _envelope(response: bytes, status: int) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), response[:200]
    assert b"content-type: application/json" in head.lower(), head
    parsed: dict[str, Any] = json.loads(body)
    assert {"error", "code", "kind"} <= set(parsed)
    return parsed


HEADER_TIMEOUT = 2.0  # configured short: the 408 test waits for it twice


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (these tests only need *a* server), with a short header
    timeout set through the config file."""
    folder = tmp_path_factory.mktemp("envelope")
    config = folder / "loom.toml"
    config.write_text(f"header_timeout = {HEADER_TIMEOUT}\n")
    live = start_server(folder / "server", None, "--config", str(config))
    yield live
    live.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
        b"FROB /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    ],
)
def test_protocol_errors_answer_the_envelope(server: LiveServer, request_bytes: bytes) -> None:
    body = _envelope(_raw(server, request_bytes), 400)
    assert (body["code"], body["kind"]) == ("bad_request", "malformed_request")


@pytest.mark.slow
def test_a_connection_that_sends_nothing_is_closed_with_408(server: LiveServer) -> None:
    assert Settings.model_fields["header_timeout"].default == 10.0  # the documented default
    start = time.monotonic()
    body = _envelope(_raw(server, b"", wait=15), 408)
    assert body["kind"] == "header_timeout"
    # Closed by the configured timer: not at once, and well before the default's 10 s.
    assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - start < 10
    partial = _raw(server, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n", wait=15)
    assert _envelope(partial, 408)["kind"] == "header_timeout"


def test_head_on_get_routes(api: Any) -> None:
    ok(push(api, "001-01_a"))
    for path in ("/api/v1/health", f"{P}/changes", f"{P}/changes/001-01_a/sync"):
        get, head = api.get(path, headers=ADMIN_H), api.head(path, headers=ADMIN_H)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == get.headers["content-length"]
        assert head.headers.get("etag") == get.headers.get("etag")
    assert api.head(f"{P}/changes/001-01_a/archive", headers=ADMIN_H).status_code == 405


def test_a_database_outage_is_one_503_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from loom.api.app import create_app

    # Nothing listens on port 1: every query fails (OperationalError) with a clean 503.
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    app = create_app(make_settings(url, tmp_path), run_migrations=False)
    with TestClient(app, raise_server_exceptions=True) as client, caplog.at_level(logging.INFO):
        r = client.get(f"{P}/changes", headers=ADMIN_H)  # was re-raised after the 503
        assert r.status_code == 503 and r.json()["kind"] == "database_unavailable"
    records = [rec for rec in caplog.records if rec.name == "loom.api"]
    assert [rec.getMessage() for rec in records] == ["database unavailable: OperationalError"]
    assert records[0].exc_info is None
