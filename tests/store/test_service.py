"""The store contract, through the service layer, on SQLite and PostgreSQL (STYLE.md §2).

Each use case is one transaction: these tests check the effect, the revision bookkeeping,
the audit events, and that a failing use case leaves every table exactly as it was.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import FakeClock
from loom.errors import (
    ArchivedConflict,
    LeaseConflict,
    NotFound,
    PreconditionRequired,
    RevisionConflict,
    Unprocessable,
    ValidationError,
)
from loom.service import archive, catalog, changes, events, imports, leases, tasks
from loom.service._context import Actor, ServiceContext
from loom.service.changes import Bundle
from loom.store.engine import Database

from ._snapshot import snapshot
from .conftest import ACTOR, OTHER, PROJECT

T0 = "2026-09-21T14:13:20.000000Z"
T1 = "2026-09-21T14:14:20.000000Z"

CHECKBOX = "- [ ] 1.1 First\n- [x] 1.2 Done\n"
ENHANCED = (
    "# Tasks for: 001-01_alpha\n\n## Wave 1\n\n- **Depends On**: None\n\n"
    "### Task 1.1: First task\n- **Dependencies**: None\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [ ] pending\n\n"
    "### Task 1.2: Second task\n- **Dependencies**: Task 1.1\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [ ] pending\n"
)
BASE_SPEC = (
    "# auth\n\n## Purpose\nAuth.\n\n## Requirements\n\n"
    "### Requirement: Login\nUsers log in.\n\n### Requirement: Logout\nUsers log out.\n"
)
DELTA = (
    "## ADDED Requirements\n\n### Requirement: Tokens\nTokens expire.\n\n"
    "## MODIFIED Requirements\n\n### Requirement: Login\nUsers log in with a password.\n"
)
NEW_CAP_DELTA = (
    "## ADDED Requirements\n\n### Requirement: Remote archive\nRemote archive behavior.\n"
)
MODULE_MD = (
    "# Backend\n\n## Purpose\nServer side.\n\n## Changes\n"
    "- [ ] 001-01_alpha\n- [ ] 001-01_alpha-b\n- [ ] 001-02_beta\n"
)


def bundle(
    proposal: str | None = "# Proposal\n",
    design: str | None = None,
    tasks_md: str | None = CHECKBOX,
    specs: tuple[tuple[str, str], ...] = (("auth", NEW_CAP_DELTA),),
) -> Bundle:
    return Bundle(proposal, design, tasks_md, specs)


def push(ctx: ServiceContext, b: Bundle, revision: str | None = None, cid: str = "001-01_alpha"):
    return changes.push_bundle(ctx, PROJECT, cid, b, revision, ACTOR)


def all_events(ctx: ServiceContext, project: Any = PROJECT) -> list[dict[str, Any]]:
    items, _ = events.read_events(
        ctx, project, since=None, limit=None, entity=None, scope=None, op=None
    )
    return items


# --------------------------------------------------------------------------- push


def test_push_creates_a_change_at_revision_1(ctx: ServiceContext) -> None:
    assert push(ctx, bundle()) == {"change_id": "001-01_alpha", "new_revision": "1"}
    assert changes.pull_bundle(ctx, PROJECT, "001-01_alpha") == {
        "change_id": "001-01_alpha",
        "proposal": "# Proposal\n",
        "design": None,
        "tasks": CHECKBOX,
        "specs": [["auth", NEW_CAP_DELTA]],
        "revision": "1",
        # The spec did not exist when the delta was pushed (base 0), nor does it now.
        "spec_bases": {"auth": 0},
        "spec_revisions": {"auth": 0},
    }
    items, cursor = changes.list_summaries(
        ctx, PROJECT, lifecycle="active", module=None, statuses=None, limit=None, cursor=None
    )
    assert cursor is None
    assert items == [
        {
            "id": "001-01_alpha",
            "module_id": "001",
            "sub_module_id": None,
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
    ]
    # The module row is created with a placeholder name.
    assert catalog.list_modules(ctx, PROJECT) == [
        {"id": "001", "name": "001", "change_count": 1, "sub_modules": []}
    ]
    assert [(e["entity"], e["entity_id"], e["op"], e["seq"]) for e in all_events(ctx)] == [
        ("change", "001-01_alpha", "create", 1)
    ]


def test_push_of_a_sub_module_change_creates_both_module_rows(ctx: ServiceContext) -> None:
    push(ctx, bundle(), cid="002.03-01_deep")
    assert catalog.list_modules(ctx, PROJECT) == [
        {
            "id": "002",
            "name": "002",
            "change_count": 0,
            "sub_modules": [{"id": "002.03", "name": "002.03", "change_count": 1}],
        }
    ]


def test_push_with_the_current_revision_replaces_everything(
    ctx: ServiceContext, clock: FakeClock
) -> None:
    push(ctx, bundle(design="# Design\n", specs=(("auth", DELTA), ("billing", NEW_CAP_DELTA))))
    clock.advance(60)
    result = push(ctx, bundle(proposal=None, tasks_md=None, specs=(("zeta", DELTA),)), "1")
    assert result == {"change_id": "001-01_alpha", "new_revision": "2"}
    assert changes.pull_bundle(ctx, PROJECT, "001-01_alpha") == {
        "change_id": "001-01_alpha",
        "proposal": None,
        "design": None,
        "tasks": None,
        "specs": [["zeta", DELTA]],
        "revision": "2",
        "spec_bases": {"zeta": 0},
        "spec_revisions": {"zeta": 0},
    }
    detail = changes.change_detail(ctx, PROJECT, "001-01_alpha", "active")
    assert detail["last_modified"] == T1
    assert detail["work_status"] == "draft"
    assert detail["progress"] == {
        "total": 0,
        "complete": 0,
        "shelved": 0,
        "in_progress": 0,
        "pending": 0,
        "remaining": 0,
    }


def test_push_with_a_stale_revision_is_a_conflict_and_changes_nothing(
    ctx: ServiceContext, database_url: str
) -> None:
    push(ctx, bundle())
    push(ctx, bundle(proposal="# Two\n"), "1")
    before = snapshot(database_url)
    with pytest.raises(RevisionConflict) as err:
        push(ctx, bundle(proposal="# Lost\n"), "1")
    assert err.value.to_envelope() == {
        "error": "revision conflict for '001-01_alpha': local=1, server=2",
        "code": "conflict",
        "kind": "revision_conflict",
        "change_id": "001-01_alpha",
        "local_revision": "1",
        "server_revision": "2",
    }
    assert snapshot(database_url) == before


def test_push_without_revision_on_an_existing_change_is_428(
    ctx: ServiceContext, database_url: str
) -> None:
    push(ctx, bundle())
    before = snapshot(database_url)
    with pytest.raises(PreconditionRequired) as err:
        push(ctx, bundle(proposal="# Blind\n"), None)
    assert err.value.status == 428
    assert err.value.kind == "precondition_required"
    assert err.value.details == {"change_id": "001-01_alpha", "server_revision": "1"}
    assert snapshot(database_url) == before


def test_blind_push_is_accepted_when_the_server_allows_it(blind_ctx: ServiceContext) -> None:
    push(blind_ctx, bundle())
    assert push(blind_ctx, bundle(proposal="# Blind\n"), None)["new_revision"] == "2"
    assert changes.pull_bundle(blind_ctx, PROJECT, "001-01_alpha")["proposal"] == "# Blind\n"


def test_push_with_a_revision_to_an_unknown_change_is_404(ctx: ServiceContext) -> None:
    with pytest.raises(NotFound) as err:
        push(ctx, bundle(), "3")
    assert err.value.kind == "change_not_found"


@pytest.mark.parametrize(
    ("specs", "kind"),
    [
        ((("auth", "a"), ("auth", "b")), "duplicate_capability"),
        ((("auth", "a"), ("../escape", "b")), "invalid_id"),
        ((("auth", "a"), ("", "b")), "invalid_id"),
        ((("Auth", "a"),), "invalid_id"),
    ],
)
def test_push_with_bad_capabilities_writes_nothing(
    ctx: ServiceContext, database_url: str, specs: tuple[tuple[str, str], ...], kind: str
) -> None:
    push(ctx, bundle())
    before = snapshot(database_url)
    with pytest.raises(ValidationError) as err:
        push(ctx, bundle(proposal="# Changed\n", specs=specs), "1")
    assert err.value.status == 400
    assert err.value.kind == kind
    assert snapshot(database_url) == before


def test_push_rolls_back_everything_when_a_late_statement_fails(
    ctx: ServiceContext, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the change row was updated undoes the update (one transaction)."""
    push(ctx, bundle())
    before = snapshot(database_url)

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(changes, "store_deltas", boom)
    with pytest.raises(RuntimeError):
        push(ctx, bundle(proposal="# Half\n", specs=(("other", DELTA),)), "1")
    assert snapshot(database_url) == before


