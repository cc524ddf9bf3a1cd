"""Server halves of issue 11: no spurious revision, unfinished archives, required leases,
an audit event for every write, the docs page offline, and a private data dir."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import start_server

from .conftest import ADDED, ADMIN_H, ENHANCED, P, error, ok, push

SHELVED = (
    "# Tasks for: 001-03_shelf\n\n## Wave 1\n\n- **Depends On**: None\n\n"
    "### Task 1.1: Done\n- **Dependencies**: None\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [x] complete\n\n"
    "### Task 1.2: Parked\n- **Dependencies**: None\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [-] shelved\n"
)


def events(api: Any, since: int = 0) -> list[dict[str, Any]]:
    return list(ok(api.get(f"{P}/events?since={since}", headers=ADMIN_H)))


def last_seq(api: Any) -> int:
    got = events(api)
    return int(got[-1]["seq"]) if got else 0


# --- item 1: an identical push is a no-op --------------------------------------------------


def test_an_identical_push_keeps_the_revision_and_records_nothing(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    seq = last_seq(api)
    for _ in range(3):
        assert ok(push(api, "001-01_alpha", revision="1")) == {
            "change_id": "001-01_alpha",
            "new_revision": "1",
        }
    assert events(api, seq) == []
    # Another agent's push based on revision 1 is therefore not refused.
    assert ok(push(api, "001-01_alpha", revision="1", design="# D\n"))["new_revision"] == "2"


# --- item 16: every write is in the audit log ----------------------------------------------


def test_a_push_records_the_artifacts_it_changed_and_both_revisions(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    seq = last_seq(api)
    ok(push(api, "001-01_alpha", revision="1", proposal="# New\n", specs=[["auth", ADDED + "x"]]))
    (event,) = events(api, seq)
    assert (event["entity"], event["entity_id"], event["op"]) == (
        "change",
        "001-01_alpha",
        "update",
    )
    assert event["meta"] == {
        "source": "push",
        "revision": "2",
        "artifacts": ["proposal", "specs/auth"],
        "old_revision": "1",
        "new_revision": "2",
    }
    assert event["by"] == "@admin"


def test_tasks_init_module_and_spec_puts_are_recorded(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=None))
    seq = last_seq(api)
    ok(api.post(f"{P}/changes/001-01_alpha/tasks/init", headers=ADMIN_H))
    ok(api.put(f"{P}/modules/002", json={"name": "Core"}, headers=ADMIN_H))
    ok(api.put(f"{P}/modules/002", json={"name": "Core 2"}, headers=ADMIN_H))
    ok(api.put(f"{P}/specs/auth", json={"markdown": "# auth\n"}, headers=ADMIN_H))
    got = [(e["entity"], e["entity_id"], e["op"], e.get("meta")) for e in events(api, seq)]
    assert got == [
        ("change", "001-01_alpha", "tasks_init", {"old_revision": "1", "new_revision": "2"}),
        ("module", "002", "create", {"name": "Core"}),
        ("module", "002", "update", {"name": "Core 2"}),
        ("spec", "auth", "create", None),
    ]


def test_an_import_is_one_summary_event(api: Any) -> None:
    change = {"proposal": "# P\n", "specs": []}
    body = {
        "mode": "create-only",
        "changes": [{"id": f"001-{i:02d}_c{i}", **change} for i in range(1, 6)],
    }
    ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))
    (event,) = events(api)
    assert (event["entity"], event["op"]) == ("project", "import")
    assert event["meta"]["created"] >= 5
    assert event["meta"]["changes_created"] == [f"001-{i:02d}_c{i}" for i in range(1, 6)]
    # An import that changes nothing records nothing.
    ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))
    assert len(events(api)) == 1


def test_an_import_never_unarchives_a_change(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=None))
    ok(api.post(f"{P}/changes/001-01_alpha/archive", headers=ADMIN_H))
    body = {"mode": "overwrite", "changes": [{"id": "001-01_alpha", "proposal": "# X\n"}]}
    result = ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))
    assert [c["id"] for c in result["conflicts"]] == ["001-01_alpha"]
    detail = ok(api.get(f"{P}/changes/001-01_alpha?lifecycle=all", headers=ADMIN_H))
    assert detail["archived_at"] is not None


# --- item 5: unfinished changes are not archived unless forced ----------------------------


def test_archiving_an_unfinished_change_is_refused_unless_forced(api: Any) -> None:
    ok(push(api, "001-02_enh", tasks=ENHANCED))
    body = error(
        api.post(f"{P}/changes/001-02_enh/archive", headers=ADMIN_H),
        409,
        "conflict",
        "change_unfinished",
    )
    assert (body["pending"], body["in_progress"], body["total"]) == (2, 0, 2)
    assert ok(api.get(f"{P}/changes/001-02_enh", headers=ADMIN_H))["archived_at"] is None
    ok(api.post(f"{P}/changes/001-02_enh/archive?force=true", headers=ADMIN_H))
    archive = next(e for e in events(api) if e["op"] == "archive")
    assert archive["meta"]["forced"] is True
    assert archive["meta"]["unfinished_tasks"] == 2
    error(
        api.post(f"{P}/changes/001-02_enh/archive?force=maybe", headers=ADMIN_H),
        400,
        "bad_request",
        "invalid_request",
    )


def test_shelved_tasks_do_not_make_a_change_unfinished(api: Any) -> None:
    ok(push(api, "001-03_shelf", tasks=SHELVED))
    ok(api.post(f"{P}/changes/001-03_shelf/archive", headers=ADMIN_H))
    archive = next(e for e in events(api) if e["op"] == "archive")
    assert "forced" not in archive["meta"]


# --- item 7: --require-lease ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/sync", {"proposal": "# x\n", "specs": [], "revision": "1"}),
        ("post", "/tasks/1.1/start", None),
        ("post", "/tasks/add", {"title": "More"}),
        ("post", "/archive?force=true", None),
    ],
)
def test_a_server_can_require_a_lease_for_writes(
    app_factory: Any, method: str, path: str, body: Any
) -> None:
    api = app_factory(require_lease=True)
    ok(push(api, "001-02_enh", tasks=ENHANCED))  # creating a change stays open
    url = f"{P}/changes/001-02_enh{path}"
    holder = {**ADMIN_H, "X-Loom-Holder": "agent-a"}
    error(getattr(api, method)(url, json=body, headers=holder), 409, "conflict", "lease_required")
    ok(api.post(f"{P}/changes/001-02_enh/claim", json={"holder": "agent-a"}, headers=holder))
    ok(getattr(api, method)(url, json=body, headers=holder))


def test_tasks_init_needs_the_lease_too(app_factory: Any) -> None:
    api = app_factory(require_lease=True)
    ok(push(api, "001-01_alpha", tasks=None))
    url = f"{P}/changes/001-01_alpha/tasks/init"
    error(api.post(url, headers=ADMIN_H), 409, "conflict", "lease_required")


# --- item 14: GET / and the docs page without a network -----------------------------------


def test_root_redirects_to_the_docs_and_swagger_ui_comes_from_the_package(api: Any) -> None:
    resp = api.get("/", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "/api/v1/docs"
    page = api.get("/api/v1/docs")
    assert page.status_code == 200
    assert "http" not in "".join(
        line for line in page.text.splitlines() if "src=" in line or "href=" in line
    ), page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert f"/api/v1/docs/assets/{asset}" in page.text
        got = api.get(f"/api/v1/docs/assets/{asset}")
        assert got.status_code == 200 and len(got.content) > 500, asset


# --- item 15: a private data dir -----------------------------------------------------------


def test_the_data_dir_is_0700_and_the_sqlite_file_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    subprocess.run(
        [sys.executable, "-m", "loom", "db", "upgrade", "--data-dir", str(data)],
        check=True,
        env=env,
        capture_output=True,
    )
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "loom.db").stat().st_mode) == 0o600


def test_a_served_database_file_is_0600(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    db = folder / "loom.db"
    # Named explicitly, so the server creates the file (start_server's default database is
    # a copy of a migrated template, made by the test, not by the server).
    live = start_server(folder, f"sqlite:///{db}")
    try:
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        for extra in db.parent.glob("loom.db-*"):  # SQLite gives -wal/-shm the file's mode
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra
    finally:
        live.stop()
