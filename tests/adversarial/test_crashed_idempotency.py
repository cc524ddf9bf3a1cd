"""Finding 8: an Idempotency-Key left in flight by a process that died mid-request is free
again at once: at start-up (SQLite: one process owns the database), and on PostgreSQL, shared
by live processes, as soon as no session of the process that recorded it is left."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from conftest import ADMIN, ORG, REPO, LiveServer, start_server
from loom.errors import IdempotencyInFlight
from loom.service import open_context
from loom.service._common import write_pid
from loom.service._context import Project
from loom.service.idempotency import run_idempotent
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


# --------------------------------------------------------------------------- PostgreSQL


def _in_flight(url: str) -> dict[str, str]:
    """key -> owner of every in-flight record."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key, owner FROM idempotency WHERE state = 'in_flight'")
            ).all()
    finally:
        engine.dispose()
    return {str(k): str(o) for k, o in rows}


def _sessions_of(url: str, boot: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": f"loom:{boot}"},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class _Held:
    """A keyed claim sent to ``server`` that stays in flight: the test holds an exclusive
    lock on ``leases`` (the claim's transaction waits for it after recording the key)."""

    def __init__(self, url: str, server: LiveServer, change: str, key: str) -> None:
        self.lock = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
        self.lock.execute("LOCK TABLE leases IN EXCLUSIVE MODE")
        self.answer: list[object] = []

        def send() -> None:
            try:
                with httpx.Client(base_url=server.url, headers=H, timeout=60) as c:
                    self.answer.append(
                        c.post(
                            f"{P}/changes/{change}/claim",
                            json={"holder": "a"},
                            headers={"Idempotency-Key": key},
                        )
                    )
            except httpx.HTTPError as exc:  # the server was killed: no answer
                self.answer.append(exc)

        self.thread = threading.Thread(target=send, daemon=True)
        self.thread.start()
        _wait_for(lambda: key in _in_flight(url), "the key to be recorded in flight")
        self.owner = _in_flight(url)[key]

    def release(self) -> None:
        self.lock.rollback()
        self.lock.close()
        self.thread.join(timeout=30)


def _sync(server: LiveServer, *changes: str) -> None:
    with httpx.Client(base_url=server.url, headers=H) as c:
        for change in changes:
            r = c.post(f"{P}/changes/{change}/sync", json={"proposal": "# p\n", "specs": []})
            assert r.status_code == 200, r.text


def _claim(server: LiveServer, change: str, key: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers=H, timeout=30) as c:
        return c.post(
            f"{P}/changes/{change}/claim", json={"holder": "a"}, headers={"Idempotency-Key": key}
        )


def test_pg_a_live_process_keeps_its_in_flight_key(tmp_path: Path, pg_url: str) -> None:
    """Neither another running server nor one starting up releases a key whose process is
    alive (its claim is merely slow): the retry is 409 until the first request answers."""
    a = start_server(tmp_path / "a", pg_url)
    b = start_server(tmp_path / "b", pg_url)
    c: LiveServer | None = None
    try:
        _sync(a, "001-01_a")
        held = _Held(pg_url, a, "001-01_a", "k1")
        try:
            c = start_server(tmp_path / "c", pg_url)  # start-up release runs here
            assert _in_flight(pg_url) == {"k1": held.owner}
            for server in (b, c, a):
                r = _claim(server, "001-01_a", "k1")
                assert r.status_code == 409, r.text
                assert r.json()["kind"] == "idempotency_in_flight"
        finally:
            held.release()
        first = held.answer[0]
        assert isinstance(first, httpx.Response) and first.status_code == 200, first
        r = _claim(b, "001-01_a", "k1")
        assert r.status_code == 200 and r.headers.get("idempotent-replayed") == "true"
    finally:
        for server in (a, b, c):
            if server is not None:
                server.stop()


def test_pg_a_killed_process_releases_its_key_at_once(tmp_path: Path, pg_url: str) -> None:
    """A server SIGKILLed mid-request: a running server takes the key over on the retry, and
    a server starting up releases such keys; no 409 for the two-minute timeout."""
    a = start_server(tmp_path / "a", pg_url)
    b = start_server(tmp_path / "b", pg_url)
    servers = [a, b]
    try:
        _sync(a, "001-01_a", "001-02_b")
        for change, key, retry_on in (("001-01_a", "k1", "running"), ("001-02_b", "k2", "new")):
            victim = start_server(tmp_path / f"victim-{key}", pg_url)
            servers.append(victim)
            held = _Held(pg_url, victim, change, key)
            boot = held.owner.partition(".")[0]
            assert _sessions_of(pg_url, boot) > 0
            victim.stop(signal.SIGKILL)
            held.release()  # the dead process's blocked session ends without committing
            _wait_for(lambda b=boot: _sessions_of(pg_url, b) == 0, "the dead boot's sessions")
            assert _in_flight(pg_url) == {key: held.owner}  # nothing committed, nothing freed
            if retry_on == "running":
                server = b
            else:
                server = start_server(tmp_path / "new", pg_url)
                servers.append(server)
                assert _in_flight(pg_url) == {}  # released at start-up
            r = _claim(server, change, key)
            # Was 409 idempotency_in_flight for two minutes after the crash.
            assert r.status_code == 200, r.text
            assert r.json()["holder"] == "a"
            assert _claim(a, change, key).headers.get("idempotent-replayed") == "true"
    finally:
        for server in servers:
            server.stop()


def test_pg_a_request_whose_key_was_taken_over_rolls_its_effect_back(
    tmp_path: Path, pg_url: str
) -> None:
    """The last line of defence: if a request's in-flight record was taken over while it ran
    (it was presumed dead), its effect rolls back instead of committing a second time."""
    ctx = open_context(Settings(data_dir=tmp_path, database_url=pg_url))
    project = Project(ORG, REPO)
    now = time.time_ns() // 1000
    try:
        pid = write_pid(ctx, project)

        def operation() -> dict[str, str]:
            with ctx.db.write() as conn:  # the request's transaction: its effect
                store.claim_key(
                    conn, pid, "effect", fingerprint="e", owner="x.1", now_us=now, expires_us=2**62
                )

            def take_over() -> None:  # another process, on its own session, meanwhile
                with ctx.db.write() as other:
                    store.take_over_key(
                        other, pid, "k1", fingerprint="f", owner="b.2", now_us=now, expires_us=2**62
                    )

            thread = threading.Thread(target=take_over)
            thread.start()
            thread.join()
            return {"ok": "yes"}

        with pytest.raises(IdempotencyInFlight):
            run_idempotent(ctx, project, "k1", "f", operation)
        with ctx.db.read() as conn:
            assert store.get_key(conn, pid, "effect") is None  # rolled back
            rec = store.get_key(conn, pid, "k1")
        assert rec is not None and rec.owner == "b.2" and rec.state == "in_flight"
    finally:
        ctx.db.dispose()


def test_a_forked_process_is_a_boot_of_its_own() -> None:
    """A process forked from a loaded interpreter (``gunicorn --preload``, the tests' fork
    server) must not share its parent's boot: the in-flight keys of a dead sibling would look
    alive for as long as the parent lives."""
    import os

    from loom.store.engine import application_name, boot_id

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, f"{boot_id()} {application_name()}".encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_boot, child_name = pipe.read().split()
    os.waitpid(pid, 0)
    assert child_boot != boot_id() and len(child_boot) == 12
    assert child_name == f"loom:{child_boot}" and application_name() == f"loom:{boot_id()}"
