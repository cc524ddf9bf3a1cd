"""Strict lease enforcement on writes (API.md §0 "Leases on writes"), advisory mode, archive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import FakeClock

from ._helpers import ADMIN_H, ENHANCED_TASKS, P, bundle, push_new, with_holder

A = "001-01_alpha"


def _write(api: Any, kind: str, headers: dict[str, str]) -> Any:
    """One write of each kind that strict mode guards, against change A at revision 1."""
    if kind == "push":
        body = bundle(A, tasks=ENHANCED_TASKS, revision="1")
        body["proposal"] = "# changed\n"
        return api.post(f"{P}/changes/{A}/sync", json=body, headers=headers)
    if kind == "push-if-match":
        body = bundle(A, tasks=ENHANCED_TASKS)
        body["design"] = "# design\n"
        return api.post(f"{P}/changes/{A}/sync", json=body, headers={**headers, "If-Match": '"1"'})
    if kind == "start":
        return api.post(f"{P}/changes/{A}/tasks/1.1/start", headers=headers)
    if kind == "complete":
        return api.post(f"{P}/changes/{A}/tasks/1.1/complete", json={"note": "n"}, headers=headers)
    if kind == "add":
        return api.post(f"{P}/changes/{A}/tasks/add", json={"title": "More"}, headers=headers)
    if kind == "init":
        return api.post(f"{P}/changes/{A}/tasks/init", headers=headers)
    if kind == "archive":
        return api.post(f"{P}/changes/{A}/archive?force=true", headers=headers)
    raise AssertionError(kind)


WRITES = ["push", "push-if-match", "start", "complete", "add", "init", "archive"]


def _claim(api: Any, holder: str, ttl: int = 60) -> dict[str, Any]:
    r = api.post(
        f"{P}/changes/{A}/claim", json={"holder": holder, "ttl_seconds": ttl}, headers=ADMIN_H
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _state(api: Any) -> tuple[Any, Any, int]:
    """Everything a refused write must leave alone: bundle, detail, event count."""
    bundle_now = api.get(f"{P}/changes/{A}/sync", headers=ADMIN_H).json()
    detail = api.get(f"{P}/changes/{A}", params={"lifecycle": "all"}, headers=ADMIN_H).json()
    events = len(api.get(f"{P}/events", headers=ADMIN_H).json())
    return bundle_now, detail, events


@pytest.fixture
def one(api: Any) -> Any:
    push_new(api, A, tasks=ENHANCED_TASKS)
    return api


@pytest.mark.parametrize("kind", WRITES)
def test_write_to_leased_change_without_the_holder_is_refused(one: Any, kind: str) -> None:
    lease = _claim(one, "a")
    before = _state(one)
    for headers in (ADMIN_H, with_holder("b"), with_holder("b", 1)):
        r = _write(one, kind, headers)
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["code"] == "conflict"
        assert body["kind"] == "lease_conflict"
        assert body["change_id"] == A
        assert body["holder"] == "a"
        assert body["expires_at"] == lease["expires_at"]
    assert _state(one) == before
    ok = _write(one, kind, with_holder("a", lease["fencing_token"]))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("kind", WRITES)
def test_stale_fencing_token_is_refused(one: Any, kind: str) -> None:
    _claim(one, "a")
    one.post(f"{P}/changes/{A}/release", json={"holder": "a"}, headers=ADMIN_H)
    lease = _claim(one, "a")  # a new ownership: token 2
    assert lease["fencing_token"] == 2
    before = _state(one)
    r = _write(one, kind, with_holder("a", 1))
    assert r.status_code == 409, r.text
    assert r.json()["kind"] == "stale_fencing_token"
    assert r.json()["change_id"] == A
    assert _state(one) == before
    assert _write(one, kind, with_holder("a")).status_code == 200


@pytest.mark.parametrize("kind", WRITES)
def test_unleased_change_accepts_anyone(one: Any, kind: str) -> None:
    assert _write(one, kind, ADMIN_H).status_code == 200


def test_unleased_change_accepts_any_named_writer(one: Any) -> None:
    assert _write(one, "start", with_holder("whoever")).status_code == 200
    assert _write(one, "add", with_holder("somebody-else", 0)).status_code == 200


def test_expired_lease_no_longer_guards_writes(one: Any, clock: FakeClock) -> None:
    _claim(one, "a", ttl=10)
    clock.advance(10)
    assert _write(one, "start", ADMIN_H).status_code == 200


@pytest.mark.parametrize("kind", WRITES)
def test_advisory_mode_accepts_every_write(app_factory: Callable[..., Any], kind: str) -> None:
    api = app_factory(lease_enforcement="advisory")
    push_new(api, A, tasks=ENHANCED_TASKS)
    _claim(api, "a")
    api.post(f"{P}/changes/{A}/release", json={"holder": "a"}, headers=ADMIN_H)
    _claim(api, "a")
    stale_and_wrong = with_holder("b", 1)
    r = _write(api, kind, stale_and_wrong)
    assert r.status_code == 200, r.text


def test_bad_fencing_token_header_is_400(one: Any) -> None:
    _claim(one, "a")
    for bad in ("x", "-1", "1.5", "9" * 30):
        r = _write(one, "start", {**with_holder("a"), "X-Loom-Fencing-Token": bad})
        assert r.status_code == 400, (bad, r.text)


def test_archive_releases_the_lease(one: Any) -> None:
    lease = _claim(one, "a")
    r = _write(one, "archive", with_holder("a", lease["fencing_token"]))
    assert r.status_code == 200
    assert one.get(f"{P}/changes/{A}/lease", headers=ADMIN_H).status_code == 404
    assert one.get(f"{P}/leases", headers=ADMIN_H).json() == []
    detail = one.get(f"{P}/changes/{A}", params={"lifecycle": "all"}, headers=ADMIN_H).json()
    assert detail["lease"] is None
    assert detail["archived_at"] is not None
    events = one.get(f"{P}/events", headers=ADMIN_H).json()
    released = [e for e in events if e["op"] == "release"]
    assert len(released) == 1
    assert released[0]["actor"] == "server"
    assert released[0]["meta"]["holder"] == "a"
    # and nobody can take the archived change again
    again = one.post(f"{P}/changes/{A}/claim", json={"holder": "a"}, headers=ADMIN_H)
    assert again.json()["kind"] == "archived"


def test_zombie_with_expired_lease_cannot_write_after_takeover(one: Any, clock: FakeClock) -> None:
    """A's lease lapses, B takes over; A (still believing it holds the lease) is fenced off."""
    a = _claim(one, "a", ttl=10)
    clock.advance(10)
    b = _claim(one, "b", ttl=60)
    assert b["fencing_token"] == a["fencing_token"] + 1
    before = _state(one)
    for kind in WRITES:
        stale = _write(one, kind, with_holder("a", a["fencing_token"]))
        assert stale.status_code == 409
        assert stale.json()["kind"] == "stale_fencing_token"
        nameonly = _write(one, kind, with_holder("a"))
        assert nameonly.status_code == 409
        assert nameonly.json()["kind"] == "lease_conflict"
        assert nameonly.json()["holder"] == "b"
    hb = one.post(f"{P}/changes/{A}/heartbeat", json={"holder": "a"}, headers=ADMIN_H)
    assert hb.json()["kind"] == "lease_conflict"
    assert _state(one) == before
    ok = _write(one, "push", with_holder("b", b["fencing_token"]))
    assert ok.status_code == 200
    # even after B lets go, A's old token stays stale
    one.post(f"{P}/changes/{A}/release", json={"holder": "b"}, headers=ADMIN_H)
    late = _write(one, "start", with_holder("a", a["fencing_token"]))
    assert late.json()["kind"] == "stale_fencing_token"