def test_push_to_an_archived_change_is_refused(ctx: ServiceContext) -> None:
    push(ctx, bundle())
    archive.archive_change(ctx, PROJECT, "001-01_alpha", ACTOR, force=True)
    with pytest.raises(ArchivedConflict) as err:
        push(ctx, bundle(), "2")
    assert err.value.details == {"change_id": "001-01_alpha", "archived_at": T0}


def test_push_to_a_change_leased_by_someone_else_is_refused(ctx: ServiceContext) -> None:
    push(ctx, bundle())
    leases.claim(ctx, PROJECT, "001-01_alpha", "agent-a", None)
    with pytest.raises(LeaseConflict) as err:
        changes.push_bundle(ctx, PROJECT, "001-01_alpha", bundle(), "1", Actor(holder="agent-b"))
    assert err.value.kind == "lease_conflict"
    result = changes.push_bundle(
        ctx, PROJECT, "001-01_alpha", bundle(design="# D\n"), "1", Actor(holder="agent-a")
    )
    assert result["new_revision"] == "2"


# --------------------------------------------------------------------------- archive


def _seed_archive(ctx: ServiceContext) -> None:
    catalog.put_module(ctx, PROJECT, "001", name="Backend", description=None, markdown=MODULE_MD)
    catalog.put_spec(ctx, PROJECT, "auth", BASE_SPEC)
    push(ctx, bundle(specs=(("auth", DELTA), ("spec-one", NEW_CAP_DELTA))))


