"""Helpers for the in-process API tests (the ``api`` fixture comes from tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

import httpx

from conftest import ORG, REPO, auth

P = f"/api/v1/projects/{ORG}/{REPO}"
T0 = "2026-09-21T14:13:20.000000Z"  # the FakeClock's start
ADMIN_H = auth()

CHECKBOX = "## 1. Tasks\n- [ ] 1.1 First task\n- [x] 1.2 Done task\n"
ENHANCED = (
    "# Tasks for: 001-02_enh\n\n## Wave 1\n\n- **Depends On**: None\n\n"
    "### Task 1.1: First task\n- **Dependencies**: None\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [ ] pending\n\n"
    "### Task 1.2: Second task\n- **Dependencies**: Task 1.1\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [ ] pending\n"
)
ADDED = "## ADDED Requirements\n\n### Requirement: Remote archive\nRemote archive behavior.\n"


def push(
    api: Any,
    change_id: str,
    *,
    proposal: str | None = "# Proposal\n",
    design: str | None = None,
    tasks: str | None = CHECKBOX,
    specs: list[list[str]] | None = None,
    revision: str = "",
    headers: dict[str, str] | None = None,
    prefix: str = P,
) -> httpx.Response:
    body = {
        "proposal": proposal,
        "design": design,
        "tasks": tasks,
        "specs": [["auth", ADDED]] if specs is None else specs,
        "revision": revision,
    }
    return api.post(
        f"{prefix}/changes/{change_id}/sync", json=body, headers={**ADMIN_H, **(headers or {})}
    )


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json", resp.headers
    return resp.json()


def error(resp: httpx.Response, status: int, code: str, kind: str) -> dict[str, Any]:
    """Assert the JSON error envelope of API.md §0 and return the body."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].split(";")[0] == "application/json", resp.headers
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert body["code"] == code, body
    assert body["kind"] == kind, body
    return body


def raw_request(
    api: Any,
    method: str,
    raw_path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request straight to the ASGI app with ``raw_path`` exactly as given.

    httpx removes ``.``/``..`` segments before sending; a real uvicorn does not, so this
    builds the ASGI scope the way uvicorn does (``path`` = percent-decoded raw path).
    """
    path, _, query = raw_path.partition("?")
    data = b"" if body is None else json.dumps(body).encode()
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if body is not None:
        hdrs.setdefault("content-type", "application/json")
    hdrs["content-length"] = str(len(data))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.encode(), v.encode("latin-1")) for k, v in hdrs.items()]
        + [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    result: dict[str, Any] = {"status": 0, "headers": {}, "body": b""}

    async def run() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                result["status"] = message["status"]
                result["headers"] = {
                    k.decode().lower(): v.decode("latin-1") for k, v in message["headers"]
                }
            elif message["type"] == "http.response.body":
                result["body"] += message.get("body", b"")

        try:
            await api.app(scope, receive, send)
        except Exception:  # uvicorn logs it; the client saw whatever was sent (or a 500)
            if not result["status"]:
                result["status"] = 500

    api.portal.call(run)
    return result["status"], result["headers"], result["body"]
