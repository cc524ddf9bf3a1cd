"""Path traversal and hostile ids (ito-server.md §10 S-1, S-2, S-4): for every path parameter
of every project route, encoded ``..``, separators, NUL, control characters, overlong ids and
dot segments are answered 400 or 404 with the JSON envelope; the database is unchanged and
nothing is written under the data directory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from store._snapshot import snapshot

from .conftest import ADMIN_H, ENHANCED, P, ok, push, raw_request
from .routes_table import ROUTES, STREAMS, app_routes, fill

# Sent on the wire exactly as written (raw_request does not normalise anything).
ATTACKS = [
    "..",
    ".",
    "%2E%2E",
    "%2e",
    "..%2F..%2Fglobex%2Fgadgets",
    "%2F",
    "a%2Fb",
    "%5C",
    "..%5C..%5Cwindows",
    "%00",
    "001-01_alpha%00",
    "%0A",
    "a%0Db",
    "x" * 300,
    "0" * 300,
    "%252E%252E",
    "%C0%AE%C0%AE",
    "..;",
    "%20",
    "%7E",
    "%2A",
    "%E2%80%AE",
]
PARAM = re.compile(r"\{(\w+)\}")


def _files(root: Path) -> dict[str, bytes]:
    """Every file under the data dir except the SQLite database itself."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("loom.db")
    }


def _seed(api: Any) -> None:
    for prefix in (P, "/api/v1/projects/globex/gadgets"):
        ok(push(api, "001-01_alpha", tasks=ENHANCED, prefix=prefix))
        ok(api.put(f"{prefix}/modules/001", json={"name": "Backend"}, headers=ADMIN_H))
        ok(api.put(f"{prefix}/specs/auth", json={"markdown": "# Auth\n"}, headers=ADMIN_H))


def _check(status: int, headers: dict[str, str], body: bytes, where: str) -> None:
    assert status in (400, 404, 422), (where, status, body[:300])
    assert headers.get("content-type") == "application/json", (where, headers)
    data = json.loads(body)
    assert isinstance(data["error"], str), where
    codes = {400: "bad_request", 404: "not_found", 422: "unprocessable"}
    assert data["code"] == codes[status], (where, data)
    assert isinstance(data["kind"], str), where


def test_the_route_table_covers_every_project_route(api: Any) -> None:
    assert {(m, p) for m, p, _ in ROUTES + STREAMS} == app_routes(api.app)


def test_hostile_path_parameters_change_nothing(
    api: Any, database_url: str, tmp_path: Path
) -> None:
    _seed(api)
    before_db = snapshot(database_url)
    before_files = _files(tmp_path)
    sent = 0
    for method, template, body in ROUTES:
        params = ["org", "repo", *PARAM.findall(template)]
        for param in params:
            for attack in ATTACKS:
                path = fill(template, **{param: attack})
                status, headers, raw = raw_request(api, method, path, headers=ADMIN_H, body=body)
                assert status in (400, 404), (method, path, status, raw[:300])
                _check(status, headers, raw, f"{method} {path}")
                sent += 1
    assert sent > 1000
    assert snapshot(database_url) == before_db
    assert _files(tmp_path) == before_files
    # Control: the same machinery does see a write that is allowed.
    status, _, raw = raw_request(
        api,
        "POST",
        fill("/changes/{change_id}/sync"),
        headers=ADMIN_H,
        body={"specs": [], "revision": "1"},
    )
    assert status == 200, raw
    assert snapshot(database_url) != before_db


@pytest.mark.parametrize(
    "path",
    [
        f"{P}/changes/..%2F..%2F..%2Fglobex%2Fgadgets%2F.ito%2Fchanges%2Fx/sync",
        f"{P}/changes/..%2F..%2Fglobex%2Fgadgets%2Fchanges%2F001-01_alpha/sync",
        f"{P}/specs/..%2F..%2F..%2Fglobex%2Fgadgets%2Fspecs%2Fauth",
        f"{P}/changes/../sync",
        f"{P}/changes/%2e%2e/archive",
    ],
)
def test_upstream_traversal_requests(api: Any, database_url: str, path: str) -> None:
    """The exact shapes of S-1/S-2: another tenant's data is neither read nor written."""
    _seed(api)
    before = snapshot(database_url)
    for method in ("GET", "POST"):
        body = {"proposal": "pwned", "specs": [], "revision": ""} if method == "POST" else None
        status, headers, raw = raw_request(api, method, path, headers=ADMIN_H, body=body)
        assert status in (400, 404, 405), raw
        assert headers["content-type"] == "application/json"
        assert b"pwned" not in raw and b"# Auth" not in raw
    assert snapshot(database_url) == before


BODY_ATTACKS = ["../x", "..", "a/b", "a\\b", "a\x00b", "A", "x" * 300, "", " a"]


def test_hostile_ids_in_bodies_change_nothing(api: Any, database_url: str) -> None:
    _seed(api)
    before = snapshot(database_url)
    for bad in BODY_ATTACKS:
        requests: list[tuple[str, str, Any]] = [
            (
                "POST",
                f"{P}/changes/001-01_alpha/sync",
                {"specs": [["ok", "x"], [bad, "y"]], "revision": "1"},
            ),
            ("POST", f"{P}/import", {"changes": [{"id": bad}]}),
            ("POST", f"{P}/import", {"specs": [{"id": bad, "markdown": "x"}]}),
            ("POST", f"{P}/import", {"modules": [{"id": bad, "name": "x"}]}),
            ("POST", f"{P}/import", {"changes": [{"id": "009-01_x", "specs": [[bad, "y"]]}]}),
            ("POST", f"{P}/allocate", {"holder": "h", "changes": [bad]}),
            ("POST", f"{P}/allocate", {"holder": "h", "module": bad or "x"}),
        ]
        for method, path, body in requests:
            status, headers, raw = raw_request(api, method, path, headers=ADMIN_H, body=body)
            where = f"{path} {bad!r} {body}"
            # 400 invalid_id; a NUL is refused earlier, by the body schema (422).
            assert status == (422 if "\x00" in bad else 400), (where, raw)
            _check(status, headers, raw, where)
    assert snapshot(database_url) == before
