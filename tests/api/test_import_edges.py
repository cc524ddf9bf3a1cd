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


def test_a_tree_round_trip_of_a_server_archived_change_is_unchanged(api: Any) -> None:
    """A tree keeps only the archive date; the same date at midnight is the same archive."""
    ok(push(api, "013-01_arch"))
    archived_at = ok(api.post(f"{P}/changes/013-01_arch/archive?force=true", headers=ADMIN_H))[
        "archived_at"
    ]
    assert not archived_at.startswith("2026-09-21T00:00:00")  # the FakeClock's time of day
    exported = ok(api.get(f"{P}/export", headers=ADMIN_H))
    change = next(c for c in exported["changes"] if c["id"] == "013-01_arch")
    as_tree = {**change, "archived_at": "2026-09-21T00:00:00Z"}
    body = {"mode": "create-only", "changes": [as_tree]}
    result = ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))
    assert (result["unchanged"], result["updated"], result["conflicts"]) == (1, 0, [])
    # Another date is a different archive.
    other = {"mode": "create-only", "changes": [{**change, "archived_at": "2026-09-20T00:00:00Z"}]}
    assert len(ok(api.post(f"{P}/import", json=other, headers=ADMIN_H))["conflicts"]) == 1


def test_an_empty_module_md_matches_a_module_without_markdown(api: Any) -> None:
    ok(push(api, "091-01_mod-test"))  # creates module 091 with a placeholder row (no markdown)
    assert ok(api.get(f"{P}/modules/091", headers=ADMIN_H))["markdown"] is None
    body = {"mode": "create-only", "modules": [{"id": "091", "name": "091", "markdown": ""}]}
    result = ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))
    assert (result["unchanged"], result["updated"]) == (1, 0)
    assert ok(api.get(f"{P}/modules/091", headers=ADMIN_H))["markdown"] is None
