"""``loom db backup`` while 8 clients push and claim, then ``loom db restore`` and serve it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from _forkserver import run_loom
from conftest import ADMIN, ORG, REPO, auth, start_server

pytestmark = pytest.mark.slow

P = f"/api/v1/projects/{ORG}/{REPO}"
CLIENTS = 8


def loom(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    return run_loom(list(args), env, timeout=120)


class Load:
    """8 clients, each pushing new changes and claiming them; every acknowledged write is
    recorded with the time its response arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pushed: list[tuple[float, str]] = []
        self.claimed: list[tuple[float, str, int]] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(CLIENTS)]

    def client(self, index: int) -> None:
        headers = auth(ADMIN)
        with httpx.Client(base_url=self.url, timeout=30, headers=headers) as c:
            for n in range(1, 100):
                if self.stop.is_set():
                    return
                change = f"{100 + index:03d}-{n:02d}_load"
                body = {"proposal": f"# {change}\n", "specs": [], "revision": ""}
                resp = c.post(f"{P}/changes/{change}/sync", json=body)
                if resp.status_code != 200:
                    self.errors.append(resp.text)
                    return
                with self.lock:
                    self.pushed.append((time.monotonic(), change))
                resp = c.post(f"{P}/changes/{change}/claim", json={"holder": f"agent-{index}"})
                if resp.status_code != 200:
                    self.errors.append(resp.text)
                    return
                with self.lock:
                    self.claimed.append((time.monotonic(), change, resp.json()["fencing_token"]))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def test_backup_under_load_holds_every_acknowledged_write_and_restores(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    backup = tmp_path / "backup.db"
    try:
        with Load(server.url) as load:
            while len(load.pushed) < 40 and not load.errors:
                time.sleep(0.05)
            started = time.monotonic()
            result = loom(
                "db", "backup", str(backup),
                "--data-dir", str(server.data_dir),
                "--database-url", server.database_url,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            finished = time.monotonic()
            # The load went on during the backup.
            while not any(t > finished for t, _ in load.pushed) and not load.errors:
                time.sleep(0.05)
        assert not load.errors, load.errors[:3]
    finally:
        server.stop()

    acked = {c for t, c in load.pushed if t < started}
    acked_claims = [(c, f) for t, c, f in load.claimed if t < started]
    assert len(acked) >= 40
    conn = sqlite3.connect(backup)
    assert [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]
    stored = {r[0] for r in conn.execute("SELECT change_id FROM changes")}
    leases = dict(conn.execute("SELECT change_id, fencing_token FROM leases").fetchall())
    conn.close()
    assert acked <= stored, sorted(acked - stored)[:5]
    for change, fencing in acked_claims:
        assert leases[change] >= fencing, change
    later = {c for t, c in load.pushed if t > finished}
    assert later and not later <= stored  # writes after the backup are not in it

    checked = loom(
        "db", "check", "--database-url", f"sqlite:///{backup}", "--data-dir", str(tmp_path)
    )
    assert checked.returncode == 0 and "integrity ok" in checked.stdout, checked.stderr

    # Restoring over the live database needs --force; into a new place it does not.
    refused = loom("db", "restore", str(backup), "--data-dir", str(server.data_dir),
                   "--database-url", server.database_url)  # fmt: skip
    assert refused.returncode == 1 and "--force" in refused.stderr
    fresh = tmp_path / "restored"
    restored = loom("db", "restore", str(backup), "--data-dir", str(fresh))
    assert restored.returncode == 0, restored.stderr
    again = start_server(fresh)
    try:
        with httpx.Client(base_url=again.url, timeout=30, headers=auth(ADMIN)) as c:
            ids = {item["id"] for item in c.get(f"{P}/changes").json()}
    finally:
        again.stop()
    assert ids == stored


def test_postgres_backup_runs_pg_dump(tmp_path: Path, pg_url: str) -> None:
    target = tmp_path / "pg.dump"
    result = loom(
        "db", "backup", str(target), "--database-url", pg_url, "--data-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(
        ["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True
    )
    assert "TABLE public api_tokens" in listing.stdout
    assert "TABLE public leases" in listing.stdout
    again = loom("db", "backup", str(target), "--database-url", pg_url, "--data-dir", str(tmp_path))
    assert again.returncode == 1 and "--force" in again.stderr
