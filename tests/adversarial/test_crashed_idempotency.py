"""Finding 8: an Idempotency-Key left in flight by a process that died mid-request is free
again when the server starts (SQLite: one process owns the database)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN, ORG, REPO, start_server
from loom.service import open_context
from loom.service._common import write_pid
from loom.service._context import Project
from loom.settings import Settings
from loom.store import idempotency as store

pytestmark = pytest.mark.slow

H = {"Authorization": f"Bearer {ADMIN}"}
P = f"/api/v1/projects/{ORG}/{REPO}"


def test_in_flight_keys_of_a_dead_process_are_released_at_start_up(tmp_path: Path) -> None:
    data = tmp_path / "server"
    server = start_server(data)
    try:
        with httpx.Client(base_url=server.url, headers=H) as c:
            r = c.post(f"{P}/changes/001-01_a/sync", json={"proposal": "# p\n", "specs": []})
            assert r.status_code == 200
    finally:
        server.stop()
    # The state a SIGKILL mid-request leaves: the key recorded in flight by that boot, the
    # effect (which commits with the record) absent.
    db_url = f"sqlite:///{data / 'loom.db'}"
    ctx = open_context(Settings(data_dir=data, database_url=db_url), run_migrations=False)
    try:
        pid = write_pid(ctx, Project(ORG, REPO))
        with ctx.db.write() as conn:
            assert store.claim_key(
                conn,
                pid,
                "k1",
                fingerprint="f" * 64,
                owner="0badb0075eed.1",
                now_us=time.time_ns() // 1000,
                expires_us=2**62,
            )
    finally:
        ctx.db.dispose()
    server = start_server(data)
    try:
        with httpx.Client(base_url=server.url, headers=H) as c:
            r = c.post(
                f"{P}/changes/001-01_a/claim",
                json={"holder": "a"},
                headers={"Idempotency-Key": "k1"},
            )
            # Was 409 idempotency_in_flight for two minutes after the crash.
            assert r.status_code == 200, r.text
    finally:
        server.stop()
