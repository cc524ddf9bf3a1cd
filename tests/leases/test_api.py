"""Lease routes through the API with the injected clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import FakeClock, auth, project_token
from loom.domain.timefmt import format_us

from ._helpers import ADMIN_H, P, push_new

A = "001-01_alpha"
B = "001-02_beta"
S = 1_000_000


def _claim(api: Any, holder: str, change_id: str = A, ttl: int | None = None) -> Any:
    body: dict[str, Any] = {"holder": holder}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    return api.post(f"{P}/changes/{change_id}/claim", json=body, headers=ADMIN_H)


def _heartbeat(api: Any, holder: str, change_id: str = A, ttl: int | None = None) -> Any:
    body: dict[str, Any] = {"holder": holder}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    return api.post(f"{P}/changes/{change_id}/heartbeat", json=body, headers=ADMIN_H)


def _release(api: Any, holder: str, change_id: str = A, **kw: Any) -> Any:
    return api.post(
        f"{P}/changes/{change_id}/release", json={"holder": holder}, headers=ADMIN_H, **kw
    )


def _lease_events(api: Any) -> list[dict[str, Any]]:
    events = api.get(f"{P}/events", headers=ADMIN_H).json()
    ops = {"claim", "release", "expire", "allocate", "force_release"}
    return [e for e in events if e["op"] in ops]


@pytest.fixture
def leased(api: Any) -> Any:
    push_new(api, A)
    push_new(api, B)
    return api


def test_claim_returns_the_claim_result_and_get_lease_shows_it(
    leased: Any, clock: FakeClock
) -> None:
    r = _claim(leased, "agent-1", ttl=30)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "change_id": A,
        "holder": "agent-1",
        "acquired_at": format_us(clock.now),
        "expires_at": format_us(clock.now + 30 * S),
        "ttl_seconds": 30,
        "fencing_token": 1,
    }
    got = leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H)
    assert got.status_code == 200
    assert got.json() == r.json()


def test_default_ttl_is_the_servers(leased: Any, clock: FakeClock) -> None:
    body = _claim(leased, "agent-1").json()
    assert body["ttl_seconds"] == 900
    assert body["expires_at"] == format_us(clock.now + 900 * S)


def test_renewals_without_a_ttl_keep_the_holders_ttl(leased: Any, clock: FakeClock) -> None:
    """A 60 s lease stays a 60 s lease through bare heartbeats and re-claims: falling back to
    the 15-minute default would let a crashed agent hold the change 15 minutes."""
    assert _claim(leased, "agent-1", ttl=60).json()["ttl_seconds"] == 60
    clock.advance(20)
    body = _heartbeat(leased, "agent-1").json()
    assert (body["ttl_seconds"], body["expires_at"]) == (60, format_us(clock.now + 60 * S))
    clock.advance(20)
    body = _claim(leased, "agent-1").json()
    assert (body["ttl_seconds"], body["expires_at"]) == (60, format_us(clock.now + 60 * S))
    # An explicit TTL still wins; a new holder after expiry gets the server default.
    assert _heartbeat(leased, "agent-1", ttl=120).json()["ttl_seconds"] == 120
    clock.advance(121)
    assert _claim(leased, "agent-2").json()["ttl_seconds"] == 900


def test_get_lease_is_404_without_an_active_lease(leased: Any, clock: FakeClock) -> None:
    r = leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H)
    assert r.status_code == 404
    assert r.json()["kind"] == "lease_not_found"
    _claim(leased, "agent-1", ttl=10)
    clock.advance(10)
    assert leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H).status_code == 404
    unknown = leased.get(f"{P}/changes/009-09_nope/lease", headers=ADMIN_H)
    assert unknown.status_code == 404
    assert unknown.json()["kind"] == "change_not_found"


def test_claim_of_unknown_change_is_404(leased: Any) -> None:
    r = _claim(leased, "agent-1", change_id="009-09_nope")
    assert r.status_code == 404
    assert r.json()["kind"] == "change_not_found"


def test_expiry_is_exact_at_the_boundary(leased: Any, clock: FakeClock) -> None:
    first = _claim(leased, "a", ttl=10).json()
    clock.now += 10 * S - 1  # one microsecond before expiry: still held
    r = _claim(leased, "b", ttl=10)
    assert r.status_code == 409
    assert r.json()["kind"] == "lease_conflict"
    assert r.json()["holder"] == "a"
    assert r.json()["expires_at"] == first["expires_at"]
    assert r.json()["change_id"] == A
    clock.now += 1  # now == expires: expired, B takes over with a new token
    taken = _claim(leased, "b", ttl=10)
    assert taken.status_code == 200, taken.text
    assert taken.json()["holder"] == "b"
    assert taken.json()["fencing_token"] == first["fencing_token"] + 1


def test_renewals_keep_the_token_takeovers_bump_it(leased: Any, clock: FakeClock) -> None:
    assert _claim(leased, "a", ttl=10).json()["fencing_token"] == 1
    clock.advance(5)
    assert _claim(leased, "a", ttl=10).json()["fencing_token"] == 1  # renew by claim
    clock.advance(5)
    assert _heartbeat(leased, "a", ttl=10).json()["fencing_token"] == 1  # renew by heartbeat
    clock.advance(60)  # expired, untaken: the last holder gets its own lease back
    again = _claim(leased, "a", ttl=10).json()
    assert again["fencing_token"] == 1
    assert again["expires_at"] == format_us(clock.now + 10 * S)
    clock.advance(60)
    hb = _heartbeat(leased, "a", ttl=20)  # heartbeat after expiry, untaken: succeeds
    assert hb.status_code == 200
    assert hb.json()["fencing_token"] == 1
    assert hb.json()["expires_at"] == format_us(clock.now + 20 * S)
    clock.advance(20)
    assert _claim(leased, "b", ttl=10).json()["fencing_token"] == 2  # takeover
    assert _release(leased, "b").json()["released"] is True
    assert _claim(leased, "b", ttl=10).json()["fencing_token"] == 3  # new ownership
    clock.advance(10)
    assert _claim(leased, "a", ttl=10).json()["fencing_token"] == 4


def test_heartbeat_refusals(leased: Any, clock: FakeClock) -> None:
    none = _heartbeat(leased, "a")
    assert none.status_code == 409
    assert none.json()["kind"] == "not_lease_holder"
    _claim(leased, "a", ttl=10)
    other = _heartbeat(leased, "b")
    assert other.status_code == 409
    assert other.json()["kind"] == "not_lease_holder"
    assert other.json()["holder"] == "a"
    clock.advance(10)
    b = _claim(leased, "b", ttl=30).json()
    taken = _heartbeat(leased, "a")
    assert taken.status_code == 409
    assert taken.json()["kind"] == "lease_conflict"
    assert taken.json()["holder"] == "b"
    assert taken.json()["expires_at"] == b["expires_at"]
    # the refused heartbeat changed nothing
    assert leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H).json() == b


def test_release_is_idempotent_and_only_by_the_holder(leased: Any) -> None:
    assert _release(leased, "a").json() == {"change_id": A, "released": False}
    _claim(leased, "a")
    other = _release(leased, "b")
    assert other.status_code == 409
    assert other.json()["kind"] == "not_lease_holder"
    assert _release(leased, "a").json() == {"change_id": A, "released": True}
    assert _release(leased, "a").json() == {"change_id": A, "released": False}
    assert leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H).status_code == 404


def test_force_release_is_admin_only(leased: Any) -> None:
    _claim(leased, "a")
    project = auth(project_token())
    r = leased.post(
        f"{P}/changes/{A}/release",
        json={"holder": "ops"},
        headers=project,
        params={"force": "true"},
    )
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H).json()["holder"] == "a"
    forced = _release(leased, "ops", params={"force": "true"})
    assert forced.json() == {"change_id": A, "released": True}
    assert leased.get(f"{P}/changes/{A}/lease", headers=ADMIN_H).status_code == 404


def test_project_token_can_claim_heartbeat_and_release(leased: Any) -> None:
    project = auth(project_token())
    r = leased.post(f"{P}/changes/{A}/claim", json={"holder": "a"}, headers=project)
    assert r.status_code == 200
    assert (
        leased.post(f"{P}/changes/{A}/heartbeat", json={"holder": "a"}, headers=project).status_code
        == 200
    )
    assert leased.post(f"{P}/changes/{A}/release", json={"holder": "a"}, headers=project).json()[
        "released"
    ]


def test_archived_change_cannot_be_claimed_or_heartbeaten(leased: Any) -> None:
    _claim(leased, "a")
    archived = leased.post(
        f"{P}/changes/{A}/archive?force=true", headers={**ADMIN_H, "X-Loom-Holder": "a"}
    )
    assert archived.status_code == 200, archived.text
    for r in (_claim(leased, "b"), _claim(leased, "a"), _heartbeat(leased, "a")):
        assert r.status_code == 409
        assert r.json()["kind"] == "archived"
    assert _release(leased, "a").json() == {"change_id": A, "released": False}
    alloc = leased.post(f"{P}/allocate", json={"holder": "c", "changes": [A]}, headers=ADMIN_H)
    assert alloc.json() == {"claim": None}


@pytest.mark.parametrize("ttl", [0, 9, 86_401, -1])
def test_ttl_outside_default_bounds_is_400(leased: Any, ttl: int) -> None:
    for r in (_claim(leased, "a", ttl=ttl), _heartbeat(leased, "a", ttl=ttl)):
        assert r.status_code == 400
        assert r.json()["kind"] == "invalid_ttl"
        assert r.json()["min"] == 10
        assert r.json()["max"] == 86_400
    alloc = leased.post(f"{P}/allocate", json={"holder": "a", "ttl_seconds": ttl}, headers=ADMIN_H)
    assert alloc.status_code == 400
    assert leased.get(f"{P}/leases", headers=ADMIN_H).json() == []


def test_ttl_bounds_are_inclusive(leased: Any) -> None:
    assert _claim(leased, "a", ttl=10).json()["ttl_seconds"] == 10
    assert _claim(leased, "a", ttl=86_400).json()["ttl_seconds"] == 86_400


def test_ttl_bounds_follow_the_settings(app_factory: Callable[..., Any]) -> None:
    api = app_factory(lease_ttl=45, lease_ttl_min=30, lease_ttl_max=60)
    push_new(api, A)
    assert _claim(api, "a", ttl=29).status_code == 400
    assert _claim(api, "a", ttl=61).json()["max"] == 60
    assert _claim(api, "a").json()["ttl_seconds"] == 45
    assert _claim(api, "a", ttl=30).json()["ttl_seconds"] == 30
    assert _claim(api, "a", ttl=60).json()["ttl_seconds"] == 60


@pytest.mark.parametrize(
    "body",
    [
        {"holder": ""},
        {"holder": "x" * 201},
        {"ttl_seconds": 20},
        {"holder": "a", "ttl_seconds": "20"},
    ],
)
def test_bad_claim_bodies_are_client_errors(leased: Any, body: dict[str, Any]) -> None:
    r = leased.post(f"{P}/changes/{A}/claim", json=body, headers=ADMIN_H)
    assert r.status_code in (400, 422)
    assert r.json()["code"] in ("bad_request", "unprocessable")


def test_list_leases_soonest_expiry_first(leased: Any, clock: FakeClock) -> None:
    push_new(leased, "002-01_gamma")
    assert leased.get(f"{P}/leases", headers=ADMIN_H).json() == []
    a = _claim(leased, "x", A, ttl=300).json()
    b = _claim(leased, "y", B, ttl=60).json()
    clock.advance(1)
    c = _claim(leased, "z", "002-01_gamma", ttl=100).json()
    assert leased.get(f"{P}/leases", headers=ADMIN_H).json() == [b, c, a]
    clock.advance(60)  # B's lease expires
    assert leased.get(f"{P}/leases", headers=ADMIN_H).json() == [c, a]


def test_summaries_and_detail_show_the_active_lease(leased: Any, clock: FakeClock) -> None:
    def summary_lease(change_id: str) -> Any:
        items = leased.get(f"{P}/changes", headers=ADMIN_H).json()
        return next(i for i in items if i["id"] == change_id)["lease"]

    def detail_lease(change_id: str) -> Any:
        return leased.get(f"{P}/changes/{change_id}", headers=ADMIN_H).json()["lease"]

    assert summary_lease(A) is None
    assert detail_lease(A) is None
    claimed = _claim(leased, "agent-7", ttl=20).json()
    for got in (summary_lease(A), detail_lease(A)):
        assert got["holder"] == "agent-7"
        assert got["expires_at"] == claimed["expires_at"]
        assert got["fencing_token"] == claimed["fencing_token"]
    assert summary_lease(B) is None
    clock.advance(20)
    assert summary_lease(A) is None
    assert detail_lease(A) is None


def test_lease_operations_are_audit_events_by_the_server(leased: Any, clock: FakeClock) -> None:
    _claim(leased, "a", ttl=10)
    clock.advance(10)
    _claim(leased, "b", ttl=10)  # lazily records a's expiry, then b's claim
    _release(leased, "b")
    _claim(leased, "c", ttl=10)
    _release(leased, "ops", params={"force": "true"})
    leased.post(f"{P}/allocate", json={"holder": "d"}, headers=ADMIN_H)
    events = _lease_events(leased)
    assert [(e["op"], e["entity_id"], e["meta"]["holder"]) for e in events] == [
        ("claim", A, "a"),
        ("expire", A, "a"),
        ("claim", A, "b"),
        ("release", A, "b"),
        ("claim", A, "c"),
        ("force_release", A, "c"),
        ("allocate", A, "d"),
    ]
    for e in events:
        assert e["actor"] == "server"
        assert e["entity"] == "change"
        assert e["ctx"]["session_id"]
    assert [e["meta"].get("fencing_token") for e in events if e["op"] in ("claim", "allocate")] == [
        1,
        2,
        3,
        4,
    ]
    # renewals and heartbeats are not ownership changes: no events
    _heartbeat(leased, "d")
    _claim(leased, "d")
    assert len(_lease_events(leased)) == len(events)