def test_archive_merges_deltas_ticks_the_module_and_marks_archived(
    ctx: ServiceContext, clock: FakeClock
) -> None:
    _seed_archive(ctx)
    clock.advance(60)
    assert archive.archive_change(ctx, PROJECT, "001-01_alpha", ACTOR, force=True) == {
        "change_id": "001-01_alpha",
        "archived_at": T1,
    }
    auth_spec = catalog.get_spec(ctx, PROJECT, "auth")
    assert auth_spec == {
        "id": "auth",
        "path": ".ito/specs/auth/spec.md",
        "markdown": (
            "# auth\n\n## Purpose\nAuth.\n\n## Requirements\n\n"
            "### Requirement: Login\nUsers log in with a password.\n\n"
            "### Requirement: Logout\nUsers log out.\n\n"
            "### Requirement: Tokens\nTokens expire.\n"
        ),
        "last_modified": T1,
        "revision": 2,
    }
    new_spec = catalog.get_spec(ctx, PROJECT, "spec-one")["markdown"]
    assert "## Requirements" in new_spec
    assert "## ADDED Requirements" not in new_spec
    assert "### Requirement: Remote archive" in new_spec
    module = catalog.get_module(ctx, PROJECT, "001")
    # Exactly the archived id is ticked (not the id that merely starts with it).
    assert module["markdown"] == MODULE_MD.replace("- [ ] 001-01_alpha\n", "- [x] 001-01_alpha\n")
    detail = changes.change_detail(ctx, PROJECT, "001-01_alpha", "archived")
    assert (detail["archived_at"], detail["revision"], detail["last_modified"]) == (T1, "2", T1)
    active, _ = changes.list_summaries(
        ctx, PROJECT, lifecycle="active", module=None, statuses=None, limit=None, cursor=None
    )
    assert active == []
    archived, _ = changes.list_summaries(
        ctx, PROJECT, lifecycle="archived", module=None, statuses=None, limit=None, cursor=None
    )
    assert [a["id"] for a in archived] == ["001-01_alpha"]
    # The bundle stays readable.
    assert changes.pull_bundle(ctx, PROJECT, "001-01_alpha")["revision"] == "2"
    ops = [(e["entity"], e["op"], e.get("meta")) for e in all_events(ctx)]
    assert ops[-2:] == [
        (
            "change",
            "archive",
            {
                "archive_name": "2026-09-21-001-01_alpha",
                "specs": ["auth", "spec-one"],
                "forced": True,
                "unfinished_tasks": 1,
            },
        ),
        ("module", "change_completed", {"change_id": "001-01_alpha"}),
    ]


