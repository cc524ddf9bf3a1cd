"""Overlaps, spec revisions and history, stale-base refusal at archive, overlap-aware
allocation: in process, on SQLite and PostgreSQL (the ``api`` fixture is parametrised)."""

from __future__ import annotations

from typing import Any

from conftest import auth, project_token

from .conftest import ADMIN_H, P, error, ok, push

SPEC = (
    "# auth\n\n## Purpose\nAuth.\n\n## Requirements\n\n"
    "### Requirement: Login\nUsers log in with a password.\n\n"
    "### Requirement: Logout\nUsers log out.\n"
)
A_DELTA = (
    "## MODIFIED Requirements\n\n### Requirement: Login\n"
    "Users log in with a password.\nLogin is rate limited.\n"
)
B_DELTA = (
    "## MODIFIED Requirements\n\n### Requirement: Login\n"
    "Users log in with a password or a passkey.\n"
)
MERGED = (
    "## MODIFIED Requirements\n\n### Requirement: Login\n"
    "Users log in with a password or a passkey.\nLogin is rate limited.\n"
)
C_DELTA = "## ADDED Requirements\n\n### Requirement: Sessions\nSessions expire.\n"
TASKS = "## 1. Tasks\n- [ ] 1.1 Do it\n"
A, B, C = "001-01_rate-limit", "001-02_passkeys", "001-03_sessions"


def _seed(api: Any) -> None:
    ok(api.put(f"{P}/specs/auth", json={"markdown": SPEC}, headers=ADMIN_H))
    ok(push(api, A, tasks=TASKS, specs=[["auth", A_DELTA]]))


def _spec(api: Any) -> dict[str, Any]:
    result: dict[str, Any] = ok(api.get(f"{P}/specs/auth", headers=ADMIN_H))
    return result


