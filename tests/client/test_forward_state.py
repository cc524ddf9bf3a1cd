"""Event forwarding (checkpoint, deterministic keys, crash safety) and local client state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from loom.client import ClaimResult, ConnectionFailed, ValidationError
from loom.client._forward import CHECKPOINT_FILE, PENDING_FILE, batch_key, forward_events
from loom.client._state import LeaseStore, backup_change, read_revision, state_dir, write_revision

from ._fakes import Recorder, make_client


class FakeEventServer:
    """POST /events with Loom's key semantics: same key + same batch is a replay."""

    def __init__(self, drop_first_response: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.keys: dict[str, str] = {}
        self.drop = drop_first_response

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key, batch = body["idempotency_key"], body["events"]
        assert request.headers["Idempotency-Key"] == key
        fingerprint = json.dumps(batch, sort_keys=True)
        if key in self.keys:
            if self.keys[key] != fingerprint:
                return httpx.Response(
                    422, json={"code": "unprocessable", "kind": "idempotency_key_reused"}
                )
            return httpx.Response(200, json={"accepted": 0, "duplicates": len(batch)})
        self.keys[key] = fingerprint
        self.events.extend(batch)
        if self.drop:
            self.drop = False
            raise httpx.ReadError("connection reset after the server applied the batch")
        return httpx.Response(200, json={"accepted": len(batch), "duplicates": 0})


def _event(n: int) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-01-01T00:00:00Z",
        "entity": "task",
        "entity_id": str(n),
        "op": "create",
        "actor": "cli",
        "by": "@x",
        "ctx": {"session_id": "s"},
    }