def test_archive_that_removes_every_requirement_deletes_the_spec(ctx: ServiceContext) -> None:
    catalog.put_spec(ctx, PROJECT, "auth", BASE_SPEC)
    removal = (
        "## REMOVED Requirements\n\n### Requirement: Login\nGone.\n\n"
        "### Requirement: Logout\nGone.\n"
    )
    push(ctx, bundle(specs=(("auth", removal),)))
    archive.archive_change(ctx, PROJECT, "001-01_alpha", ACTOR, force=True)
    assert catalog.list_specs(ctx, PROJECT) == []


def test_archive_with_one_invalid_delta_changes_nothing(
    ctx: ServiceContext, database_url: str
) -> None:
    catalog.put_module(ctx, PROJECT, "001", name="Backend", description=None, markdown=MODULE_MD)
    catalog.put_spec(ctx, PROJECT, "auth", BASE_SPEC)
    broken = "## MODIFIED Requirements\n\n### Requirement: Missing\nNope.\n"
    # "auth" is valid and sorts first, so a non-atomic archive would already have merged it.
    push(ctx, bundle(specs=(("auth", DELTA), ("zz-broken", broken))))
    leases.claim(ctx, PROJECT, "001-01_alpha", "agent-a", None)
    before = snapshot(database_url)
    with pytest.raises(ValidationError) as err:
        archive.archive_change(ctx, PROJECT, "001-01_alpha", Actor(holder="agent-a"), force=True)
    assert err.value.to_envelope() == {
        "error": "invalid spec delta for 'zz-broken': cannot modify missing requirement 'Missing'",
        "code": "bad_request",
        "kind": "delta_invalid",
        "capability": "zz-broken",
        "problem": "modify_missing",
        "requirement": "Missing",
        "source": "delta",
        "line": 3,
    }
    assert snapshot(database_url) == before


def test_archive_twice_returns_the_original_archived_at(
    ctx: ServiceContext, clock: FakeClock, database_url: str
) -> None:
    _seed_archive(ctx)
    first = archive.archive_change(ctx, PROJECT, "001-01_alpha", ACTOR, force=True)
    clock.advance(60)
    before = snapshot(database_url)
    assert archive.archive_change(ctx, PROJECT, "001-01_alpha", ACTOR, force=True) == first
    assert first["archived_at"] == T0
    assert snapshot(database_url) == before


def test_archive_releases_the_lease_and_refuses_other_holders(ctx: ServiceContext) -> None:
    push(ctx, bundle())
    leases.claim(ctx, PROJECT, "001-01_alpha", "agent-a", None)
    with pytest.raises(LeaseConflict) as err:
        archive.archive_change(ctx, PROJECT, "001-01_alpha", Actor(holder="agent-b"), force=True)
    assert err.value.kind == "lease_conflict"
    archive.archive_change(ctx, PROJECT, "001-01_alpha", Actor(holder="agent-a"), force=True)
    assert leases.list_leases(ctx, PROJECT) == []
    ops = [(e["op"], e.get("meta", {}).get("reason")) for e in all_events(ctx)]
    assert ("release", "archived") in ops


def test_archive_of_an_unknown_change_is_404(ctx: ServiceContext) -> None:
    with pytest.raises(NotFound) as err:
        archive.archive_change(ctx, PROJECT, "001-09_nope", ACTOR, force=True)
    assert err.value.kind == "change_not_found"


# --------------------------------------------------------------------------- tasks


def _revision(ctx: ServiceContext, cid: str = "001-01_alpha") -> str:
    return str(changes.pull_bundle(ctx, PROJECT, cid)["revision"])


