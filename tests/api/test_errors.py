"""One walk over every error path: each answers the JSON envelope of API.md §0,
``{"error": str, "code": <class>, "kind": str, ...}`` with Content-Type application/json,
framework-generated errors included (STYLE.md §5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from conftest import FakeClock, auth, make_settings, project_token
from loom.api.app import create_app
from loom.service import changes as changes_service
from loom.store.engine import normalize_database_url

from .conftest import ADMIN_H, ENHANCED, P, error, ok, push, raw_request

# API.md §0: code ↔ status.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    428: "precondition_required",
    500: "internal_error",
    503: "service_unavailable",
}

C = f"{P}/changes/001-01_alpha"
E = f"{P}/changes/001-02_enh"


def _event(i: int) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": "task",
        "entity_id": str(i),
        "op": "create",
        "actor": "cli",
        "by": "@t",
        "ctx": {"session_id": "s"},
    }


def _seed(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-02_enh", tasks=ENHANCED))
    ok(push(api, "001-03_bare", tasks=None))
    ok(push(api, "001-04_held"))
    ok(push(api, "001-05_gone"))
    ok(api.post(f"{P}/changes/001-05_gone/archive?force=true", headers=ADMIN_H))
    ok(
        push(
            api, "001-06_bad", specs=[["x", "## MODIFIED Requirements\n\n### Requirement: Y\nZ\n"]]
        )
    )
    ok(api.post(f"{P}/changes/001-04_held/claim", json={"holder": "agent-a"}, headers=ADMIN_H))
    ok(
        api.post(
            f"{P}/events", json={"events": [_event(1)], "idempotency_key": "used"}, headers=ADMIN_H
        )
    )
    ok(
        api.post(
            f"{P}/changes/001-01_alpha/tasks/1.1/start",
            headers={**ADMIN_H, "Idempotency-Key": "ik"},
        )
    )
    # Another project exists, so its token is "a valid token for another project" (403).
    ok(push(api, "001-01_other", prefix="/api/v1/projects/globex/gadgets"))


def _json(body: bytes | str, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": body, "headers": {**ADMIN_H, "Content-Type": content_type}}


Case = tuple[str, str, str, dict[str, Any], int, str]

CASES: list[Case] = [
    # 400
    ("GET", f"{P}/changes/..%5Cetc/sync", "", {}, 400, "invalid_id"),
    ("GET", "/api/v1/projects/-acme/widgets/changes", "", {}, 400, "invalid_id"),
    ("GET", "/api/v1/projects/acme/wid%00gets/changes", "", {}, 400, "invalid_id"),
    ("POST", f"{P}/changes/1.1-1/sync", "", {"json": {"specs": []}}, 400, "invalid_id"),
    ("POST", f"{P}/changes/001-01_alpha/tasks/a%5Cb/start", "", {}, 400, "invalid_id"),
    ("GET", f"{P}/modules/12345", "", {}, 400, "invalid_id"),
    ("GET", f"{P}/specs/a..b", "", {}, 400, "invalid_id"),
    ("GET", f"{P}/changes?lifecycle=nope", "", {}, 400, "invalid_lifecycle"),
    ("GET", f"{P}/changes?limit=0", "", {}, 400, "invalid_parameter"),
    ("GET", f"{P}/changes/1", "", {}, 400, "ambiguous_target"),
    ("POST", f"{C}/sync", "", _json(b'{"specs": ['), 400, "invalid_json"),
    ("POST", f"{C}/claim", "", _json(b"{nope"), 400, "invalid_json"),
    ("POST", f"{P}/events", "", _json(b"[1, 2"), 400, "invalid_json"),
    (
        "POST",
        f"{C}/sync",
        "",
        {"json": {"specs": [["a", "1"], ["a", "2"]], "revision": "1"}},
        400,
        "duplicate_capability",
    ),
    ("POST", f"{E}/tasks/1.2/start", "", {}, 400, "task_blocked"),
    ("POST", f"{P}/changes/001-06_bad/archive?force=true", "", {}, 400, "delta_invalid"),
    (
        "POST",
        f"{P}/events",
        "",
        {"json": {"events": [{"v": 1}], "idempotency_key": "k"}},
        400,
        "invalid_event",
    ),
    (
        "POST",
        f"{P}/events",
        "",
        {"json": {"events": [_event(1)], "idempotency_key": ""}},
        400,
        "invalid_idempotency_key",
    ),
    ("POST", f"{C}/claim", "", {"json": {"holder": "a", "ttl_seconds": 5}}, 400, "invalid_ttl"),
    (
        "POST",
        f"{C}/sync",
        "",
        {
            "json": {"specs": [], "revision": "2"},
            "headers": {**ADMIN_H, "Idempotency-Key": "bad key"},
        },
        400,
        "invalid_idempotency_key",
    ),
    # 401
    ("GET", f"{P}/changes", "none", {}, 401, "missing_token"),
    ("GET", f"{P}/changes", "bogus", {}, 401, "invalid_token"),
    ("POST", f"{C}/claim", "none", {"json": {"holder": "a"}}, 401, "missing_token"),
    ("POST", f"{P}/events", "bogus", {"json": {"events": []}}, 401, "invalid_token"),
    # 403
    ("GET", f"{P}/changes", "other", {}, 403, "forbidden"),
    (
        "POST",
        f"{C}/release?force=true",
        "project",
        {"json": {"holder": "a"}},
        403,
        "admin_required",
    ),
    # 404
    ("GET", f"{P}/nope", "", {}, 404, "route_not_found"),
    ("GET", "/nope", "none", {}, 404, "route_not_found"),  # GET / redirects to the docs
    ("GET", "/api/v2/health", "none", {}, 404, "route_not_found"),
    ("GET", f"{P}/changes/", "", {}, 404, "route_not_found"),
    ("GET", f"{P}/changes/001-09_none", "", {}, 404, "change_not_found"),
    ("POST", f"{P}/changes/001-09_none/archive?force=true", "", {}, 404, "change_not_found"),
    ("POST", f"{E}/tasks/9.9/start", "", {}, 404, "task_not_found"),
    ("POST", f"{P}/changes/001-03_bare/tasks/1.1/complete", "", {}, 404, "tasks_missing"),
    ("GET", f"{P}/modules/999", "", {}, 404, "module_not_found"),
    ("GET", f"{P}/specs/nope", "", {}, 404, "spec_not_found"),
    ("GET", f"{C}/lease", "", {}, 404, "lease_not_found"),
    # 405
    ("DELETE", f"{P}/changes", "", {}, 405, "method_not_allowed"),
    ("PUT", f"{C}/sync", "", {"json": {}}, 405, "method_not_allowed"),
    ("GET", f"{C}/claim", "", {}, 405, "method_not_allowed"),
    ("POST", "/api/v1/health", "none", {}, 405, "method_not_allowed"),
    # 409
    ("POST", f"{C}/sync", "", {"json": {"specs": [], "revision": "1"}}, 409, "revision_conflict"),
    (
        "POST",
        f"{P}/changes/001-04_held/sync",
        "",
        {"json": {"specs": [], "revision": "1"}},
        409,
        "lease_conflict",
    ),
    (
        "POST",
        f"{P}/changes/001-04_held/claim",
        "",
        {"json": {"holder": "agent-b"}},
        409,
        "lease_conflict",
    ),
    (
        "POST",
        f"{P}/changes/001-04_held/heartbeat",
        "",
        {"json": {"holder": "agent-b"}},
        409,
        "not_lease_holder",
    ),
    (
        "POST",
        f"{P}/changes/001-04_held/tasks/1.1/start",
        "",
        {"headers": {**ADMIN_H, "X-Loom-Holder": "agent-a", "X-Loom-Fencing-Token": "0"}},
        409,
        "stale_fencing_token",
    ),
    (
        "POST",
        f"{P}/changes/001-05_gone/sync",
        "",
        {"json": {"specs": [], "revision": "2"}},
        409,
        "archived",
    ),
    ("POST", f"{P}/changes/001-05_gone/claim", "", {"json": {"holder": "a"}}, 409, "archived"),
    # 422
    ("POST", f"{C}/sync", "", {"json": {"revision": "1"}}, 422, "validation_error"),
    ("POST", f"{C}/claim", "", {"json": {"ttl_seconds": 60}}, 400, "invalid_id"),
    ("POST", f"{C}/claim", "", {"json": {"holder": "a", "ttl_seconds": "60"}}, 400, "invalid_ttl"),
    ("POST", f"{C}/claim", "", {"json": {"holder": "a", "ttl_seconds": 10.5}}, 400, "invalid_ttl"),
    ("POST", f"{P}/allocate", "", {"json": {"holder": 5}}, 400, "invalid_id"),
    ("POST", f"{P}/allocate", "", {"json": {"holder": "a", "module": 1}}, 400, "invalid_id"),
    ("POST", f"{C}/tasks/add", "", {"json": {"title": "x", "wave": 0}}, 400, "invalid_wave"),
    ("PUT", f"{P}/specs/x", "", {"json": ["not", "an", "object"]}, 422, "validation_error"),
    (
        "POST",
        f"{P}/events",
        "",
        {"json": {"events": [_event(2)], "idempotency_key": "used"}},
        422,
        "idempotency_key_reused",
    ),
    (
        "POST",
        f"{C}/tasks/1.1/start",
        "",
        {"headers": {**ADMIN_H, "Idempotency-Key": "ik", "X-Loom-Holder": "someone"}},
        422,
        "idempotency_key_reused",
    ),
    # 428
    ("POST", f"{C}/sync", "", {"json": {"specs": []}}, 428, "precondition_required"),
    (
        "POST",
        f"{C}/sync",
        "",
        {"json": {"specs": [], "revision": "  "}},
        428,
        "precondition_required",
    ),
    # 415
    ("POST", f"{C}/sync", "", _json(b'{"specs": []}', "text/plain"), 415, "unsupported_media_type"),
    (
        "POST",
        f"{C}/claim",
        "",
        _json(b"holder=a", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    ),
]


def _headers(who: str) -> dict[str, str]:
    return {
        "": ADMIN_H,
        "none": {},
        "bogus": auth("bogus"),
        "other": auth(project_token("globex", "gadgets")),
        "project": auth(project_token()),
    }[who]


@pytest.fixture
def seeded(api: Any) -> Any:
    _seed(api)
    return api


def test_every_error_path_answers_the_envelope(seeded: Any) -> None:
    """All cases in one test (one seeded app per backend keeps this fast); every failing
    case is reported, not only the first."""
    failures = []
    for method, path, who, kwargs, status, kind in CASES:
        kw = dict(kwargs)
        kw.setdefault("headers", _headers(who))
        resp = seeded.request(method, path, **kw)
        try:
            body = error(resp, status, CODES[status], kind)
            assert set(body) >= {"error", "code", "kind"}
            assert "Traceback" not in resp.text and "/tmp" not in resp.text
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)


def test_the_case_table_covers_every_status_class() -> None:
    assert {c[4] for c in CASES} | {413, 500, 503} == set(CODES)


# --------------------------------------------------------------------------- 413


def test_body_too_large_by_content_length(app_factory: Any) -> None:
    api = app_factory(max_body_bytes=1024)
    assert error(
        push(api, "001-01_alpha", specs=[["big", "x" * 2000]]),
        413,
        "payload_too_large",
        "payload_too_large",
    ) == {
        "error": "request body exceeds 1024 bytes",
        "code": "payload_too_large",
        "kind": "payload_too_large",
        "max_bytes": 1024,
    }
    error(
        api.get(f"{P}/changes/001-01_alpha", headers=ADMIN_H), 404, "not_found", "change_not_found"
    )


def test_body_too_large_when_streamed_without_length(app_factory: Any) -> None:
    api = app_factory(max_body_bytes=1024)

    def chunks() -> Any:
        yield b'{"specs": [["big", "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"]], "revision": ""}'

    resp = api.post(
        f"{C}/sync", content=chunks(), headers={**ADMIN_H, "Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in resp.request.headers}
    error(resp, 413, "payload_too_large", "payload_too_large")


def test_a_body_just_under_the_limit_is_accepted(app_factory: Any) -> None:
    api = app_factory(max_body_bytes=1024)
    ok(push(api, "001-01_alpha", proposal="p" * 700, tasks=None, specs=[]))


# --------------------------------------------------------------------------- 409 in flight


def test_idempotency_in_flight_is_409_and_not_stored(api: Any, database_url: str) -> None:
    ok(push(api, "001-01_alpha"))
    headers = {**ADMIN_H, "Idempotency-Key": "slow"}
    first = ok(api.post(f"{C}/tasks/init", headers=headers))
    # Make the stored record look like a request that is still running.
    engine = create_engine(normalize_database_url(database_url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE idempotency SET state = 'in_flight', status = NULL, "
                "body = NULL WHERE key = 'slow'"
            )
        )
    resp = api.post(f"{C}/tasks/init", headers=headers)
    error(resp, 409, "conflict", "idempotency_in_flight")
    assert "idempotent-replayed" not in resp.headers
    # A stale in-flight record (the first request's process died) is taken over.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE idempotency SET created_us = created_us - 3600000000 WHERE key = 'slow'")
        )
    engine.dispose()
    again = api.post(f"{C}/tasks/init", headers=headers)
    assert ok(again) == {**first, "existed": True}
    assert "idempotent-replayed" not in again.headers


# --------------------------------------------------------------------------- 500 / 503


def test_unexpected_errors_are_a_bare_500(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret /srv/loom/data path and SELECT * FROM changes")

    monkeypatch.setattr(changes_service, "pull_bundle", boom)
    resp = api.get(f"{C}/sync", headers=ADMIN_H)
    assert error(resp, 500, "internal_error", "internal_error") == {
        "error": "internal server error",
        "code": "internal_error",
        "kind": "internal_error",
    }


def test_a_database_outage_is_503(tmp_path: Path, clock: FakeClock) -> None:
    """A database that cannot be reached is a retryable 503, not a 500."""
    missing = tmp_path / "no" / "such" / "dir" / "loom.db"
    settings = make_settings(f"sqlite:///{missing}", tmp_path)
    app = create_app(settings, clock=clock, run_migrations=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        for resp in (
            client.get(f"{P}/changes", headers=ADMIN_H),
            client.post(f"{C}/sync", json={"specs": []}, headers=ADMIN_H),
            client.get(f"{P}/changes", headers=auth("bogus-token")),
        ):
            body = error(resp, 503, "service_unavailable", "database_unavailable")
            assert str(tmp_path) not in resp.text
            assert body["error"] == "database unavailable"


# --------------------------------------------------------------------------- raw paths


@pytest.mark.parametrize(
    ("method", "raw_path", "status", "kind"),
    [
        ("GET", f"{P}/changes/../sync", 400, "invalid_id"),
        ("GET", f"{P}/changes/./sync", 400, "invalid_id"),
        ("POST", f"{P}/changes/../archive?force=true", 400, "invalid_id"),
        ("GET", "/api/v1/projects/../widgets/changes", 400, "invalid_id"),
        ("GET", "/api/v1/projects/acme/./changes", 400, "invalid_id"),
    ],
)
def test_dot_segments_sent_verbatim(
    api: Any, method: str, raw_path: str, status: int, kind: str
) -> None:
    got, headers, body = raw_request(api, method, raw_path, headers=ADMIN_H, body={})
    assert got == status, body
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert (data["code"], data["kind"]) == (CODES[status], kind)


def test_error_helper_rejects_a_non_envelope() -> None:
    """The assertion helper itself can fail (a plain-text error would not pass)."""
    fake = httpx.Response(404, text="Not Found", headers={"content-type": "text/plain"})
    with pytest.raises(AssertionError):
        error(fake, 404, "not_found", "route_not_found")


# --------------------------------------------------------------------------- unstorable text

UNSTORABLE: list[tuple[str, str, bytes | None, int, str]] = [
    (
        "POST",
        f"{C}/sync",
        b'{"specs": [["cap", "a\\u0000b"]], "revision": "1"}',
        422,
        "validation_error",
    ),
    (
        "POST",
        f"{C}/sync",
        b'{"proposal": "\\ud800", "specs": [], "revision": "1"}',
        422,
        "validation_error",
    ),
    ("PUT", f"{P}/specs/x", b'{"markdown": "nul\\u0000"}', 422, "validation_error"),
    ("PUT", f"{P}/specs/x", b'{"markdown": "\\udfff"}', 422, "validation_error"),
    ("PUT", f"{P}/modules/001", b'{"name": "n\\u0000"}', 422, "validation_error"),
    ("POST", f"{E}/tasks/1.1/complete", b'{"note": "x\\ud800"}', 422, "validation_error"),
    ("POST", f"{E}/tasks/add", b'{"title": "t\\u0000"}', 422, "validation_error"),
    (
        "POST",
        f"{P}/import",
        b'{"changes": [{"id": "002-01_x", "metadata": "a\\u0000"}]}',
        422,
        "validation_error",
    ),
    ("POST", f"{C}/claim", b'{"holder": "a\\u0000"}', 422, "validation_error"),
    (
        "POST",
        f"{P}/events",
        b'{"events": [{"v": 1, "ts": "2026-01-01T00:00:00Z", "entity": "t\\u0000", '
        b'"entity_id": "1", "op": "o", "actor": "a", "by": "b", "ctx": {"session_id": "s"}}], '
        b'"idempotency_key": "k"}',
        400,
        "invalid_event",
    ),
    ("GET", f"{P}/events?scope=%00", None, 400, "invalid_parameter"),
    ("GET", f"{P}/events?entity=a%00", None, 400, "invalid_parameter"),
    ("GET", f"{P}/events?op=%00", None, 400, "invalid_parameter"),
    ("GET", f"{P}/events?since=9223372036854775808", None, 400, "invalid_parameter"),
    ("GET", f"{P}/changes?cursor=YQBi", None, 400, "invalid_cursor"),  # base64 of "a\0b"
]


def test_unstorable_text_is_refused_on_both_backends(api: Any, database_url: str) -> None:
    """NUL (PostgreSQL text cannot hold it) and lone surrogates (no UTF-8 database can) in
    bodies, filters or cursors were 500s; they are client errors, and nothing is written."""
    from store._snapshot import snapshot

    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-02_enh", tasks=ENHANCED))
    before = snapshot(database_url)
    for method, path, raw, status, kind in UNSTORABLE:
        resp = api.request(
            method, path, content=raw, headers={**ADMIN_H, "Content-Type": "application/json"}
        )
        code = {400: "bad_request", 422: "unprocessable"}[status]
        error(resp, status, code, kind)
    assert snapshot(database_url) == before


# --------------------------------------------------------------------------- check order


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{C}/sync"),
        ("POST", f"{C}/claim"),
        ("POST", f"{P}/events"),
        ("POST", f"{P}/import"),
        ("PUT", f"{P}/specs/x"),
        ("POST", f"{C}/tasks/1.1/complete"),
    ],
)
def test_check_order_path_then_token_then_body(api: Any, method: str, path: str) -> None:
    """PRODUCT.md §3.5: path syntax (400) → token (401) → scope (403) → the request itself,
    also for a malformed JSON body (every handler parses its body after the access check)."""
    bad_json = {"Content-Type": "application/json"}
    bad_path = path.replace("acme", "-acme", 1)
    error(
        api.request(method, bad_path, content=b"{bad", headers=bad_json),
        400,
        "bad_request",
        "invalid_id",
    )
    error(
        api.request(method, path, content=b"{bad", headers=bad_json),
        401,
        "unauthorized",
        "missing_token",
    )
    ok(push(api, "001-01_other", prefix="/api/v1/projects/globex/gadgets"))
    other = auth(project_token("globex", "gadgets"))
    error(
        api.request(method, path, content=b"{bad", headers={**bad_json, **other}),
        403,
        "forbidden",
        "forbidden",
    )
    error(
        api.request(method, path, content=b"{bad", headers={**bad_json, **ADMIN_H}),
        400,
        "bad_request",
        "invalid_json",
    )
