"""The suite's in-process client (tests/_testclient.py) answers exactly as Starlette's
``TestClient`` does: same status, headers and body for the same requests, errors included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from _testclient import OneHopTestClient
from conftest import ADMIN, ORG, REPO, FakeClock, fresh_sqlite_file, make_settings
from loom.api.app import create_app

H = {"Authorization": f"Bearer {ADMIN}"}
P = f"/api/v1/projects/{ORG}/{REPO}"
JSON_H = {**H, "Content-Type": "application/json"}
PUSH = {"proposal": "# p\n", "tasks": "- [ ] 1.1 t\n", "specs": []}


def _exchange(client: Any) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/health", {}),
        ("HEAD", "/api/v1/health", {}),
        ("POST", f"{P}/changes/001-01_a/sync", {"json": PUSH, "headers": H}),
        ("POST", f"{P}/changes/001-01_a/sync", {"json": PUSH, "headers": H}),  # 428
        ("POST", f"{P}/changes/001-01_a/claim", {"json": {"holder": "a"}, "headers": H}),
        ("POST", f"{P}/changes/001-01_a/claim", {"json": {"holder": "b"}, "headers": H}),  # 409
        ("POST", f"{P}/changes/001-01_a/claim", {"content": b"{nope", "headers": JSON_H}),  # 400
        ("GET", f"{P}/changes", {"headers": H}),
        ("GET", f"{P}/changes/001-01_a", {"headers": H, "params": {"x": "é y"}}),
        ("GET", f"{P}/changes/no-such_id!", {"headers": H}),  # 400 or 404
        ("GET", f"{P}/changes", {}),  # 401
        ("GET", "/api/v1/openapi.json", {}),
        ("GET", "/ui/static/loom.css", {}),
    ]
    out = []
    for method, path, kwargs in calls:
        r = client.request(method, path, **kwargs)
        headers = sorted((k, v) for k, v in r.headers.items() if k not in ("date", "x-request-id"))
        out.append((r.status_code, headers, r.content))
    return out


def test_one_hop_client_answers_as_starlettes_test_client(tmp_path: Path) -> None:
    answers = []
    for cls in (TestClient, OneHopTestClient):
        folder = tmp_path / cls.__name__
        url = fresh_sqlite_file(folder / "loom.db")
        app = create_app(make_settings(url, folder), clock=FakeClock())
        with cls(app, raise_server_exceptions=False) as client:
            answers.append(_exchange(client))
    starlette, one_hop = answers
    statuses = [200, 200, 200, 428, 200, 409, 400, 200, 200, 400, 401, 200, 200]
    assert [a[0] for a in one_hop] == statuses
    assert one_hop == starlette