def test_every_task_mutation_bumps_the_revision(ctx: ServiceContext) -> None:
    push(ctx, bundle(tasks_md=ENHANCED))
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("start", {"task_id": "1.1"}, "in-progress"),
        ("complete", {"task_id": "1.1", "note": "done and dusted"}, "complete"),
        ("shelve", {"task_id": "1.2", "reason": "waiting on infra"}, "shelved"),
        ("unshelve", {"task_id": "1.2"}, "pending"),
        ("add", {"title": "Third task", "wave": 1}, "pending"),
    ]
    for expected, (op, kwargs, status) in enumerate(steps, start=2):
        result = tasks.mutate_task(ctx, PROJECT, "001-01_alpha", op, ACTOR, **kwargs)
        assert result["revision"] == str(expected)
        assert result["task"]["status"] == status
        assert _revision(ctx) == str(expected)
    # A push based on a revision from before the mutations is now a conflict (no lost update).
    with pytest.raises(RevisionConflict):
        push(ctx, bundle(), "1")
    task_events = [e for e in all_events(ctx) if e["entity"] == "task"]
    assert [(e["entity_id"], e["op"], e.get("from"), e["to"]) for e in task_events] == [
        ("1.1", "status_change", "pending", "in-progress"),
        ("1.1", "status_change", "in-progress", "complete"),
        ("1.2", "status_change", "pending", "shelved"),
        ("1.2", "status_change", "shelved", "pending"),
        ("1.3", "add", None, "pending"),
    ]
    assert task_events[1]["meta"]["note"] == "done and dusted"
    assert task_events[2]["meta"]["reason"] == "waiting on infra"
    assert all(e["scope"] == "001-01_alpha" for e in task_events)


def test_tasks_init_bumps_the_revision_only_when_it_writes(ctx: ServiceContext) -> None:
    push(ctx, bundle(tasks_md=None))
    assert tasks.init_tasks(ctx, PROJECT, "001-01_alpha", ACTOR) == {
        "change_id": "001-01_alpha",
        "existed": False,
        "revision": "2",
    }
    assert tasks.init_tasks(ctx, PROJECT, "001-01_alpha", ACTOR) == {
        "change_id": "001-01_alpha",
        "existed": True,
        "revision": "2",
    }
    listing = tasks.get_tasks(ctx, PROJECT, "001-01_alpha")
    assert listing["format"] == "enhanced"
    assert listing["tasks"][0]["id"] == "1.1"


def test_failed_task_mutations_change_nothing(ctx: ServiceContext, database_url: str) -> None:
    push(ctx, bundle(tasks_md=ENHANCED))
    push(ctx, bundle(tasks_md=None), None, cid="001-02_empty")
    before = snapshot(database_url)
    cases: list[tuple[str, str, dict[str, Any], type[Exception], str]] = [
        ("001-01_alpha", "start", {"task_id": "1.2"}, ValidationError, "task_blocked"),
        ("001-01_alpha", "start", {"task_id": "9.9"}, NotFound, "task_not_found"),
        ("001-01_alpha", "unshelve", {"task_id": "1.1"}, ValidationError, ""),
        ("001-02_empty", "start", {"task_id": "1.1"}, NotFound, "tasks_missing"),
        ("001-09_none", "start", {"task_id": "1.1"}, NotFound, "change_not_found"),
    ]
    for cid, op, kwargs, exc, kind in cases:
        with pytest.raises(exc) as err:
            tasks.mutate_task(ctx, PROJECT, cid, op, ACTOR, **kwargs)
        if kind:
            assert getattr(err.value, "kind", None) == kind, (cid, op, err.value)
    assert snapshot(database_url) == before


# --------------------------------------------------------------------------- import / export


def _tree() -> dict[str, Any]:
    return {
        "modules": [
            imports.ImportModule("001", "Backend", MODULE_MD),
            imports.ImportModule("001.01", "Sub", "# Sub\n"),
        ],
        "specs": [imports.ImportSpec("auth", BASE_SPEC)],
        "changes": [
            imports.ImportChange(
                "001-01_alpha", "# P\n", None, CHECKBOX, (("auth", DELTA),), "schema: x\n", None
            ),
            imports.ImportChange(
                "001.01-01_sub", "# S\n", "# D\n", None, (), None, 1_700_000_000_000_000
            ),
            imports.ImportChange("legacy-slug", None, None, None, (), None, None),
        ],
    }


