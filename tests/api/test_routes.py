"""Every route of API.md §1-2.8 (2.7 lightly: tests/leases/ owns lease semantics): success
bodies checked in full, with the FakeClock's timestamps, and each route's error cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import FakeClock, auth, make_settings, project_token
from loom import __version__
from loom.api.app import create_app

from .conftest import ADDED, ADMIN_H, CHECKBOX, ENHANCED, T0, P, error, ok, push, raw_request

T1 = "2026-09-21T14:14:20.000000Z"
PROGRESS_0 = {
    "total": 0,
    "complete": 0,
    "shelved": 0,
    "in_progress": 0,
    "pending": 0,
    "remaining": 0,
}


def summary(change_id: str, **overrides: Any) -> dict[str, Any]:
    """A change summary as pushed by ``push()`` defaults (checkbox: 1 pending, 1 complete)."""
    module = change_id.partition("-")[0]
    body: dict[str, Any] = {
        "id": change_id,
        "module_id": module.split(".")[0],
        "sub_module_id": module if "." in module else None,
        "completed_tasks": 1,
        "shelved_tasks": 0,
        "in_progress_tasks": 0,
        "pending_tasks": 1,
        "total_tasks": 2,
        "has_proposal": True,
        "has_design": False,
        "has_specs": True,
        "has_tasks": True,
        "work_status": "ready",
        "last_modified": T0,
        "revision": "1",
        "archived_at": None,
        "lease": None,
    }
    body.update(overrides)
    return body


# --------------------------------------------------------------------------- §1 service routes


def test_health(api: Any) -> None:
    assert ok(api.get("/api/v1/health")) == {"status": "ok", "version": __version__}


def test_health_never_touches_the_database(tmp_path: Path, clock: FakeClock) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "loom.db"
    settings = make_settings(f"sqlite:///{missing}", tmp_path)
    with TestClient(
        create_app(settings, clock=clock, run_migrations=False), raise_server_exceptions=False
    ) as client:
        assert ok(client.get("/api/v1/health"))["status"] == "ok"
        resp = client.get("/api/v1/ready")
        assert resp.status_code == 503
        assert resp.headers["content-type"] == "application/json"
        # No server path in the reason.
        assert resp.json() == {
            "status": "not_ready",
            "reason": "database unavailable",
            "error": "database unavailable",
            "code": "service_unavailable",
            "kind": "database_unavailable",
        }


def test_ready(api: Any) -> None:
    assert ok(api.get("/api/v1/ready")) == {"status": "ready"}


def test_openapi_and_docs(api: Any) -> None:
    doc = ok(api.get("/api/v1/openapi.json"))
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    for path in (
        "/api/v1/health",
        "/api/v1/projects/{org}/{repo}/changes/{change_id}/sync",
        "/api/v1/projects/{org}/{repo}/events",
        "/api/v1/projects/{org}/{repo}/allocate",
    ):
        assert path in paths
    docs = api.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


# --------------------------------------------------------------------------- §2.1 auth


def test_auth_verify_admin(api: Any) -> None:
    assert ok(api.get(f"{P}/auth/verify", headers=ADMIN_H)) == {
        "valid": True,
        "scope": "admin",
        "project_id": "acme/widgets",
    }


def test_auth_verify_project(api: Any) -> None:
    assert ok(api.get(f"{P}/auth/verify", headers=auth(project_token()))) == {
        "valid": True,
        "scope": "project",
        "org": "acme",
        "repo": "widgets",
        "project_id": "acme/widgets",
    }


def test_auth_verify_errors(api: Any) -> None:
    error(api.get(f"{P}/auth/verify"), 401, "unauthorized", "missing_token")
    error(api.get(f"{P}/auth/verify", headers=auth("nope")), 401, "unauthorized", "invalid_token")
    error(
        api.get(f"{P}/auth/verify", headers={"Authorization": f"bearer {project_token()}"}),
        401,
        "unauthorized",
        "missing_token",
    )
    # Upper-case hex is not the token (exact comparison, as upstream).
    error(
        api.get(f"{P}/auth/verify", headers=auth(project_token().upper())),
        401,
        "unauthorized",
        "invalid_token",
    )


# --------------------------------------------------------------------------- §2.2 changes


def test_list_changes_empty_project(api: Any) -> None:
    resp = api.get(f"{P}/changes", headers=ADMIN_H)
    assert ok(resp) == []
    assert "x-next-cursor" not in resp.headers


def test_list_changes_in_canonical_order_with_filters(api: Any, clock: FakeClock) -> None:
    for cid in ("002-10_ten", "002-02_two", "001.01-01_sub", "001-01_alpha", "legacy-slug"):
        ok(push(api, cid))
    ok(push(api, "003-01_draft", specs=[]))
    ok(push(api, "001-02_done", tasks="- [x] 1.1 a\n"))
    clock.advance(60)
    ok(api.post(f"{P}/changes/002-02_two/archive?force=true", headers=ADMIN_H))

    listing = ok(api.get(f"{P}/changes", headers=ADMIN_H))
    assert listing == [
        summary("001-01_alpha"),
        summary(
            "001-02_done",
            completed_tasks=1,
            pending_tasks=0,
            total_tasks=1,
            work_status="complete",
        ),
        summary("001.01-01_sub"),
        summary("002-10_ten"),
        summary("003-01_draft", has_specs=False, work_status="draft"),
        summary("legacy-slug", module_id=None),
    ]
    archived = ok(api.get(f"{P}/changes?lifecycle=archived", headers=ADMIN_H))
    assert archived == [summary("002-02_two", revision="2", archived_at=T1, last_modified=T1)]
    every = ok(api.get(f"{P}/changes?lifecycle=ALL", headers=ADMIN_H))
    assert [c["id"] for c in every] == [
        "001-01_alpha",
        "001-02_done",
        "001.01-01_sub",
        "002-02_two",
        "002-10_ten",
        "003-01_draft",
        "legacy-slug",
    ]
    by_module = ok(api.get(f"{P}/changes?module=1", headers=ADMIN_H))
    assert [c["id"] for c in by_module] == ["001-01_alpha", "001-02_done", "001.01-01_sub"]
    by_sub = ok(api.get(f"{P}/changes?module=001.01", headers=ADMIN_H))
    assert [c["id"] for c in by_sub] == ["001.01-01_sub"]
    by_status = ok(api.get(f"{P}/changes?status=draft,complete", headers=ADMIN_H))
    assert [c["id"] for c in by_status] == ["001-02_done", "003-01_draft"]


def test_list_changes_pages_with_a_cursor(api: Any) -> None:
    ids = [f"001-{n:02d}_c" for n in range(1, 8)]
    for cid in ids:
        ok(push(api, cid))
    seen: list[str] = []
    url = f"{P}/changes?limit=3"
    pages = 0
    while True:
        resp = api.get(url, headers=ADMIN_H)
        page = ok(resp)
        pages += 1
        seen += [c["id"] for c in page]
        cursor = resp.headers.get("x-next-cursor")
        if cursor is None:
            break
        url = f"{P}/changes?limit=3&cursor={cursor}"
    assert seen == ids
    assert pages == 3


@pytest.mark.parametrize(
    ("query", "status", "code", "kind"),
    [
        ("lifecycle=bogus", 400, "bad_request", "invalid_lifecycle"),
        ("status=ready,bogus", 400, "bad_request", "invalid_status"),
        ("module=abc", 400, "bad_request", "invalid_id"),
        ("module=1000", 400, "bad_request", "invalid_id"),
        ("cursor=%25%25%25", 400, "bad_request", "invalid_cursor"),
        ("limit=0", 400, "bad_request", "invalid_parameter"),
        ("limit=1001", 400, "bad_request", "invalid_parameter"),
        ("limit=ten", 400, "bad_request", "invalid_parameter"),
    ],
)
def test_list_changes_bad_queries(api: Any, query: str, status: int, code: str, kind: str) -> None:
    error(api.get(f"{P}/changes?{query}", headers=ADMIN_H), status, code, kind)


def test_list_changes_bad_lifecycle_message(api: Any) -> None:
    body = error(
        api.get(f"{P}/changes?lifecycle=bogus", headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_lifecycle",
    )
    assert body == {
        "error": "Invalid lifecycle 'bogus'. Expected active, archived, or all.",
        "code": "bad_request",
        "kind": "invalid_lifecycle",
    }


def test_change_detail(api: Any) -> None:
    ok(push(api, "001-01_alpha", design="# Design\n", specs=[["zeta", "z"], ["auth", ADDED]]))
    assert ok(api.get(f"{P}/changes/001-01_alpha", headers=ADMIN_H)) == {
        "id": "001-01_alpha",
        "module_id": "001",
        "sub_module_id": None,
        "proposal": "# Proposal\n",
        "design": "# Design\n",
        "specs": [{"name": "auth", "content": ADDED}, {"name": "zeta", "content": "z"}],
        "progress": {
            "total": 2,
            "complete": 1,
            "shelved": 0,
            "in_progress": 0,
            "pending": 1,
            "remaining": 1,
        },
        "last_modified": T0,
        "revision": "1",
        "work_status": "ready",
        "archived_at": None,
        "lease": None,
    }


def test_change_detail_resolves_short_forms(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-02_beta"))
    ok(push(api, "002-01_gamma"))
    assert ok(api.get(f"{P}/changes/1-1", headers=ADMIN_H))["id"] == "001-01_alpha"
    assert ok(api.get(f"{P}/changes/002-01", headers=ADMIN_H))["id"] == "002-01_gamma"
    body = error(api.get(f"{P}/changes/1", headers=ADMIN_H), 400, "bad_request", "ambiguous_target")
    assert body["matches"] == ["001-01_alpha", "001-02_beta"]


def test_change_detail_lifecycle(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(api.post(f"{P}/changes/001-01_alpha/archive?force=true", headers=ADMIN_H))
    error(
        api.get(f"{P}/changes/001-01_alpha", headers=ADMIN_H), 404, "not_found", "change_not_found"
    )
    assert (
        ok(api.get(f"{P}/changes/001-01_alpha?lifecycle=archived", headers=ADMIN_H))["archived_at"]
        == T0
    )
    assert ok(api.get(f"{P}/changes/001-01_alpha?lifecycle=all", headers=ADMIN_H))["id"] == (
        "001-01_alpha"
    )
    error(
        api.get(f"{P}/changes/001-01_alpha?lifecycle=x", headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_lifecycle",
    )


def test_change_not_found_body_is_the_same_with_or_without_project_data(
    api: Any, app_factory: Any
) -> None:
    """The 404 must not depend on whether the project has rows (no existence oracle)."""
    empty = api.get("/api/v1/projects/other/empty/changes/999-99_does-not-exist", headers=ADMIN_H)
    ok(push(api, "001-01_alpha"))
    full = api.get(f"{P}/changes/999-99_does-not-exist", headers=ADMIN_H)
    assert error(empty, 404, "not_found", "change_not_found") == error(
        full, 404, "not_found", "change_not_found"
    )


# --------------------------------------------------------------------------- §2.3 sync


def test_pull(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    resp = api.get(f"{P}/changes/001-01_alpha/sync", headers=ADMIN_H)
    assert ok(resp) == {
        "change_id": "001-01_alpha",
        "proposal": "# Proposal\n",
        "design": None,
        "tasks": CHECKBOX,
        "specs": [["auth", ADDED]],
        "revision": "1",
        "spec_bases": {"auth": 0},
        "spec_revisions": {"auth": 0},
    }
    assert resp.headers["etag"] == '"1"'


def test_pull_errors(api: Any) -> None:
    error(
        api.get(f"{P}/changes/001-09_nope/sync", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )
    error(api.get(f"{P}/changes/..%5Cx/sync", headers=ADMIN_H), 400, "bad_request", "invalid_id")


def test_pull_of_an_archived_change(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(api.post(f"{P}/changes/001-01_alpha/archive?force=true", headers=ADMIN_H))
    resp = api.get(f"{P}/changes/001-01_alpha/sync", headers=ADMIN_H)
    assert ok(resp)["revision"] == "2"
    assert resp.headers["etag"] == '"2"'


def test_push_create_update_and_if_match(api: Any, clock: FakeClock) -> None:
    assert ok(push(api, "001-01_alpha")) == {"change_id": "001-01_alpha", "new_revision": "1"}
    clock.advance(60)
    assert ok(push(api, "001-01_alpha", proposal=None, revision="1")) == {
        "change_id": "001-01_alpha",
        "new_revision": "2",
    }
    # If-Match replaces the body revision (quotes and W/ are tolerated).
    body = {"proposal": "# Three\n", "specs": []}
    resp = api.post(
        f"{P}/changes/001-01_alpha/sync", json=body, headers={**ADMIN_H, "If-Match": '"2"'}
    )
    assert ok(resp) == {"change_id": "001-01_alpha", "new_revision": "3"}
    assert ok(api.get(f"{P}/changes/001-01_alpha/sync", headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "proposal": "# Three\n",
        "design": None,
        "tasks": None,
        "specs": [],
        "revision": "3",
        "spec_bases": {},
        "spec_revisions": {},
    }
    summary_row = ok(api.get(f"{P}/changes", headers=ADMIN_H))[0]
    assert (summary_row["last_modified"], summary_row["work_status"]) == (T1, "draft")


def test_push_conflicts_and_preconditions(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-01_alpha", revision="1", proposal="# Proposal v2\n"))
    assert error(push(api, "001-01_alpha", revision="1"), 409, "conflict", "revision_conflict") == {
        "error": "revision conflict for '001-01_alpha': local=1, server=2",
        "code": "conflict",
        "kind": "revision_conflict",
        "change_id": "001-01_alpha",
        "local_revision": "1",
        "server_revision": "2",
    }
    resp = api.post(
        f"{P}/changes/001-01_alpha/sync",
        json={"specs": []},
        headers={**ADMIN_H, "If-Match": '"7"'},
    )
    assert error(resp, 409, "conflict", "revision_conflict")["local_revision"] == "7"
    body = error(push(api, "001-01_alpha"), 428, "precondition_required", "precondition_required")
    assert (body["change_id"], body["server_revision"]) == ("001-01_alpha", "2")
    error(push(api, "001-05_unknown", revision="4"), 404, "not_found", "change_not_found")


def test_blind_push_setting(app_factory: Any) -> None:
    api = app_factory(allow_blind_push=True)
    ok(push(api, "001-01_alpha"))
    assert ok(push(api, "001-01_alpha", proposal="# v2\n"))["new_revision"] == "2"


def test_push_body_errors(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    body = error(
        push(api, "001-01_alpha", revision="1", specs=[["auth", "a"], ["auth", "b"]]),
        400,
        "bad_request",
        "duplicate_capability",
    )
    assert body["capability"] == "auth"
    error(
        push(api, "001-01_alpha", revision="1", specs=[["../x", "a"]]),
        400,
        "bad_request",
        "invalid_id",
    )
    error(
        push(api, "001-01_alpha", revision="1", specs=[["a", "b", "c"]]),
        422,
        "unprocessable",
        "validation_error",
    )
    resp = api.post(f"{P}/changes/001-01_alpha/sync", json={"revision": "1"}, headers=ADMIN_H)
    body = error(resp, 422, "unprocessable", "validation_error")
    assert body["errors"] == [
        {"loc": ["body", "specs"], "msg": "Field required", "type": "missing"}
    ]
    # Nothing was written by any of them.
    assert ok(api.get(f"{P}/changes/001-01_alpha/sync", headers=ADMIN_H))["revision"] == "1"


def test_push_to_an_archived_change(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(api.post(f"{P}/changes/001-01_alpha/archive?force=true", headers=ADMIN_H))
    assert error(push(api, "001-01_alpha", revision="2"), 409, "conflict", "archived") == {
        "error": "change '001-01_alpha' is archived and can no longer be changed",
        "code": "conflict",
        "kind": "archived",
        "change_id": "001-01_alpha",
        "archived_at": T0,
    }


def test_push_with_a_lease_held_by_another(api: Any, clock: FakeClock) -> None:
    ok(push(api, "001-01_alpha"))
    ok(api.post(f"{P}/changes/001-01_alpha/claim", json={"holder": "agent-a"}, headers=ADMIN_H))
    body = error(
        push(api, "001-01_alpha", revision="1", headers={"X-Loom-Holder": "agent-b"}),
        409,
        "conflict",
        "lease_conflict",
    )
    assert (body["change_id"], body["holder"], body["expires_at"]) == (
        "001-01_alpha",
        "agent-a",
        "2026-09-21T14:28:20.000000Z",
    )
    error(push(api, "001-01_alpha", revision="1"), 409, "conflict", "lease_conflict")
    ok(push(api, "001-01_alpha", revision="1", headers={"X-Loom-Holder": "agent-a"}))
    stale = push(
        api,
        "001-01_alpha",
        revision="2",
        headers={"X-Loom-Holder": "agent-a", "X-Loom-Fencing-Token": "0"},
    )
    error(stale, 409, "conflict", "stale_fencing_token")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "\u00b2", "9" * 40])
def test_bad_fencing_token_header_is_400(api: Any, value: str) -> None:
    ok(push(api, "001-01_alpha"))
    # raw_request: the TestClient would re-encode "\u00b2" as UTF-8; a real client sends the
    # latin-1 byte, which Starlette decodes to "\u00b2" (isdigit() but not int()-able).
    status, headers, body = raw_request(
        api,
        "POST",
        f"{P}/changes/001-01_alpha/sync",
        headers={**ADMIN_H, "X-Loom-Fencing-Token": value},
        body={"specs": [], "revision": "1"},
    )
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["kind"] == "invalid_fencing_token"


def test_bad_holder_header_is_400(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    resp = push(api, "001-01_alpha", revision="1", headers={"X-Loom-Holder": " padded "})
    error(resp, 400, "bad_request", "invalid_id")


# --------------------------------------------------------------------------- §2.4 archive


MODULE_MD = "# Backend\n\n## Purpose\nServer.\n\n## Changes\n- [ ] 001-01_alpha\n"


def test_archive(api: Any, clock: FakeClock) -> None:
    ok(
        api.put(
            f"{P}/modules/001", json={"name": "Backend", "markdown": MODULE_MD}, headers=ADMIN_H
        )
    )
    ok(push(api, "001-01_alpha"))
    clock.advance(60)
    assert ok(api.post(f"{P}/changes/001-01_alpha/archive?force=true", headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "archived_at": T1,
    }
    clock.advance(60)
    # Idempotent: the original archived_at, nothing else changes.
    assert ok(
        api.post(f"{P}/changes/001-01_alpha/archive?force=true", json={}, headers=ADMIN_H)
    ) == {
        "change_id": "001-01_alpha",
        "archived_at": T1,
    }
    assert ok(api.get(f"{P}/specs", headers=ADMIN_H)) == [
        {"id": "auth", "path": ".ito/specs/auth/spec.md", "last_modified": T1}
    ]
    module = ok(api.get(f"{P}/modules/001", headers=ADMIN_H))
    assert module["markdown"] == MODULE_MD.replace("[ ]", "[x]")
    assert (
        ok(api.get(f"{P}/changes/001-01_alpha?lifecycle=archived", headers=ADMIN_H))["revision"]
        == "2"
    )


def test_archive_error_cases(api: Any) -> None:
    error(
        api.post(f"{P}/changes/001-09_none/archive?force=true", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )
    bad = "## MODIFIED Requirements\n\n### Requirement: Missing\nX.\n"
    ok(push(api, "001-01_alpha", specs=[["auth", ADDED], ["broken", bad]]))
    body = error(
        api.post(f"{P}/changes/001-01_alpha/archive?force=true", headers=ADMIN_H),
        400,
        "bad_request",
        "delta_invalid",
    )
    assert (body["capability"], body["problem"]) == ("broken", "modify_missing")
    assert ok(api.get(f"{P}/specs", headers=ADMIN_H)) == []
    assert ok(api.get(f"{P}/changes", headers=ADMIN_H))[0]["archived_at"] is None
    ok(push(api, "001-02_beta"))
    ok(api.post(f"{P}/changes/001-02_beta/claim", json={"holder": "a"}, headers=ADMIN_H))
    error(
        api.post(
            f"{P}/changes/001-02_beta/archive?force=true", headers={**ADMIN_H, "X-Loom-Holder": "b"}
        ),
        409,
        "conflict",
        "lease_conflict",
    )
    ok(
        api.post(
            f"{P}/changes/001-02_beta/archive?force=true", headers={**ADMIN_H, "X-Loom-Holder": "a"}
        )
    )
    error(
        api.get(f"{P}/changes/001-02_beta/lease", headers=ADMIN_H),
        404,
        "not_found",
        "lease_not_found",
    )


# --------------------------------------------------------------------------- §2.5 tasks


def task(tid: str, name: str, line: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": tid,
        "name": name,
        "wave": 1,
        "status": "pending",
        "updated_at": "2026-03-01",
        "dependencies": [],
        "files": [],
        "action": "",
        "requirements": [],
        "kind": "normal",
        "header_line_index": line,
    }
    body.update(overrides)
    return body


def test_get_tasks_enhanced(api: Any) -> None:
    ok(push(api, "001-02_enh", tasks=ENHANCED))
    assert ok(api.get(f"{P}/changes/001-02_enh/tasks", headers=ADMIN_H)) == {
        "change_id": "001-02_enh",
        "format": "enhanced",
        "tasks": [
            task("1.1", "First task", 6),
            task("1.2", "Second task", 11, dependencies=["1.1"]),
        ],
        "waves": [{"wave": 1, "depends_on": []}],
        "progress": {
            "total": 2,
            "complete": 0,
            "shelved": 0,
            "in_progress": 0,
            "pending": 2,
            "remaining": 2,
        },
        "ready": ["1.1"],
        "blocked": {"1.2": ["Dependency not complete: 1.1"]},
        "diagnostics": [],
        "revision": "1",
    }


def test_get_tasks_without_a_tasks_file(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=None))
    assert ok(api.get(f"{P}/changes/001-01_alpha/tasks", headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "format": "checkbox",
        "tasks": [],
        "waves": [],
        "progress": PROGRESS_0,
        "ready": [],
        "blocked": {},
        "diagnostics": [],
        "revision": "1",
    }
    error(
        api.get(f"{P}/changes/001-09_none/tasks", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )


def test_tasks_raw(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001-02_bare", tasks=None))
    assert ok(api.get(f"{P}/changes/001-01_alpha/tasks/raw", headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "content": CHECKBOX,
    }
    assert ok(api.get(f"{P}/changes/001-02_bare/tasks/raw", headers=ADMIN_H)) == {
        "change_id": "001-02_bare"
    }
    error(
        api.get(f"{P}/changes/001-09_none/tasks/raw", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )


def test_tasks_init(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=None))
    assert ok(api.post(f"{P}/changes/001-01_alpha/tasks/init", headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "existed": False,
        "revision": "2",
    }
    assert ok(api.post(f"{P}/changes/001-01_alpha/tasks/init", json={}, headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "existed": True,
        "revision": "2",
    }
    content = ok(api.get(f"{P}/changes/001-01_alpha/tasks/raw", headers=ADMIN_H))["content"]
    assert content.startswith("# Tasks for: 001-01_alpha\n")
    assert "- **Updated At**: 2026-09-21\n" in content
    error(
        api.post(f"{P}/changes/001-09_none/tasks/init", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )


def test_task_mutations(api: Any) -> None:
    ok(push(api, "001-02_enh", tasks=ENHANCED))
    base = f"{P}/changes/001-02_enh/tasks"
    today = {"updated_at": "2026-09-21"}
    assert ok(api.post(f"{base}/1.1/start", headers=ADMIN_H)) == {
        "change_id": "001-02_enh",
        "task": task("1.1", "First task", 6, status="in-progress", **today),
        "revision": "2",
    }
    assert ok(api.post(f"{base}/1.1/complete", json={"note": "shipped"}, headers=ADMIN_H)) == {
        "change_id": "001-02_enh",
        "task": task("1.1", "First task", 6, status="complete", **today),
        "revision": "3",
    }
    assert ok(api.post(f"{base}/1.2/shelve", json={"reason": "later"}, headers=ADMIN_H)) == {
        "change_id": "001-02_enh",
        "task": task("1.2", "Second task", 11, status="shelved", dependencies=["1.1"], **today),
        "revision": "4",
    }
    assert ok(api.post(f"{base}/1.2/unshelve", headers=ADMIN_H)) == {
        "change_id": "001-02_enh",
        "task": task("1.2", "Second task", 11, status="pending", dependencies=["1.1"], **today),
        "revision": "5",
    }
    assert ok(api.post(f"{base}/add", json={"title": "Third", "wave": 1}, headers=ADMIN_H)) == {
        "change_id": "001-02_enh",
        "task": task(
            "1.3",
            "Third",
            16,
            files=["path/to/file.rs"],
            action="[Describe what needs to be done]",
            verify="cargo test --workspace",
            done_when="[Success criteria]",
            **today,
        ),
        "revision": "6",
    }
    events = ok(api.get(f"{P}/events?entity=task", headers=ADMIN_H))
    assert [(e["op"], e["entity_id"], e.get("meta")) for e in events] == [
        ("status_change", "1.1", {"revision": 2}),
        ("status_change", "1.1", {"revision": 3, "note": "shipped"}),
        ("status_change", "1.2", {"revision": 4, "reason": "later"}),
        ("status_change", "1.2", {"revision": 5}),
        ("add", "1.3", {"revision": 6, "wave": 1, "name": "Third"}),
    ]


def test_task_mutation_errors(api: Any) -> None:
    ok(push(api, "001-02_enh", tasks=ENHANCED))
    ok(push(api, "001-03_none", tasks=None))
    ok(push(api, "001-04_box"))
    base = f"{P}/changes/001-02_enh/tasks"
    body = error(api.post(f"{base}/1.2/start", headers=ADMIN_H), 400, "bad_request", "task_blocked")
    assert body["task_id"] == "1.2"
    error(api.post(f"{base}/7.7/start", headers=ADMIN_H), 404, "not_found", "task_not_found")
    error(
        api.post(f"{P}/changes/001-09_x/tasks/1.1/start", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )
    body = error(
        api.post(f"{P}/changes/001-03_none/tasks/1.1/start", headers=ADMIN_H),
        404,
        "not_found",
        "tasks_missing",
    )
    assert 'Run "ito tasks init 001-03_none" first' in body["error"]
    ok(api.post(f"{base}/1.1/start", headers=ADMIN_H))
    error(api.post(f"{base}/1.1/start", headers=ADMIN_H), 400, "bad_request", "task_invalid_state")
    error(
        api.post(f"{P}/changes/001-04_box/tasks/1.1/shelve", headers=ADMIN_H),
        400,
        "bad_request",
        "checkbox_unsupported",
    )
    error(
        api.post(f"{base}/add", json={}, headers=ADMIN_H), 422, "unprocessable", "validation_error"
    )
    for wave in (0, -1, 10_000):  # a rule violation (API.md §2.5), not a schema error
        error(
            api.post(f"{base}/add", json={"title": "x", "wave": wave}, headers=ADMIN_H),
            400,
            "bad_request",
            "invalid_wave",
        )
    error(
        api.post(f"{base}/1.1/complete", json={"note": 5}, headers=ADMIN_H),
        422,
        "unprocessable",
        "validation_error",
    )
    # Every failure left the revision where the one successful start put it.
    assert ok(api.get(f"{base}", headers=ADMIN_H))["revision"] == "2"


# --------------------------------------------------------------------------- §2.6 modules/specs


def test_modules(api: Any, clock: FakeClock) -> None:
    assert ok(api.get(f"{P}/modules", headers=ADMIN_H)) == []
    put = api.put(
        f"{P}/modules/1",
        json={"name": "Backend", "markdown": "# Backend\n\n## Purpose\nServer side.\n"},
        headers=ADMIN_H,
    )
    assert ok(put) == {
        "id": "001",
        "name": "Backend",
        "parent_id": None,
        "description": None,
        "markdown": "# Backend\n\n## Purpose\nServer side.\n",
        "changes": [],
        "sub_modules": [],
    }
    ok(api.put(f"{P}/modules/001.02", json={"name": "Auth"}, headers=ADMIN_H))
    ok(push(api, "001-01_alpha"))
    ok(push(api, "001.02-01_sub"))
    ok(push(api, "001.02-02_sub"))
    assert ok(api.get(f"{P}/modules", headers=ADMIN_H)) == [
        {
            "id": "001",
            "name": "Backend",
            "change_count": 1,
            "sub_modules": [{"id": "001.02", "name": "Auth", "change_count": 2}],
        }
    ]
    assert ok(api.get(f"{P}/modules/1", headers=ADMIN_H)) == {
        "id": "001",
        "name": "Backend",
        "parent_id": None,
        "description": None,
        "markdown": "# Backend\n\n## Purpose\nServer side.\n",
        # Like Ito's list_by_module (and ?module=001), a module's changes include those of
        # its sub-modules; change_count counts direct changes only (upstream rule).
        "changes": ["001-01_alpha", "001.02-01_sub", "001.02-02_sub"],
        "sub_modules": [{"id": "001.02", "name": "Auth", "change_count": 2}],
    }
    assert ok(api.get(f"{P}/modules/1.2", headers=ADMIN_H)) == {
        "id": "001.02",
        "name": "Auth",
        "parent_id": "001",
        "description": None,
        "markdown": None,
        "changes": ["001.02-01_sub", "001.02-02_sub"],
        "sub_modules": [],
    }


def test_module_errors(api: Any) -> None:
    error(api.get(f"{P}/modules/999", headers=ADMIN_H), 404, "not_found", "module_not_found")
    error(api.get(f"{P}/modules/abc", headers=ADMIN_H), 400, "bad_request", "invalid_id")
    error(
        api.put(f"{P}/modules/002.01", json={"name": "Orphan"}, headers=ADMIN_H),
        404,
        "not_found",
        "module_not_found",
    )
    error(
        api.put(f"{P}/modules/002", json={"name": " "}, headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_name",
    )
    error(
        api.put(f"{P}/modules/002", json={}, headers=ADMIN_H),
        422,
        "unprocessable",
        "validation_error",
    )
    assert ok(api.get(f"{P}/modules", headers=ADMIN_H)) == []


def test_specs(api: Any, clock: FakeClock) -> None:
    assert ok(api.get(f"{P}/specs", headers=ADMIN_H)) == []
    assert ok(api.put(f"{P}/specs/beta", json={"markdown": "# Beta\n"}, headers=ADMIN_H)) == {
        "id": "beta",
        "path": ".ito/specs/beta/spec.md",
        "markdown": "# Beta\n",
        "last_modified": T0,
        "revision": 1,
    }
    clock.advance(60)
    ok(api.put(f"{P}/specs/alpha", json={"markdown": "# Alpha\n"}, headers=ADMIN_H))
    assert ok(api.get(f"{P}/specs", headers=ADMIN_H)) == [
        {"id": "alpha", "path": ".ito/specs/alpha/spec.md", "last_modified": T1},
        {"id": "beta", "path": ".ito/specs/beta/spec.md", "last_modified": T0},
    ]
    ok(api.put(f"{P}/specs/beta", json={"markdown": "# Beta 2\n"}, headers=ADMIN_H))
    assert ok(api.get(f"{P}/specs/beta", headers=ADMIN_H)) == {
        "id": "beta",
        "path": ".ito/specs/beta/spec.md",
        "markdown": "# Beta 2\n",
        "last_modified": T1,
        "revision": 2,
    }


def test_spec_errors(api: Any) -> None:
    assert error(
        api.get(f"{P}/specs/missing", headers=ADMIN_H), 404, "not_found", "spec_not_found"
    ) == {
        "error": "spec not found: missing",
        "code": "not_found",
        "kind": "spec_not_found",
        "spec_id": "missing",
    }
    error(api.get(f"{P}/specs/Bad", headers=ADMIN_H), 400, "bad_request", "invalid_id")
    error(
        api.put(f"{P}/specs/a..b", json={"markdown": "x"}, headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_id",
    )
    error(
        api.put(f"{P}/specs/ok", json={"markdown": None}, headers=ADMIN_H),
        422,
        "unprocessable",
        "validation_error",
    )


# --------------------------------------------------------------------------- §2.6b import


def test_import_and_export(api: Any) -> None:
    tree = {
        "mode": "create-only",
        "modules": [
            {"id": "024", "name": "ito-backend", "markdown": "# Backend\n"},
            {"id": "024.01", "name": "sub", "markdown": "# Sub\n"},
        ],
        "specs": [{"id": "backend-auth", "markdown": "# Auth\n"}],
        "changes": [
            {
                "id": "024-01_add-shared-state-api",
                "proposal": "# P\n",
                "design": None,
                "tasks": "- [x] 1.1 done\n",
                "specs": [["cap", "## ADDED Requirements\n"]],
                "metadata": "schema: spec-driven\ncreated: 2026-03-01\n",
                "archived_at": "2026-03-02T00:00:00Z",
            },
            {"id": "024.01-01_sub", "proposal": "# S\n"},
        ],
    }
    assert ok(api.post(f"{P}/import", json=tree, headers=ADMIN_H)) == {
        "created": 5,
        "updated": 0,
        "unchanged": 0,
        "conflicts": [],
    }
    assert ok(api.post(f"{P}/import", json=tree, headers=ADMIN_H)) == {
        "created": 0,
        "updated": 0,
        "unchanged": 5,
        "conflicts": [],
    }
    exported = ok(api.get(f"{P}/export", headers=ADMIN_H))
    assert exported == {
        "modules": [
            {"id": "024", "name": "ito-backend", "description": None, "markdown": "# Backend\n"},
            {"id": "024.01", "name": "sub", "description": None, "markdown": "# Sub\n"},
        ],
        "specs": [{"id": "backend-auth", "markdown": "# Auth\n"}],
        "changes": [
            {
                "id": "024-01_add-shared-state-api",
                "proposal": "# P\n",
                "design": None,
                "tasks": "- [x] 1.1 done\n",
                "specs": [["cap", "## ADDED Requirements\n"]],
                "metadata": "schema: spec-driven\ncreated: 2026-03-01\n",
                "archived_at": "2026-03-02T00:00:00.000000Z",
                "revision": "1",
            },
            {
                "id": "024.01-01_sub",
                "proposal": "# S\n",
                "design": None,
                "tasks": None,
                "specs": [],
                "metadata": None,
                "archived_at": None,
                "revision": "1",
            },
        ],
    }
    # The export is itself a valid import body: re-importing it changes nothing.
    again = ok(api.post(f"{P}/import", json=exported, headers=ADMIN_H))
    assert again == {"created": 0, "updated": 0, "unchanged": 5, "conflicts": []}
    tree["changes"][1]["proposal"] = "# S2\n"
    assert ok(api.post(f"{P}/import", json=tree, headers=ADMIN_H))["conflicts"] == [
        {"kind": "change", "id": "024.01-01_sub", "reason": "exists with different content"}
    ]
    tree["mode"] = "overwrite"
    assert ok(api.post(f"{P}/import", json=tree, headers=ADMIN_H)) == {
        "created": 0,
        "updated": 1,
        "unchanged": 4,
        "conflicts": [],
    }


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"changes": [{"id": "../x"}]}, 400, "invalid_id"),
        ({"specs": [{"id": "A", "markdown": "x"}]}, 400, "invalid_id"),
        ({"modules": [{"id": "1234", "name": "x"}]}, 400, "invalid_id"),
        ({"changes": [{"id": "001-01_a", "specs": [["../c", "x"]]}]}, 400, "invalid_id"),
        ({"changes": [{"id": "001-01_a", "archived_at": "yesterday"}]}, 400, "invalid_timestamp"),
        ({"mode": "merge"}, 422, "validation_error"),
        ({"changes": [{"proposal": "no id"}]}, 422, "validation_error"),
    ],
)
def test_import_errors_import_nothing(
    api: Any, body: dict[str, Any], status: int, kind: str
) -> None:
    good = {"id": "009-01_good", "proposal": "# fine\n"}
    body = {**body, "changes": [good, *body.get("changes", [])]}
    code = "bad_request" if status == 400 else "unprocessable"
    error(api.post(f"{P}/import", json=body, headers=ADMIN_H), status, code, kind)
    assert ok(api.get(f"{P}/export", headers=ADMIN_H)) == {
        "modules": [],
        "specs": [],
        "changes": [],
    }


# --------------------------------------------------------------------------- §2.7 leases


def test_lease_routes(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    claim = {
        "change_id": "001-01_alpha",
        "holder": "agent-7",
        "acquired_at": T0,
        "expires_at": "2026-09-21T14:28:20.000000Z",
        "ttl_seconds": 900,
        "fencing_token": 1,
    }
    url = f"{P}/changes/001-01_alpha"
    assert ok(api.post(f"{url}/claim", json={"holder": "agent-7"}, headers=ADMIN_H)) == claim
    assert ok(api.get(f"{url}/lease", headers=ADMIN_H)) == claim
    assert ok(api.get(f"{P}/leases", headers=ADMIN_H)) == [claim]
    assert ok(
        api.post(f"{url}/heartbeat", json={"holder": "agent-7", "ttl_seconds": 60}, headers=ADMIN_H)
    ) == {**claim, "expires_at": "2026-09-21T14:14:20.000000Z", "ttl_seconds": 60}
    listed = ok(api.get(f"{P}/changes", headers=ADMIN_H))[0]["lease"]
    assert listed == {
        "holder": "agent-7",
        "acquired_at": T0,
        "expires_at": "2026-09-21T14:14:20.000000Z",
        "fencing_token": 1,
    }
    error(
        api.post(f"{url}/claim", json={"holder": "other"}, headers=ADMIN_H),
        409,
        "conflict",
        "lease_conflict",
    )
    error(
        api.post(f"{url}/heartbeat", json={"holder": "other"}, headers=ADMIN_H),
        409,
        "conflict",
        "not_lease_holder",
    )
    error(
        api.post(f"{url}/release", json={"holder": "other"}, headers=ADMIN_H),
        409,
        "conflict",
        "not_lease_holder",
    )
    error(
        api.post(
            f"{url}/release?force=true", json={"holder": "other"}, headers=auth(project_token())
        ),
        403,
        "forbidden",
        "admin_required",
    )
    assert ok(api.post(f"{url}/release", json={"holder": "agent-7"}, headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "released": True,
    }
    assert ok(api.post(f"{url}/release", json={"holder": "agent-7"}, headers=ADMIN_H)) == {
        "change_id": "001-01_alpha",
        "released": False,
    }
    error(api.get(f"{url}/lease", headers=ADMIN_H), 404, "not_found", "lease_not_found")
    error(
        api.post(f"{url}/claim", json={"holder": "a", "ttl_seconds": 1}, headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_ttl",
    )
    error(
        api.post(f"{url}/claim", json={"holder": ""}, headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_id",
    )
    error(
        api.post(f"{P}/changes/001-09_x/claim", json={"holder": "a"}, headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )
    alloc = ok(api.post(f"{P}/allocate", json={"holder": "agent-8"}, headers=ADMIN_H))
    assert alloc == {"claim": {**claim, "holder": "agent-8", "fencing_token": 2}}
    assert ok(api.post(f"{P}/allocate", json={"holder": "agent-9"}, headers=ADMIN_H)) == {
        "claim": None
    }
    ok(api.post(f"{url}/archive?force=true", headers={**ADMIN_H, "X-Loom-Holder": "agent-8"}))
    error(
        api.post(f"{url}/claim", json={"holder": "agent-7"}, headers=ADMIN_H),
        409,
        "conflict",
        "archived",
    )


# --------------------------------------------------------------------------- §2.8 events


def event(entity_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": "task",
        "entity_id": entity_id,
        "scope": "test-change",
        "op": "create",
        "to": "pending",
        "actor": "cli",
        "by": "@test",
        "ctx": {"session_id": "test-session"},
        **extra,
    }


def test_events_ingest_and_list(api: Any) -> None:
    batch = [event("5.1"), event("5.2", op="note", extra_field={"kept": [1, 2]})]
    assert ok(
        api.post(f"{P}/events", json={"events": batch, "idempotency_key": "key-1"}, headers=ADMIN_H)
    ) == {"accepted": 2, "duplicates": 0}
    assert ok(
        api.post(f"{P}/events", json={"events": batch, "idempotency_key": "key-1"}, headers=ADMIN_H)
    ) == {"accepted": 0, "duplicates": 2}
    assert ok(
        api.post(f"{P}/events", json={"events": [], "idempotency_key": ""}, headers=ADMIN_H)
    ) == {"accepted": 0, "duplicates": 0}
    ok(
        api.post(
            f"{P}/events",
            json={"events": [event("6.1", scope="other")], "idempotency_key": "key-2"},
            headers=ADMIN_H,
        )
    )
    resp = api.get(f"{P}/events", headers=ADMIN_H)
    assert ok(resp) == [
        {**batch[0], "seq": 1},
        {**batch[1], "seq": 2},
        {**event("6.1", scope="other"), "seq": 3},
    ]
    assert "x-next-since" not in resp.headers
    assert [e["seq"] for e in ok(api.get(f"{P}/events?since=1", headers=ADMIN_H))] == [2, 3]
    assert [e["seq"] for e in ok(api.get(f"{P}/events?op=note", headers=ADMIN_H))] == [2]
    assert [e["seq"] for e in ok(api.get(f"{P}/events?scope=other", headers=ADMIN_H))] == [3]
    assert [e["seq"] for e in ok(api.get(f"{P}/events?entity=change", headers=ADMIN_H))] == []
    page = api.get(f"{P}/events?limit=2", headers=ADMIN_H)
    assert [e["seq"] for e in ok(page)] == [1, 2]
    assert page.headers["x-next-since"] == "2"
    page = api.get(f"{P}/events?limit=2&since=2", headers=ADMIN_H)
    assert [e["seq"] for e in ok(page)] == [3]
    assert page.headers["x-next-since"] == "3"
    page = api.get(f"{P}/events?limit=2&since=3", headers=ADMIN_H)
    assert ok(page) == []
    assert page.headers["x-next-since"] == "3"


def test_events_of_an_unknown_project(api: Any) -> None:
    resp = api.get("/api/v1/projects/nobody/nothing/events?limit=5", headers=ADMIN_H)
    assert ok(resp) == []
    assert resp.headers["x-next-since"] == "0"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"events": [event("1")], "idempotency_key": ""}, 400, "invalid_idempotency_key"),
        ({"events": [event("1")]}, 400, "invalid_idempotency_key"),
        ({"events": [event("1")], "idempotency_key": "a b"}, 400, "invalid_idempotency_key"),
        ({"events": [event("1")], "idempotency_key": "k" * 129}, 400, "invalid_idempotency_key"),
        ({"events": [event("1"), event("2", v=2)], "idempotency_key": "k"}, 400, "invalid_event"),
        ({"events": [event("1", ts="yesterday")], "idempotency_key": "k"}, 400, "invalid_event"),
        ({"events": [{**event("1"), "ctx": {}}], "idempotency_key": "k"}, 400, "invalid_event"),
        ({"events": ["not an object"], "idempotency_key": "k"}, 400, "invalid_event"),
        ({"events": {"not": "a list"}, "idempotency_key": "k"}, 422, "validation_error"),
        ({"idempotency_key": "k"}, 422, "validation_error"),
    ],
)
def test_events_ingest_errors(api: Any, body: dict[str, Any], status: int, kind: str) -> None:
    code = "bad_request" if status == 400 else "unprocessable"
    error(api.post(f"{P}/events", json=body, headers=ADMIN_H), status, code, kind)
    assert ok(api.get(f"{P}/events", headers=ADMIN_H)) == []


def test_invalid_event_names_its_index(api: Any) -> None:
    body = {"events": [event("1"), event("2"), {**event("3"), "v": True}], "idempotency_key": "k"}
    resp = api.post(f"{P}/events", json=body, headers=ADMIN_H)
    assert error(resp, 400, "bad_request", "invalid_event")["index"] == 2


def test_events_key_reused_with_a_different_batch(api: Any) -> None:
    ok(
        api.post(
            f"{P}/events", json={"events": [event("1")], "idempotency_key": "k"}, headers=ADMIN_H
        )
    )
    error(
        api.post(
            f"{P}/events", json={"events": [event("2")], "idempotency_key": "k"}, headers=ADMIN_H
        ),
        422,
        "unprocessable",
        "idempotency_key_reused",
    )
    assert len(ok(api.get(f"{P}/events", headers=ADMIN_H))) == 1


@pytest.mark.parametrize(
    "query", ["since=-1", "limit=0", "limit=5001", "since=x", "entity=" + "e" * 101]
)
def test_events_bad_queries(api: Any, query: str) -> None:
    error(api.get(f"{P}/events?{query}", headers=ADMIN_H), 400, "bad_request", "invalid_parameter")