def _write_log(path: Path, count: int, start: int = 0, partial: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for n in range(start, start + count):
            handle.write(json.dumps(_event(n)) + "\n")
        if partial:
            handle.write('{"v": 1, "ts": "half-writ')


def test_forward_in_batches_with_checkpoint_and_rerun(tmp_path: Path) -> None:
    ito = tmp_path / ".ito"
    log = ito / ".state" / "audit" / "events.jsonl"
    _write_log(log, 1203, partial=True)
    server = FakeEventServer()
    rec = Recorder(handler=server)
    done: list[tuple[int, int]] = []
    result = forward_events(make_client(rec), log, ito, on_batch=lambda d, t: done.append((d, t)))
    assert (result.accepted, result.duplicates, result.batches) == (1203, 0, 3)
    assert [len(json.loads(r.content)["events"]) for r in rec.requests] == [500, 500, 203]
    assert done == [(500, 1203), (1000, 1203), (1203, 1203)]
    assert (ito / CHECKPOINT_FILE).read_text() == "1203"
    assert not (ito / PENDING_FILE).exists()
    assert [e["entity_id"] for e in server.events] == [str(n) for n in range(1203)]
    # Re-running sends nothing; appending more sends only the new lines.
    again = forward_events(make_client(rec), log, ito)
    assert (again.accepted, again.batches) == (0, 0)
    log.write_text(log.read_text().rsplit("\n", 1)[0] + "\n")  # drop the half-written line
    _write_log(log, 10, start=1203)
    more = forward_events(make_client(rec), log, ito)
    assert (more.accepted, more.offset) == (10, 1213)
    assert len(server.events) == 1213


def test_keys_are_deterministic() -> None:
    assert batch_key("abc", 0) == batch_key("abc", 0)
    assert batch_key("abc", 0) != batch_key("abc", 500)
    assert batch_key("abc", 0) != batch_key("abd", 0)
    key = batch_key("x" * 64, 10**9)
    assert len(key) <= 128 and all(c.isalnum() or c in "-_" for c in key)


def test_crash_after_server_accepted_does_not_duplicate(tmp_path: Path) -> None:
    """The first response is lost (connection drops after the server applied the batch)."""
    ito = tmp_path / ".ito"
    log = tmp_path / "events.jsonl"
    _write_log(log, 700)
    server = FakeEventServer(drop_first_response=True)
    with pytest.raises(ConnectionFailed):
        forward_events(make_client(Recorder(handler=server), retries=0), log, ito)
    assert len(server.events) == 500  # applied, but the client never heard back
    assert not (ito / CHECKPOINT_FILE).exists()
    assert (ito / PENDING_FILE).exists()
    # Meanwhile the log grew: the pending batch is still re-sent exactly as before.
    _write_log(log, 100, start=700)
    result = forward_events(make_client(Recorder(handler=server)), log, ito)
    assert result.duplicates == 500
    assert result.accepted == 300
    assert [e["entity_id"] for e in server.events] == [str(n) for n in range(800)]


def test_retry_within_a_run_reuses_the_key(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    _write_log(log, 3)
    server = FakeEventServer(drop_first_response=True)
    rec = Recorder(handler=server)
    result = forward_events(make_client(rec, retries=2), log, tmp_path / ".ito")
    assert (result.accepted, result.duplicates) == (0, 3)
    assert len(server.events) == 3
    assert len(rec.requests) == 2


def test_invalid_line_stops_with_its_number(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    _write_log(log, 2)
    with log.open("a") as handle:
        handle.write("not json\n")
    server = FakeEventServer()
    with pytest.raises(ValidationError, match=r"events\.jsonl:3"):
        forward_events(make_client(Recorder(handler=server)), log, tmp_path / ".ito", batch_size=2)
    assert len(server.events) == 2  # the first batch went through and is checkpointed
    assert (tmp_path / ".ito" / CHECKPOINT_FILE).read_text() == "2"


def test_missing_or_empty_log(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not found"):
        forward_events(make_client(Recorder()), tmp_path / "nope.jsonl", tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert forward_events(make_client(Recorder()), empty, tmp_path).batches == 0


def test_state_dir_override(tmp_path: Path) -> None:
    assert state_dir({"LOOM_STATE_DIR": str(tmp_path)}) == tmp_path
    assert state_dir({}).name == "loom"


def test_revision_file_round_trip(tmp_path: Path) -> None:
    change = tmp_path / "001-01_a"
    assert read_revision(change) == ""
    write_revision(change, "7")
    assert (change / ".backend-revision").read_text() == "7"
    (change / ".backend-revision").write_text(" 8\n")
    assert read_revision(change) == "8"


def test_backups_keep_the_last_twenty(tmp_path: Path) -> None:
    change = tmp_path / "work" / "001-01_a"
    assert backup_change(change, "001-01_a", tmp_path / "state") is None
    (change / "specs" / "cap").mkdir(parents=True)
    (change / "specs" / "cap" / "spec.md").write_text("spec")
    made = []
    for n in range(23):
        (change / "tasks.md").write_text(f"v{n}")
        made.append(backup_change(change, "001-01_a", tmp_path / "state"))
    root = tmp_path / "state" / "backups" / "001-01_a"
    kept = sorted(root.iterdir())
    assert len(kept) == 20
    assert kept == sorted(p for p in made[3:] if p is not None)
    assert (kept[-1] / "tasks.md").read_text() == "v22"
    assert (kept[-1] / "specs" / "cap" / "spec.md").read_text() == "spec"


def test_lease_store(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path, "acme/w")
    assert store.load("001-01_a") is None
    claim = ClaimResult(
        change_id="001-01_a", holder="h", expires_at="2030-01-01T00:00:00Z", fencing_token=3
    )
    store.save(claim)
    assert store.load("001-01_a") == claim
    assert LeaseStore(tmp_path, "acme/other").load("001-01_a") is None
    store.forget("001-01_a")
    store.forget("001-01_a")
    assert store.load("001-01_a") is None


def test_lease_store_fencing_token_is_the_holders_own(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path, "acme/w")
    assert store.fencing_token("001-01_a", "h") is None
    store.save(
        ClaimResult(
            change_id="001-01_a", holder="h", expires_at="2030-01-01T00:00:00Z", fencing_token=3
        )
    )
    assert store.fencing_token("001-01_a", "h") == 3
    assert store.fencing_token("001-01_a", "someone-else") is None
    assert store.fencing_token("001-01_a", None) is None
    for broken in ("not json", "[]", '{"holder": "h", "fencing_token": "3"}'):
        (tmp_path / "leases" / "acme" / "w" / "001-01_a.json").write_text(broken)
        assert store.fencing_token("001-01_a", "h") is None


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "a\\b"])
def test_lease_store_refuses_ids_that_are_not_one_file_name(tmp_path: Path, bad: str) -> None:
    from loom.client import InvalidArgument

    store = LeaseStore(tmp_path / "state", "acme/w")
    claim = ClaimResult(
        change_id=bad, holder="h", expires_at="2030-01-01T00:00:00Z", fencing_token=1
    )
    with pytest.raises(InvalidArgument):
        store.save(claim)
    with pytest.raises(InvalidArgument):
        store.load(bad)
    with pytest.raises(InvalidArgument):
        store.forget(bad)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