def test_import_then_export_round_trips(ctx: ServiceContext) -> None:
    result = imports.import_tree(ctx, PROJECT, mode="create-only", actor=ACTOR, **_tree())
    assert result == {"created": 6, "updated": 0, "unchanged": 0, "conflicts": []}
    exported = imports.export_project(ctx, PROJECT)
    assert exported == {
        "modules": [
            {"id": "001", "name": "Backend", "description": "Server side.", "markdown": MODULE_MD},
            {"id": "001.01", "name": "Sub", "description": None, "markdown": "# Sub\n"},
        ],
        "specs": [{"id": "auth", "markdown": BASE_SPEC}],
        "changes": [
            {
                "id": "001-01_alpha",
                "proposal": "# P\n",
                "design": None,
                "tasks": CHECKBOX,
                "specs": [["auth", DELTA]],
                "metadata": "schema: x\n",
                "archived_at": None,
                "revision": "1",
            },
            {
                "id": "001.01-01_sub",
                "proposal": "# S\n",
                "design": "# D\n",
                "tasks": None,
                "specs": [],
                "metadata": None,
                "archived_at": "2023-11-14T22:13:20.000000Z",
                "revision": "1",
            },
            {
                "id": "legacy-slug",
                "proposal": None,
                "design": None,
                "tasks": None,
                "specs": [],
                "metadata": None,
                "archived_at": None,
                "revision": "1",
            },
        ],
    }
    again = imports.import_tree(ctx, PROJECT, mode="create-only", actor=ACTOR, **_tree())
    assert again == {"created": 0, "updated": 0, "unchanged": 6, "conflicts": []}


def test_import_create_only_reports_conflicts_and_overwrite_replaces(
    ctx: ServiceContext,
) -> None:
    imports.import_tree(ctx, PROJECT, mode="create-only", actor=ACTOR, **_tree())
    tree = _tree()
    tree["specs"] = [imports.ImportSpec("auth", "# changed\n")]
    tree["changes"][0] = imports.ImportChange(
        "001-01_alpha", "# P2\n", None, CHECKBOX, (), None, None
    )
    result = imports.import_tree(ctx, PROJECT, mode="create-only", actor=ACTOR, **tree)
    assert result == {
        "created": 0,
        "updated": 0,
        "unchanged": 4,
        "conflicts": [
            {"kind": "spec", "id": "auth", "reason": "exists with different content"},
            {"kind": "change", "id": "001-01_alpha", "reason": "exists with different content"},
        ],
    }
    assert changes.pull_bundle(ctx, PROJECT, "001-01_alpha")["proposal"] == "# P\n"
    result = imports.import_tree(ctx, PROJECT, mode="overwrite", actor=ACTOR, **tree)
    assert result == {"created": 0, "updated": 2, "unchanged": 4, "conflicts": []}
    pulled = changes.pull_bundle(ctx, PROJECT, "001-01_alpha")
    assert (pulled["proposal"], pulled["specs"], pulled["revision"]) == ("# P2\n", [], "2")


def test_import_with_an_invalid_item_imports_nothing(
    ctx: ServiceContext, database_url: str
) -> None:
    imports.import_tree(
        ctx, PROJECT, mode="create-only", actor=ACTOR, modules=[], specs=[], changes=[]
    )
    before = snapshot(database_url)
    tree = _tree()
    tree["changes"].append(
        imports.ImportChange("001-05_bad", None, None, None, (("../x", "y"),), None, None)
    )
    with pytest.raises(ValidationError):
        imports.import_tree(ctx, PROJECT, mode="create-only", actor=ACTOR, **tree)
    assert snapshot(database_url) == before


# --------------------------------------------------------------------------- events


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": "task",
        "entity_id": f"{i}.1",
        "scope": "001-01_alpha",
        "op": "create",
        "actor": "cli",
        "by": "@test",
        "ctx": {"session_id": "s-1"},
        **extra,
    }


