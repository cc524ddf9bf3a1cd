"""The connection limits are ``loom serve`` flags and env vars, and each reaches the server:
a short header or body timeout closes a silent connection sooner than the default, a short
keep-alive closes an idle connection sooner, and the connection cap refuses the next one."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer

from conftest import ADMIN, LiveServer, start_server
from loom.cli.server import resolve_settings

pytestmark = pytest.mark.slow


def _connect(server: LiveServer) -> socket.socket:
    url = urlparse(server.url)
    assert url.hostname is not None and url.port is not None
    return socket.create_connection((url.hostname, url.port), timeout=20)


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _read_response(s: socket.socket) -> bytes:
    """One complete response (head and ``content-length`` body), the connection left open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _kind(response: bytes, status: int) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), response[:200]
    parsed: dict[str, Any] = json.loads(body)
    return str(parsed["kind"])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    s = start_server(tmp_path / "a", None, "--header-timeout", "0.5", "--body-timeout", "0.5")
    yield s
    s.stop()


def test_header_timeout_flag(server: LiveServer) -> None:
    with _connect(server) as s:
        start = time.monotonic()
        response = _read_all(s)  # sends nothing
        elapsed = time.monotonic() - start
    assert _kind(response, 408) == "header_timeout"
    assert 0.4 < elapsed < 5  # the default is 10 s


def test_body_timeout_flag(server: LiveServer) -> None:
    with _connect(server) as s:
        s.sendall(
            b"POST /api/v1/projects/acme/widgets/events HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        start = time.monotonic()
        response = _read_all(s)
        elapsed = time.monotonic() - start
    assert _kind(response, 408) == "body_timeout"
    assert 0.4 < elapsed < 5  # the default is 30 s


def test_keep_alive_and_connection_cap_env(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "b",
        None,
        extra_env={"LOOM_KEEP_ALIVE_TIMEOUT": "1", "LOOM_MAX_CONNECTIONS": "2"},
    )
    try:
        with _connect(server) as s:
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = _read_response(s)
            assert first.startswith(b"HTTP/1.1 200 "), first
            start = time.monotonic()
            assert _read_all(s) == b""  # closed by the server while idle
            elapsed = time.monotonic() - start
        assert 0.5 < elapsed < 4  # the default is 5 s
        with _connect(server) as one, _connect(server) as two, _connect(server) as three:
            assert _kind(_read_all(three), 503) == "too_many_connections"
            for s in (one, two):  # the first two are served
                s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert _read_all(s).startswith(b"HTTP/1.1 200 ")
    finally:
        server.stop()


def test_flag_then_config_file_then_default(tmp_path: Path) -> None:
    config = tmp_path / "loom.toml"
    config.write_text("header_timeout = 2.5\nmax_connections = 64\n")
    settings, _ = resolve_settings(data_dir=tmp_path, config=config, header_timeout=1.5)
    assert (settings.header_timeout, settings.max_connections) == (1.5, 64)
    assert (settings.keep_alive_timeout, settings.body_timeout) == (5, 30.0)


def test_db_pool_size_flag_then_config_file_then_default_and_its_bounds(tmp_path: Path) -> None:
    config = tmp_path / "loom.toml"
    config.write_text("db_pool_size = 5\n")
    assert resolve_settings(data_dir=tmp_path)[0].db_pool_size == 8
    assert resolve_settings(data_dir=tmp_path, config=config)[0].db_pool_size == 5
    assert resolve_settings(data_dir=tmp_path, config=config, db_pool_size=3)[0].db_pool_size == 3
    for wrong in (0, 65):
        with pytest.raises(typer.BadParameter, match="db_pool_size"):
            resolve_settings(data_dir=tmp_path, db_pool_size=wrong)
