"""GET /events/stream against real `loom serve` processes and real databases."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    ADMIN,
    ORG,
    REPO,
    LiveServer,
    auth,
    new_project,
    project_token,
    start_server,
)
from loom.client import Client

from ._sse import event, open_stream

# Real servers and 1-second bounds: with the other real-process tests, on one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]

P = f"/api/v1/projects/{ORG}/{REPO}"


def _post(base: str, items: list[dict[str, Any]], key: str, prefix: str = P) -> None:
    r = httpx.post(
        f"{base}{prefix}/events",
        json={"events": items, "idempotency_key": key},
        headers=auth(),
        timeout=30,
    )
    assert r.status_code == 200, r.text


@dataclass
class Shared:
    """The module's server, and a project of this test's own on it."""

    base: str
    org: str
    repo: str

    @property
    def prefix(self) -> str:
        return f"/api/v1/projects/{self.org}/{self.repo}"

    @property
    def stream(self) -> str:
        return f"{self.prefix}/events/stream"

    def post(self, items: list[dict[str, Any]], key: str) -> None:
        _post(self.base, items, key, self.prefix)

    def open(self, **kwargs: Any) -> Any:
        return open_stream(self.base, path=self.stream, **kwargs)


@pytest.fixture
def shared(shared_server_on: LiveServer) -> Shared:
    return Shared(shared_server_on.url, *new_project())


def _config(tmp_path: Path, **values: Any) -> str:
    path = tmp_path / "loom.toml"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    return str(path)


def test_resume_after_forced_disconnects_loses_and_repeats_nothing(shared: Shared) -> None:
    """1,000 events written while the reader is cut off every ~130 events and resumes with
    Last-Event-ID: it sees seq 1..1000 exactly once, in order, with the stored bodies."""
    total = 1000

    def writer() -> None:
        for b in range(100):
            shared.post([event(b * 10 + i) for i in range(10)], f"batch-{b}")

    thread = threading.Thread(target=writer)
    seen: list[int] = []
    bodies: dict[int, str] = {}
    stream = shared.open(query="since=0")
    thread.start()
    reconnects = 0
    try:
        while len(seen) < total:
            msg = stream.next_message()
            assert msg is not None, "the server ended the stream"
            seq, op, data = msg
            assert op == data["op"] == "status_change"
            assert data["seq"] == seq
            seen.append(seq)
            bodies[seq] = data["entity_id"]
            if len(seen) % 130 == 0:  # forced disconnect mid-stream, then resume
                stream.close()
                stream = shared.open(query="since=0", last_event_id=seen[-1])
                reconnects += 1
    finally:
        stream.close()
        thread.join()
    assert reconnects >= 7
    assert seen == list(range(1, total + 1))
    stored = httpx.get(f"{shared.base}{shared.prefix}/events", headers=auth(), timeout=30).json()
    assert {e["seq"]: e["entity_id"] for e in stored} == bodies


def test_since_is_exclusive_and_no_cursor_means_from_now(shared: Shared) -> None:
    shared.post([event(i) for i in range(3)], "first")
    from_two = shared.open(query="since=2")
    from_now = shared.open()
    assert from_now.headers[":status"] == "200"
    assert from_now.headers["content-type"].startswith("text/event-stream")
    assert from_now.headers["x-loom-since"] == "3"
    msg = from_two.next_message()
    assert msg is not None and msg[0] == 3
    shared.post([event(9)], "second")
    msg = from_now.next_message()
    assert msg is not None and msg[0] == 4 and msg[2]["entity_id"] == "9.1"
    msg = from_two.next_message()
    assert msg is not None and msg[0] == 4
    from_two.close()
    from_now.close()


def test_filters_and_auth(shared: Shared) -> None:
    base = shared.base
    filtered = shared.open(query="since=0&entity_id=2.1")
    shared.post([event(i) for i in range(4)], "k")
    msg = filtered.next_message()
    assert msg is not None and msg[0] == 3 and msg[2]["entity_id"] == "2.1"
    filtered.close()
    # The same auth as every project route: none (401), another project's token (403).
    r = httpx.get(f"{base}{shared.stream}", timeout=10)
    assert r.status_code == 401 and r.json()["kind"] == "missing_token"
    r = httpx.post(
        f"{base}/api/v1/projects/{shared.org}/other/events",
        json={"events": [event(1)], "idempotency_key": "o"},
        headers=auth(),
        timeout=10,
    )
    assert r.status_code == 200
    other = project_token(shared.org, "other")
    r = httpx.get(f"{base}{shared.stream}", headers=auth(other), timeout=10)
    assert r.status_code == 403
    r = httpx.get(f"{base}{shared.stream}", headers={**auth(), "Last-Event-ID": "x1"}, timeout=10)
    assert r.status_code == 400 and r.json()["kind"] == "invalid_cursor"


def test_a_lease_claim_reaches_the_stream_as_a_server_event(shared: Shared) -> None:
    with Client(shared.base, ADMIN, f"{shared.org}/{shared.repo}", holder="agent-a") as c:
        c.push("001-01_alpha", revision="", proposal="# a\n", tasks="- [ ] 1.1 x\n")
        stream = shared.open()
        c.claim("001-01_alpha")
        msg = stream.next_message()
        stream.close()
    assert msg is not None
    _, op, data = msg
    assert op == "claim" and data["entity_id"] == "001-01_alpha" and data["by"] == "@agent-a"


def test_two_serve_processes_on_one_postgresql_deliver_to_both(tmp_path: Path, pg_url: str) -> None:
    """An event committed through either process reaches subscribers of both (LISTEN/NOTIFY;
    the long re-read timer shows the wake-up came from the notification)."""
    cfg = _config(tmp_path, stream_recheck=600.0)
    a = start_server(tmp_path / "a", pg_url, "--config", cfg)
    b = start_server(tmp_path / "b", pg_url, "--config", cfg)
    try:
        # Each server's channel exists before the first write (the project row is created
        # by that write: the subscribers start at 0).
        on_a = open_stream(a.url, query="since=0")
        on_b = open_stream(b.url, query="since=0")
        _post(a.url, [event(1)], "via-a")
        for stream in (on_a, on_b):
            msg = stream.next_message()
            assert msg is not None and msg[0] == 1 and msg[2]["entity_id"] == "1.1"
        _post(b.url, [event(2)], "via-b")
        for stream in (on_a, on_b):
            msg = stream.next_message()
            assert msg is not None and msg[0] == 2 and msg[2]["entity_id"] == "2.1"
        on_a.close()
        on_b.close()
    finally:
        a.stop()
        b.stop()


def test_the_relay_reconnects_after_its_connections_are_killed(tmp_path: Path, pg_url: str) -> None:
    """Every LISTEN/NOTIFY session of both processes is terminated (a PostgreSQL restart, a
    pooler dropping idle sessions): each process reconnects on its own and an event written
    through one still reaches a subscriber of the other, well before the 600 s re-read."""
    from sqlalchemy import create_engine, text

    cfg = _config(tmp_path, stream_recheck=600.0)
    a = start_server(tmp_path / "a", pg_url, "--config", cfg)
    b = start_server(tmp_path / "b", pg_url, "--config", cfg)
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    relay_sessions = text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND (query LIKE 'LISTEN loom_events%' OR query LIKE 'SELECT pg_notify%')"
    )
    try:
        on_b = open_stream(b.url, query="since=0")
        _post(a.url, [event(1)], "before")
        msg = on_b.next_message()
        assert msg is not None and msg[0] == 1
        with engine.connect() as conn:
            deadline = time.monotonic() + 30
            while len(pids := conn.execute(relay_sessions).scalars().all()) < 3:
                assert time.monotonic() < deadline, pids  # both listeners, A's notifier
                time.sleep(0.05)
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        _post(a.url, [event(2)], "after")
        msg = on_b.next_message()
        assert msg is not None and msg[0] == 2 and msg[2]["entity_id"] == "2.1"
        # And the notifications themselves work again: once both listeners are back (each
        # re-read its channels on reconnecting), the next event can only come by NOTIFY.
        listeners = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN loom_events%'"
        )
        with engine.connect() as conn:
            deadline = time.monotonic() + 30
            while conn.execute(listeners).scalar_one() < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        _post(a.url, [event(3)], "again")
        msg = on_b.next_message()
        assert msg is not None and msg[0] == 3
        on_b.close()
        for server in (a, b):
            assert "event stream LISTEN connection failed" in "".join(server.log)
    finally:
        engine.dispose()
        a.stop()
        b.stop()


def test_a_stalled_subscriber_is_cut_off_and_claims_go_on(
    tmp_path: Path, database_url: str
) -> None:
    """A subscriber that never reads fills its buffer and is cut off: the writers finish,
    a healthy subscriber sees everything, and the stalled one resumes where it stopped."""
    cfg = _config(tmp_path, stream_buffer=1_000_000)
    server = start_server(tmp_path / "s", database_url, "--config", cfg)
    base = server.url
    try:
        stalled = open_stream(base, query="since=0", rcvbuf=4096)
        healthy = open_stream(base, query="since=0")
        got: list[int] = []

        def read_healthy() -> None:
            while True:
                try:
                    msg = healthy.next_message()
                except OSError:  # closed by the test
                    return
                if msg is None:
                    return
                got.append(msg[0])

        reader = threading.Thread(target=read_healthy, daemon=True)
        reader.start()
        pad = "x" * 1000
        for b in range(16):  # ~18 MB of events: more than every buffer on the way
            _post(base, [event(b * 500 + i, meta={"pad": pad}) for i in range(500)], f"b{b}")
        with Client(base, ADMIN, f"{ORG}/{REPO}", holder="agent-a") as c:
            c.push("001-01_alpha", revision="", proposal="# a\n", tasks="- [ ] 1.1 x\n")
            for _ in range(50):
                c.claim("001-01_alpha")
                c.release("001-01_alpha")
        total = 8000 + 1 + 100
        deadline = time.monotonic() + 60
        while len(got) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == list(range(1, total + 1))
        # The stalled one: whatever it was sent, then the end of the stream.
        while stalled.next_message() is not None:
            pass
        assert stalled.ended
        stopped_at = stalled.messages[-1][0] if stalled.messages else 0
        assert [m[0] for m in stalled.messages] == list(range(1, stopped_at + 1))
        assert stopped_at < total
        resumed = open_stream(base, last_event_id=stopped_at)
        rest = []
        while len(rest) < total - stopped_at:
            msg = resumed.next_message()
            assert msg is not None
            rest.append(msg[0])
        assert rest == list(range(stopped_at + 1, total + 1))
        resumed.close()
        healthy.close()
        stalled.close()
    finally:
        server.stop()
    # The cut-off connection was dropped, not left as a response the application abandoned.
    assert not [line for line in server.log if "ERROR" in line or "Traceback" in line]


def test_stopping_the_server_ends_open_streams_cleanly_and_at_once(
    tmp_path: Path, database_url: str
) -> None:
    """SIGTERM with subscribers connected: each stream gets the end of its body (they
    reconnect with Last-Event-ID to whatever serves next), and the server exits without
    waiting out uvicorn's graceful-shutdown timeout for them and cancelling them with a
    traceback, as it did while an event stream was open (each stop took 10 s)."""
    server = start_server(tmp_path / "s", database_url)
    try:
        _post(server.url, [event(1)], "one")
        streams = [open_stream(server.url, query="since=0") for _ in range(3)]
        for stream in streams:
            msg = stream.next_message()
            assert msg is not None and msg[0] == 1
        server.stop()  # SIGTERM; it returns once the process has exited
        for stream in streams:
            assert stream.next_message() is None
            assert stream.finished  # the last chunk, not a cut connection
            stream.close()
    finally:
        server.stop()
    log = "".join(server.log)
    assert "Finished server process" in log
    assert "graceful shutdown exceeded" not in log
    assert "ERROR" not in log and "Traceback" not in log


def test_a_subscriber_that_falls_behind_and_catches_up_gets_everything_once_in_order(
    shared: Shared,
) -> None:
    """The hub writes a page straight to a connection that takes it and queues it for one
    that does not (the peer stopped reading): a reader that pauses while ~4 MB are written
    (under its 16 MB buffer), then reads while more arrive, switches between both paths and
    must still see every event exactly once, in order."""
    slow = shared.open(query="since=0", rcvbuf=4096)
    pad = "x" * 1000
    for b in range(4):  # not read meanwhile: the connection's buffers fill, pages queue
        shared.post([event(b * 500 + i, meta={"pad": pad}) for i in range(500)], f"p{b}")
    got: list[int] = []

    def read() -> None:
        while len(got) < 4000:
            msg = slow.next_message()
            if msg is None:
                return
            got.append(msg[0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for b in range(4, 8):  # written while it catches up
        shared.post([event(b * 500 + i, meta={"pad": pad}) for i in range(500)], f"p{b}")
        time.sleep(0.05)
    reader.join(60)
    slow.close()
    assert got == list(range(1, 4001))


def test_messages_match_the_openapi_document(shared: Shared) -> None:
    """Each message, read as (id, event, data), is what the document's 200 declares."""
    import json

    import jsonschema

    doc = httpx.get(f"{shared.base}/api/v1/openapi.json", timeout=10).json()
    ok = doc["paths"]["/api/v1/projects/{org}/{repo}/events/stream"]["get"]["responses"]
    schema = ok["200"]["content"]["text/event-stream"]["schema"]
    audit = {"$ref": "#/components/schemas/AuditEvent", "components": doc["components"]}
    shared.post([event(i) for i in range(3)], "doc")
    stream = shared.open(query="since=0")
    try:
        for _ in range(3):
            msg = stream.next_message()
            assert msg is not None
            seq, op, data = msg
            jsonschema.validate(
                {"id": str(seq), "event": op, "data": json.dumps(data)},
                schema,
                cls=jsonschema.Draft202012Validator,
            )
            jsonschema.validate(data, audit, cls=jsonschema.Draft202012Validator)
    finally:
        stream.close()
