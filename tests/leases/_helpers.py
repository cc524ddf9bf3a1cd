"""Seeding helpers shared by the lease tests (in-process TestClient or real-server httpx)."""

from __future__ import annotations

from typing import Any

from conftest import ADMIN, ORG, REPO, auth

__all__ = [
    "ADMIN_H",
    "ENHANCED_TASKS",
    "TASKS",
    "P",
    "bundle",
    "import_changes",
    "push_new",
    "spec_delta",
    "with_holder",
]

P = f"/api/v1/projects/{ORG}/{REPO}"
ADMIN_H = auth(ADMIN)
TASKS = "# Tasks\n\n- [ ] 1.1 Do the thing\n"
ENHANCED_TASKS = """# Tasks

## Wave 1

- **Depends On**: None

### Task 1.1: Do the thing

- **Files**: `src/thing.py`
- **Dependencies**: None
- **Action**: Do it
- **Verify**: `pytest`
- **Done When**: done
- **Updated At**: 2026-01-01
- **Status**: [ ] pending
"""


def spec_delta(capability: str) -> str:
    return (
        "## ADDED Requirements\n\n"
        f"### Requirement: {capability} works\n"
        f"The system SHALL make {capability} work.\n\n"
        "#### Scenario: it works\n"
        "- **WHEN** it is used\n"
        "- **THEN** it works\n"
    )


def bundle(
    change_id: str, *, tasks: str | None = TASKS, revision: str | None = None
) -> dict[str, Any]:
    """A bundle whose change is ``ready`` (proposal, one spec delta, one pending task)."""
    body: dict[str, Any] = {
        "proposal": f"# {change_id}\n",
        "tasks": tasks,
        "specs": [[f"cap-{change_id.split('_', 1)[0].replace('.', '-')}", spec_delta(change_id)]],
    }
    if revision is not None:
        body["revision"] = revision
    return body


def push_new(client: Any, change_id: str, *, tasks: str | None = TASKS) -> None:
    r = client.post(
        f"{P}/changes/{change_id}/sync", json=bundle(change_id, tasks=tasks), headers=ADMIN_H
    )
    assert r.status_code == 200, r.text


def import_changes(client: Any, change_ids: list[str], *, tasks: str | None = TASKS) -> None:
    """Create many ready changes in one request (``POST /import``)."""
    items = []
    for cid in change_ids:
        b = bundle(cid, tasks=tasks)
        items.append(
            {"id": cid, "proposal": b["proposal"], "tasks": b["tasks"], "specs": b["specs"]}
        )
    r = client.post(f"{P}/import", json={"mode": "create-only", "changes": items}, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == len(change_ids), r.text


def with_holder(
    holder: str, token: int | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    headers = dict(base or ADMIN_H)
    headers["X-Loom-Holder"] = holder
    if token is not None:
        headers["X-Loom-Fencing-Token"] = str(token)
    return headers