def test_events_keep_append_order_and_a_per_project_seq(ctx: ServiceContext) -> None:
    a1 = [_event(i) for i in range(3)]
    b1 = [_event(10 + i) for i in range(2)]
    a2 = [_event(20 + i, custom={"kept": True}) for i in range(2)]
    assert events.ingest_events(ctx, PROJECT, a1, "a-1") == {"accepted": 3, "duplicates": 0}
    assert events.ingest_events(ctx, OTHER, b1, "b-1") == {"accepted": 2, "duplicates": 0}
    assert events.ingest_events(ctx, PROJECT, a2, "a-2") == {"accepted": 2, "duplicates": 0}
    got_a = all_events(ctx, PROJECT)
    assert got_a == [{**e, "seq": n} for n, e in enumerate(a1 + a2, start=1)]
    assert all_events(ctx, OTHER) == [{**e, "seq": n} for n, e in enumerate(b1, start=1)]
    page, next_since = events.read_events(
        ctx, PROJECT, since=2, limit=2, entity=None, scope=None, op=None
    )
    assert [e["seq"] for e in page] == [3, 4]
    assert next_since == 4


def test_event_batch_keys_are_checked_against_the_batch(
    ctx: ServiceContext, database_url: str
) -> None:
    batch = [_event(1), _event(2)]
    events.ingest_events(ctx, PROJECT, batch, "k-1")
    before = snapshot(database_url)
    assert events.ingest_events(ctx, PROJECT, batch, "k-1") == {"accepted": 0, "duplicates": 2}
    with pytest.raises(Unprocessable) as err:
        events.ingest_events(ctx, PROJECT, [_event(3)], "k-1")
    assert err.value.kind == "idempotency_key_reused"
    assert snapshot(database_url) == before
    # Keys are per project.
    assert events.ingest_events(ctx, OTHER, batch, "k-1") == {"accepted": 2, "duplicates": 0}


def test_an_invalid_event_rejects_the_whole_batch(ctx: ServiceContext, database_url: str) -> None:
    events.ingest_events(ctx, PROJECT, [_event(0)], "first")
    before = snapshot(database_url)
    bad = _event(2)
    del bad["ctx"]
    with pytest.raises(ValidationError) as err:
        events.ingest_events(ctx, PROJECT, [_event(1), bad], "k-2")
    assert (err.value.kind, err.value.details["index"]) == ("invalid_event", 1)
    assert snapshot(database_url) == before


def test_database_fixture_is_migrated(db: Database) -> None:
    db.ping()


# --------------------------------------------------------------------------- idempotency


def test_expired_idempotency_records_are_purged(
    db: Database, clock: FakeClock, database_url: str
) -> None:
    from loom.service._context import Policy
    from loom.service.idempotency import run_idempotent

    ctx = ServiceContext(db, Policy(idempotency_ttl=60, idempotency_purge_every=1), clock)
    status, body, replayed = run_idempotent(ctx, PROJECT, "old", "fp", lambda: {"n": 1})
    assert (status, body, replayed) == (200, {"n": 1}, False)
    assert run_idempotent(ctx, PROJECT, "old", "fp", lambda: {"n": 2}) == (200, {"n": 1}, True)
    assert [r[1] for r in snapshot(database_url)["idempotency"]] == ["old"]
    clock.advance(61)
    run_idempotent(ctx, PROJECT, "new", "fp", lambda: {"n": 3})
    assert [r[1] for r in snapshot(database_url)["idempotency"]] == ["new"]
    # An expired key is free again: the operation runs anew.
    assert run_idempotent(ctx, PROJECT, "old", "fp2", lambda: {"n": 4}) == (200, {"n": 4}, False)


def test_a_push_never_overwrites_a_module_created_meanwhile(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The placeholder module row of a push is insert-if-absent: when PUT /modules created
    the row between the push's lookup and its insert (a PostgreSQL race, simulated here by
    hiding the row from the lookup), the named module survives."""
    catalog.put_module(ctx, PROJECT, "001", name="Backend", description=None, markdown=MODULE_MD)
    monkeypatch.setattr(changes, "get_module", lambda *_a, **_k: None)
    push(ctx, bundle(), cid="001-05_late")
    module = catalog.get_module(ctx, PROJECT, "001")
    assert (module["name"], module["markdown"]) == ("Backend", MODULE_MD)
