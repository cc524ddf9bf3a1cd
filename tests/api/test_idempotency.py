"""``Idempotency-Key`` on mutating project routes (PRODUCT.md §3.4, API.md §0)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import auth, project_token
from loom.service import tasks as tasks_service

from .conftest import ADMIN_H, ENHANCED, P, error, ok, push

C = f"{P}/changes/001-01_alpha"


def key(k: str, **extra: str) -> dict[str, str]:
    return {**ADMIN_H, "Idempotency-Key": k, **extra}


def test_a_retry_is_replayed_once_executed(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=ENHANCED))
    first = api.post(f"{C}/tasks/1.1/start", headers=key("start-1"))
    assert ok(first)["revision"] == "2"
    assert "idempotent-replayed" not in first.headers
    second = api.post(f"{C}/tasks/1.1/start", headers=key("start-1"))
    assert ok(second) == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    # Executed once: one event, revision 2.
    assert ok(api.get(f"{C}/sync", headers=ADMIN_H))["revision"] == "2"
    assert len(ok(api.get(f"{P}/events?entity=task", headers=ADMIN_H))) == 1


def test_a_retried_push_does_not_conflict_with_itself(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    body = {"proposal": "# v2\n", "specs": [], "revision": "1"}
    first = api.post(f"{C}/sync", json=body, headers=key("push-1"))
    assert ok(first) == {"change_id": "001-01_alpha", "new_revision": "2"}
    again = api.post(f"{C}/sync", json=body, headers=key("push-1"))
    assert ok(again) == {"change_id": "001-01_alpha", "new_revision": "2"}
    assert again.headers["idempotent-replayed"] == "true"
    # Without the key the same body is a conflict (the push did happen).
    error(api.post(f"{C}/sync", json=body, headers=ADMIN_H), 409, "conflict", "revision_conflict")


def test_json_key_order_and_spacing_do_not_change_the_fingerprint(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    a = b'{"specs": [], "revision": "1", "proposal": "x"}'
    b = b'{"proposal":"x","revision":"1","specs":[]}'
    headers = key("push-2", **{"Content-Type": "application/json"})
    ok(api.post(f"{C}/sync", content=a, headers=headers))
    resp = api.post(f"{C}/sync", content=b, headers=headers)
    assert ok(resp)["new_revision"] == "2"
    assert resp.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    ("second", "why"),
    [
        ({"json": {"proposal": "# other\n", "specs": [], "revision": "1"}}, "body"),
        (
            {
                "json": {"proposal": "# v2\n", "specs": [], "revision": "1"},
                "path": "/changes/001-02_beta/sync",
            },
            "path",
        ),
        (
            {
                "json": {"proposal": "# v2\n", "specs": [], "revision": "1"},
                "extra": {"X-Loom-Holder": "agent-x"},
            },
            "holder",
        ),
    ],
)
def test_same_key_different_request_is_422(api: Any, second: dict[str, Any], why: str) -> None:
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-02_beta"))
    ok(
        api.post(
            f"{C}/sync", json={"proposal": "# v2\n", "specs": [], "revision": "1"}, headers=key("k")
        )
    )
    path = P + second.get("path", "/changes/001-01_alpha/sync")
    resp = api.post(path, json=second["json"], headers=key("k", **second.get("extra", {})))
    assert error(resp, 422, "unprocessable", "idempotency_key_reused") == {
        "error": "Idempotency-Key was already used for a different request",
        "code": "unprocessable",
        "kind": "idempotency_key_reused",
    }, why
    assert "idempotent-replayed" not in resp.headers
    # Nothing ran.
    assert ok(api.get(f"{P}/changes/001-02_beta/sync", headers=ADMIN_H))["revision"] == "1"


def test_a_stored_4xx_is_replayed(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    stale = {"specs": [], "revision": "7"}
    first = api.post(f"{C}/sync", json=stale, headers=key("conflict-1"))
    body = error(first, 409, "conflict", "revision_conflict")
    # The change moves on; the retry still answers what the first attempt answered.
    ok(push(api, "001-01_alpha", revision="1"))
    again = api.post(f"{C}/sync", json=stale, headers=key("conflict-1"))
    assert error(again, 409, "conflict", "revision_conflict") == body
    assert again.headers["idempotent-replayed"] == "true"
    missing = api.post(f"{P}/changes/001-09_x/tasks/init", headers=key("nf"))
    error(missing, 404, "not_found", "change_not_found")
    ok(push(api, "001-09_x"))  # exists now, but the key replays the stored 404
    replay = api.post(f"{P}/changes/001-09_x/tasks/init", headers=key("nf"))
    assert error(replay, 404, "not_found", "change_not_found") == missing.json()
    assert replay.headers["idempotent-replayed"] == "true"


def test_a_5xx_is_not_stored(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(push(api, "001-01_alpha", tasks=None))
    real = tasks_service.init_tasks
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("transient")
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks_service, "init_tasks", flaky)
    error(
        api.post(f"{C}/tasks/init", headers=key("retry-me")),
        500,
        "internal_error",
        "internal_error",
    )
    resp = api.post(f"{C}/tasks/init", headers=key("retry-me"))
    assert ok(resp) == {"change_id": "001-01_alpha", "existed": False, "revision": "2"}
    assert "idempotent-replayed" not in resp.headers


def test_keys_are_per_project(api: Any) -> None:
    other = "/api/v1/projects/globex/gadgets"
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-01_alpha", prefix=other))
    body = {"proposal": "# v2\n", "specs": [], "revision": "1"}
    ok(api.post(f"{C}/sync", json=body, headers=key("shared")))
    resp = api.post(f"{other}/changes/001-01_alpha/sync", json=body, headers=key("shared"))
    assert ok(resp)["new_revision"] == "2"
    assert "idempotent-replayed" not in resp.headers


def test_keys_work_for_every_scope_and_replay_across_them(api: Any) -> None:
    """The record belongs to the project, not the token: a project token's retry of an
    admin's request replays (same request, same project)."""
    ok(push(api, "001-01_alpha", tasks=ENHANCED))
    ok(api.post(f"{C}/tasks/1.1/start", headers=key("s")))
    resp = api.post(
        f"{C}/tasks/1.1/start", headers={**auth(project_token()), "Idempotency-Key": "s"}
    )
    assert resp.headers["idempotent-replayed"] == "true"