def _events(api: Any, op: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ok(api.get(f"{P}/events?op={op}", headers=ADMIN_H))
    return result


def test_two_changes_modifying_one_requirement_list_each_other(api: Any) -> None:
    _seed(api)
    pushed = ok(push(api, B, tasks=TASKS, specs=[["auth", B_DELTA]]))
    # The push that created the overlap says so (a warning: it was accepted).
    assert pushed["new_revision"] == "1"
    assert pushed["overlaps"] == [
        {"change_id": A, "requirements": [{"capability": "auth", "requirement": "Login"}]}
    ]
    ok(push(api, C, tasks=TASKS, specs=[["auth", C_DELTA]]))

    a_view = ok(api.get(f"{P}/changes/{A}/overlaps", headers=ADMIN_H))
    assert a_view["change_id"] == A
    assert [(o["change_id"], o["strength"]) for o in a_view["overlaps"]] == [
        (B, "strong"),
        (C, "weak"),
    ]
    assert a_view["overlaps"][0]["requirements"] == [
        {
            "capability": "auth",
            "requirement": "Login",
            "ops": ["MODIFIED"],
            "other_ops": ["MODIFIED"],
        }
    ]
    assert a_view["overlaps"][0]["work_status"] == "ready"
    assert a_view["overlaps"][0]["lease"] is None
    b_view = ok(api.get(f"{P}/changes/{B}/overlaps", headers=ADMIN_H))
    assert [o["change_id"] for o in b_view["overlaps"] if o["strength"] == "strong"] == [A]

    ok(api.post(f"{P}/changes/{B}/claim", json={"holder": "bee"}, headers=ADMIN_H))
    pairs = ok(api.get(f"{P}/overlaps", headers=ADMIN_H))["overlaps"]
    assert [(p["a"], p["b"], p["strength"]) for p in pairs] == [
        (A, B, "strong"),
        (A, C, "weak"),
        (B, C, "weak"),
    ]
    assert pairs[0]["b_lease"] == {"holder": "bee"}
    strong = ok(api.get(f"{P}/overlaps?strength=strong", headers=ADMIN_H))["overlaps"]
    assert [(p["a"], p["b"]) for p in strong] == [(A, B)]

    # One audit event for the new strong overlap; re-pushing the same deltas adds none.
    events = _events(api, "overlap")
    assert [(e["entity_id"], e["meta"]["with"]) for e in events] == [(B, A)]
    ok(
        push(
            api,
            B,
            tasks=TASKS,
            specs=[["auth", B_DELTA]],
            revision="1",
            headers={"X-Loom-Holder": "bee"},
        )
    )
    assert len(_events(api, "overlap")) == 1


def test_overlap_routes_errors_and_auth(api: Any) -> None:
    _seed(api)
    error(
        api.get(f"{P}/changes/009-01_nope/overlaps", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )
    assert api.get(f"{P}/overlaps").status_code == 401
    # A project token of a project the server does not know matches no scope (API.md §0).
    other = auth(project_token("acme", "other"))
    assert api.get(f"{P}/overlaps", headers=other).status_code == 401
    own = auth(project_token())
    assert ok(api.get(f"{P}/overlaps", headers=own)) == {"overlaps": []}
    error(
        api.get(f"{P}/overlaps?strength=huge", headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_parameter",
    )
    # Another project sees nothing of this one.
    assert ok(api.get("/api/v1/projects/acme/empty/overlaps", headers=ADMIN_H)) == {"overlaps": []}


def _finish(api: Any, change_id: str, headers: dict[str, str] | None = None) -> None:
    """Complete the change's one task: an archive refuses unfinished changes (409
    ``change_unfinished``) before it looks at spec bases."""
    task = ok(api.get(f"{P}/changes/{change_id}/tasks", headers=ADMIN_H))["tasks"][0]
    if task["status"] != "complete":
        url = f"{P}/changes/{change_id}/tasks/1.1/complete"
        ok(api.post(url, headers=headers or ADMIN_H))


def _archive(
    api: Any,
    change_id: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    *,
    finish: bool = True,
) -> Any:
    if finish:
        _finish(api, change_id, headers)
    return api.post(f"{P}/changes/{change_id}/archive{query}", headers=headers or ADMIN_H)


def test_archive_a_then_b_refuses_b_and_changes_nothing(api: Any) -> None:
    _seed(api)
    ok(push(api, B, tasks=TASKS, specs=[["auth", B_DELTA]]))
    assert ok(api.get(f"{P}/changes/{B}/sync", headers=ADMIN_H))["spec_bases"] == {"auth": 1}
    ok(_archive(api, A))
    after_a = _spec(api)
    assert after_a["revision"] == 2
    assert "Login is rate limited." in after_a["markdown"]
    _finish(api, B)
    events_before = ok(api.get(f"{P}/events", headers=ADMIN_H))

    body = error(_archive(api, B, finish=False), 409, "conflict", "stale_spec_base")
    assert body["change_id"] == B
    (stale,) = body["requirements"]
    assert stale["capability"] == "auth"
    assert stale["requirement"] == "Login"
    assert stale["op"] == "MODIFIED"
    assert (stale["base_revision"], stale["current_revision"]) == (1, 2)
    assert stale["changed_by"] == [{"revision": 2, "change_id": A, "source": "archive"}]
    assert stale["base"] == "### Requirement: Login\nUsers log in with a password."
    assert stale["current"] == (
        "### Requirement: Login\nUsers log in with a password.\nLogin is rate limited."
    )
    assert stale["theirs"] == ("### Requirement: Login\nUsers log in with a password or a passkey.")
    # Nothing written: the spec, its history, the change and the log are as they were.
    assert _spec(api) == after_a
    history = ok(api.get(f"{P}/specs/auth/history", headers=ADMIN_H))["revisions"]
    assert [(r["revision"], r["change_id"], r["source"]) for r in history] == [
        (1, None, "put"),
        (2, A, "archive"),
    ]
    assert ok(api.get(f"{P}/changes/{B}", headers=ADMIN_H))["archived_at"] is None
    assert ok(api.get(f"{P}/events", headers=ADMIN_H)) == events_before


def test_rebase_then_push_then_archive_keeps_both_edits(api: Any) -> None:
    _seed(api)
    ok(push(api, B, tasks=TASKS, specs=[["auth", B_DELTA]]))
    ok(_archive(api, A))
    error(_archive(api, B), 409, "conflict", "stale_spec_base")
    pulled = ok(api.get(f"{P}/changes/{B}/sync", headers=ADMIN_H))
    assert (pulled["spec_bases"], pulled["spec_revisions"]) == ({"auth": 1}, {"auth": 2})
    base = ok(api.get(f"{P}/specs/auth?revision=1", headers=ADMIN_H))
    assert (base["markdown"], base["revision"]) == (SPEC, 1)
    # The merged delta, now written against revision 2.
    ok(
        api.post(
            f"{P}/changes/{B}/sync",
            json={
                "proposal": "# Proposal\n",
                "tasks": TASKS,
                "specs": [["auth", MERGED]],
                "revision": pulled["revision"],
                "spec_bases": pulled["spec_revisions"],
            },
            headers=ADMIN_H,
        )
    )
    ok(_archive(api, B))
    final = _spec(api)
    assert final["revision"] == 3
    assert "Users log in with a password or a passkey.\nLogin is rate limited." in final["markdown"]
    assert "### Requirement: Logout\nUsers log out." in final["markdown"]
    history = ok(api.get(f"{P}/specs/auth/history", headers=ADMIN_H))["revisions"]
    assert [r["change_id"] for r in history] == [None, A, B]


def test_force_archive_is_for_the_holder_or_an_admin_and_is_recorded(api: Any) -> None:
    _seed(api)
    ok(push(api, B, tasks=TASKS, specs=[["auth", B_DELTA]]))
    ok(_archive(api, A))
    project_h = auth(project_token())
    error(_archive(api, B, "?force=true", project_h), 403, "forbidden", "force_not_allowed")
    ok(api.post(f"{P}/changes/{B}/claim", json={"holder": "bee"}, headers=project_h))
    error(
        _archive(api, B, "?force=true", {**project_h, "X-Loom-Holder": "wasp"}),
        409,
        "conflict",
        "lease_conflict",
    )
    assert _spec(api)["revision"] == 2
    ok(_archive(api, B, "?force=true", {**project_h, "X-Loom-Holder": "bee"}))
    final = _spec(api)
    assert final["revision"] == 3
    assert "passkey" in final["markdown"] and "rate limited" not in final["markdown"]
    (event,) = [e for e in _events(api, "archive") if e["entity_id"] == B]
    assert event["meta"]["forced"] is True
    assert event["meta"]["stale_spec_base"] == [
        {"capability": "auth", "requirement": "Login", "op": "MODIFIED", "base_revision": 1}
    ]


def test_added_requirement_that_now_exists_is_refused(api: Any) -> None:
    ok(api.put(f"{P}/specs/auth", json={"markdown": SPEC}, headers=ADMIN_H))
    ok(push(api, A, tasks=TASKS, specs=[["auth", C_DELTA]]))
    ok(push(api, B, tasks=TASKS, specs=[["auth", C_DELTA.replace("expire", "last")]]))
    ok(_archive(api, A))
    body = error(_archive(api, B), 409, "conflict", "stale_spec_base")
    (stale,) = body["requirements"]
    assert (stale["requirement"], stale["op"], stale["base"]) == ("Sessions", "ADDED", None)
    assert stale["current"] == "### Requirement: Sessions\nSessions expire."


def test_a_change_touching_other_requirements_archives_normally(api: Any) -> None:
    _seed(api)
    ok(push(api, C, tasks=TASKS, specs=[["auth", C_DELTA]]))
    ok(_archive(api, A))
    ok(_archive(api, C))  # its base is older, but Sessions did not change since
    assert _spec(api)["revision"] == 3


def test_spec_revisions_history_and_bad_bases(api: Any) -> None:
    ok(api.put(f"{P}/specs/auth", json={"markdown": SPEC}, headers=ADMIN_H))
    ok(api.put(f"{P}/specs/auth", json={"markdown": SPEC}, headers=ADMIN_H))  # same: no bump
    assert _spec(api)["revision"] == 1
    ok(api.put(f"{P}/specs/auth", json={"markdown": SPEC + "\n"}, headers=ADMIN_H))
    assert _spec(api)["revision"] == 2
    old = ok(api.get(f"{P}/specs/auth?revision=1", headers=ADMIN_H))
    assert old["markdown"] == SPEC and old["change_id"] is None
    error(
        api.get(f"{P}/specs/auth?revision=9", headers=ADMIN_H),
        404,
        "not_found",
        "spec_revision_not_found",
    )
    error(api.get(f"{P}/specs/nope/history", headers=ADMIN_H), 404, "not_found", "spec_not_found")
    error(
        api.get(f"{P}/specs/auth?revision=0", headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_parameter",
    )
    body = {"proposal": "# P\n", "tasks": TASKS, "specs": [["auth", A_DELTA]]}
    bad = error(
        api.post(
            f"{P}/changes/{A}/sync", json={**body, "spec_bases": {"auth": 3}}, headers=ADMIN_H
        ),
        400,
        "bad_request",
        "invalid_spec_base",
    )
    assert bad["current_revision"] == 2
    assert api.get(f"{P}/changes/{A}", headers=ADMIN_H).status_code == 404  # nothing written
    ok(api.post(f"{P}/changes/{A}/sync", json={**body, "spec_bases": {"auth": 1}}, headers=ADMIN_H))
    assert ok(api.get(f"{P}/changes/{A}/sync", headers=ADMIN_H))["spec_bases"] == {"auth": 1}
    # A push without spec_bases keeps the recorded base (it was not rebased).
    ok(api.post(f"{P}/changes/{A}/sync", json={**body, "revision": "1"}, headers=ADMIN_H))
    assert ok(api.get(f"{P}/changes/{A}/sync", headers=ADMIN_H))["spec_bases"] == {"auth": 1}


def _allocate(api: Any, holder: str, **extra: Any) -> Any:
    return ok(api.post(f"{P}/allocate", json={"holder": holder, **extra}, headers=ADMIN_H))["claim"]


def test_allocation_steers_away_from_overlaps(api: Any) -> None:
    _seed(api)
    ok(push(api, B, tasks=TASKS, specs=[["auth", B_DELTA]]))
    ok(push(api, C, tasks=TASKS, specs=[["auth", C_DELTA]]))
    first = _allocate(api, "one")
    assert first["change_id"] == A and "overlaps" not in first
    # B overlaps A (leased): C comes first although B sorts before it.
    second = _allocate(api, "two")
    assert second["change_id"] == C and "overlaps" not in second
    # Only B is left: strict refuses it, prefer hands it out and says so, off says nothing.
    assert _allocate(api, "three", avoid_overlap="strict") is None
    third = _allocate(api, "three")
    assert (third["change_id"], third["overlaps"]) == (B, [A])
    ok(api.post(f"{P}/changes/{B}/release", json={"holder": "three"}, headers=ADMIN_H))
    fourth = _allocate(api, "four", avoid_overlap="off")
    assert fourth["change_id"] == B and "overlaps" not in fourth
    error(
        api.post(f"{P}/allocate", json={"holder": "x", "avoid_overlap": "maybe"}, headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_request",
    )


def test_in_progress_changes_count_as_busy(api: Any) -> None:
    _seed(api)
    ok(push(api, B, tasks=TASKS, specs=[["auth", B_DELTA]]))
    ok(api.post(f"{P}/changes/{A}/tasks/1.1/start", headers=ADMIN_H))  # in progress, no lease
    assert ok(api.get(f"{P}/changes/{A}", headers=ADMIN_H))["work_status"] == "in-progress"
    assert _allocate(api, "x", avoid_overlap="strict", changes=[B]) is None
