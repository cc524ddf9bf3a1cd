"""Bulk import edges found by a black-box audit: an import that archives a leased change
drops the lease (as an archive does); an imported sub-module gets a listed parent."""

from __future__ import annotations

from typing import Any

from .conftest import ADDED, ADMIN_H, P, error, ok, push


def test_importing_a_change_as_archived_releases_its_lease(api: Any) -> None:
    ok(push(api, "012-01_imp"))
    ok(api.post(f"{P}/changes/012-01_imp/claim", json={"holder": "y"}, headers=ADMIN_H))
    body = {
        "mode": "overwrite",
        "changes": [
            {
                "id": "012-01_imp",
                "proposal": "# Proposal\n",
                "specs": [["auth", ADDED]],
                "archived_at": "2026-01-01T00:00:00Z",
            }
        ],
    }
    assert ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))["updated"] == 1
    error(
        api.get(f"{P}/changes/012-01_imp/lease", headers=ADMIN_H),
        404,
        "not_found",
        "lease_not_found",
    )
    assert ok(api.get(f"{P}/leases", headers=ADMIN_H)) == []
    row = ok(api.get(f"{P}/changes?lifecycle=archived", headers=ADMIN_H))[0]
    assert row["id"] == "012-01_imp" and row.get("lease") is None
    ops = [
        (e["op"], e.get("meta", {}).get("reason"))
        for e in ok(api.get(f"{P}/events", headers=ADMIN_H))
    ]
    assert ("release", "archived") in ops
    error(
        api.post(f"{P}/changes/012-01_imp/claim", json={"holder": "y"}, headers=ADMIN_H),
        409,
        "conflict",
        "archived",
    )


def test_an_imported_sub_module_is_listed_under_a_parent(api: Any) -> None:
    body = {"mode": "create-only", "modules": [{"id": "025.01", "name": "orph"}]}
    assert ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))["created"] == 2
    parent = ok(api.get(f"{P}/modules/025", headers=ADMIN_H))
    assert parent["id"] == "025"
    listed = ok(api.get(f"{P}/modules", headers=ADMIN_H))
    assert [m["id"] for m in listed] == ["025"]
    assert [s["id"] for s in listed[0]["sub_modules"]] == ["025.01"]
    # Importing the real parent afterwards replaces the placeholder (overwrite).
    real = {"mode": "overwrite", "modules": [{"id": "025", "name": "Backend"}]}
    assert ok(api.post(f"{P}/import", json=real, headers=ADMIN_H))["updated"] == 1
    assert ok(api.get(f"{P}/modules/025", headers=ADMIN_H))["name"] == "Backend"