def test_event_ingest_with_an_idempotency_key_header(api: Any) -> None:
    ev = {
        "v": 1,
        "ts": "2026-02-28T10:00:00Z",
        "entity": "task",
        "entity_id": "1",
        "op": "create",
        "actor": "cli",
        "by": "@t",
        "ctx": {"session_id": "s"},
    }
    body = {"events": [ev], "idempotency_key": "batch-1"}
    assert ok(api.post(f"{P}/events", json=body, headers=key("h-1"))) == {
        "accepted": 1,
        "duplicates": 0,
    }
    resp = api.post(f"{P}/events", json=body, headers=key("h-1"))
    assert ok(resp) == {"accepted": 1, "duplicates": 0}
    assert resp.headers["idempotent-replayed"] == "true"
    assert len(ok(api.get(f"{P}/events", headers=ADMIN_H))) == 1


@pytest.mark.parametrize("bad", ["", "x" * 256, "with space", "tab\tkey"])
def test_bad_idempotency_keys_are_400(api: Any, bad: str) -> None:
    ok(push(api, "001-01_alpha"))
    resp = api.post(f"{C}/tasks/init", headers=key(bad))
    error(resp, 400, "bad_request", "invalid_idempotency_key")


def test_the_longest_key_is_accepted(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=None))
    ok(api.post(f"{C}/tasks/init", headers=key("~" * 255)))


@pytest.mark.parametrize(
    ("path", "raw", "status", "kind"),
    [
        (f"{C}/sync", b'{"revision": "1"}', 422, "validation_error"),  # schema (FastAPI route)
        (f"{C}/sync", b"{x", 400, "invalid_json"),
        (f"{C}/sync", b"", 400, "invalid_json"),
        (f"{C}/claim", b'{"holder": 5}', 400, "invalid_id"),  # hot lane, before the use case
        (f"{C}/claim", b"{x", 400, "invalid_json"),
        (f"{C}/tasks/add", b'{"title": "x", "wave": 0}', 400, "invalid_wave"),  # route rule
        (f"{P}/events", b'{"events": {}}', 422, "validation_error"),
    ],
)
def test_an_error_raised_before_the_use_case_is_stored_too(
    api: Any, path: str, raw: bytes, status: int, kind: str
) -> None:
    """API.md §0: every completed response below 500 is stored and replayed, errors included
    — also those the request's body or parameters earn before the use case runs."""
    ok(push(api, "001-01_alpha", tasks=ENHANCED))
    headers = key("early", **{"Content-Type": "application/json"})
    first = api.post(path, content=raw, headers=headers)
    code = "bad_request" if status == 400 else "unprocessable"
    body = error(first, status, code, kind)
    assert "idempotent-replayed" not in first.headers
    again = api.post(path, content=raw, headers=headers)
    assert error(again, status, code, kind) == body
    assert again.headers["idempotent-replayed"] == "true"
    # The key is bound to that request: another one under it is refused, and not executed.
    fixed = {
        f"{C}/sync": b'{"specs": [], "revision": "1"}',
        f"{C}/claim": b'{"holder": "a"}',
        f"{C}/tasks/add": b'{"title": "x"}',
        f"{P}/events": b'{"events": [], "idempotency_key": "k"}',
    }[path]
    other = api.post(path, content=fixed, headers=headers)
    error(other, 422, "unprocessable", "idempotency_key_reused")
    assert ok(api.get(f"{C}/sync", headers=ADMIN_H))["revision"] == "1"
    error(api.get(f"{C}/lease", headers=ADMIN_H), 404, "not_found", "lease_not_found")


def test_errors_of_the_token_path_or_key_are_not_stored(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    json_h = {"Content-Type": "application/json"}
    bad = {**auth("bogus"), "Idempotency-Key": "tok", **json_h}
    error(api.post(f"{C}/claim", content=b"{x", headers=bad), 401, "unauthorized", "invalid_token")
    # The same key with a valid token is a fresh request.
    ok(api.post(f"{C}/claim", json={"holder": "a"}, headers=key("tok")))
    resp = api.post(f"{P}/changes/BAD..ID/claim", json={"holder": "a"}, headers=key("path"))
    error(resp, 400, "bad_request", "invalid_id")
    ok(api.post(f"{C}/claim", json={"holder": "a"}, headers=key("path")))
