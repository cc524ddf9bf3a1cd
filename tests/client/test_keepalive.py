"""LeaseKeeper: heartbeats at an interval, reports a lost lease once."""

from __future__ import annotations

import threading

import httpx

from loom.client import ClaimResult, Conflict, LeaseConflict, LoomError
from loom.client._keepalive import LeaseKeeper, lease_lost_by, renew_interval
from loom.models import AuditEvent

from ._fakes import Recorder, error, make_client

CLAIM = {
    "change_id": "001-01_a",
    "holder": "agent-1",
    "expires_at": "2030-01-01T00:15:00Z",
    "fencing_token": 2,
}


def test_renew_interval_is_a_third_of_the_ttl() -> None:
    assert renew_interval(ClaimResult.model_validate({**CLAIM, "ttl_seconds": 900})) == 300
    derived = ClaimResult.model_validate({**CLAIM, "acquired_at": "2030-01-01T00:14:30Z"})
    assert renew_interval(derived) == 10
    assert renew_interval(ClaimResult.model_validate({**CLAIM, "ttl_seconds": 1})) == 1.0


def test_keeper_heartbeats_until_stopped() -> None:
    beats = threading.Semaphore(0)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/heartbeat")
        beats.release()
        return httpx.Response(200, json=CLAIM)

    renewed: list[ClaimResult] = []
    keeper = LeaseKeeper(
        make_client(Recorder(handler=handler)), "001-01_a", interval=0.01, on_renew=renewed.append
    )
    keeper.start()
    for _ in range(3):
        assert beats.acquire(timeout=30)
    keeper.stop()
    assert keeper.renewals >= 3 and keeper.lost is None
    assert len(renewed) == keeper.renewals


def test_keeper_reports_lost_lease_and_survives_transient_errors() -> None:
    rec = Recorder(
        [
            httpx.Response(503, json={}),  # transient: logged, next tick
            error(409, "conflict", "not_lease_holder", holder="other"),
        ]
    )
    lost = threading.Event()
    seen: list[Exception] = []

    def on_lost(exc: Exception) -> None:
        seen.append(exc)
        lost.set()

    keeper = LeaseKeeper(make_client(rec, retries=0), "001-01_a", interval=0.01, on_lost=on_lost)
    keeper.start()
    assert lost.wait(5)
    keeper.stop()
    assert len(seen) == 1 and isinstance(seen[0], LeaseConflict)
    assert isinstance(keeper.lost, LeaseConflict)
    assert len(rec.requests) == 2


def test_keeper_gives_the_lease_up_once_it_is_past_expiry_while_unreachable() -> None:
    """With the server down, heartbeats fail; before the expiry that is only logged, after
    it the lease is lost (kind lease_expired), so `loom keepalive` stops its command."""
    from datetime import UTC, datetime, timedelta

    from loom.client import Client

    expires = datetime(2030, 1, 1, 0, 15, tzinfo=UTC)
    ticks: list[int] = []
    lost = threading.Event()

    def clock() -> datetime:
        ticks.append(1)
        # Three failed heartbeats before the expiry, then the clock passes it.
        return expires - timedelta(seconds=1) if len(ticks) <= 3 else expires

    errors: list[LoomError] = []

    def on_lost(error: LoomError) -> None:
        errors.append(error)
        lost.set()

    with Client("http://127.0.0.1:1", "t", "a/b", retries=0) as client:
        keeper = LeaseKeeper(
            client, "001-01_a", interval=0.01, on_lost=on_lost, expires_at=expires, clock=clock
        )
        keeper.start()
        assert lost.wait(timeout=30)
        keeper.stop()
    assert len(ticks) == 4 and len(errors) == 1
    assert errors[0].kind == "lease_expired" and isinstance(errors[0], Conflict)
    assert keeper.lost is errors[0]


def _claim_event(by: str, holder: str | None) -> AuditEvent:
    meta = None if holder is None else {"holder": holder, "fencing_token": 3}
    return AuditEvent.model_validate(
        {
            "ts": "2030-01-01T00:00:00.000Z",
            "entity": "change",
            "entity_id": "001-01_a",
            "op": "claim",
            "actor": "server",
            "by": by,
            "meta": meta,
        }
    )


def test_a_claim_is_a_takeover_only_when_its_holder_is_someone_else() -> None:
    """``by`` names a named token when the claim came with one (two agents may share it):
    the holder is ``meta.holder``; older events without it fall back to ``by``."""
    assert lease_lost_by(_claim_event("agent-token", "agent-1"), "001-01_a", "agent-1") is None
    lost = lease_lost_by(_claim_event("agent-token", "agent-2"), "001-01_a", "agent-1")
    assert lost is not None and lost.kind == "lease_lost"
    assert lease_lost_by(_claim_event("@agent-1", None), "001-01_a", "agent-1") is None
    assert lease_lost_by(_claim_event("@agent-2", None), "001-01_a", "agent-1") is not None
