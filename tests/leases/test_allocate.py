"""Atomic allocation: eligibility, order, filters, resume, idempotent retries (API.md §2.7)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import FakeClock
from loom.domain.timefmt import format_us

from ._helpers import ADMIN_H, P, import_changes, push_new, with_holder

S = 1_000_000


def _allocate(api: Any, holder: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
    r = api.post(f"{P}/allocate", json={"holder": holder, **body}, headers=headers or ADMIN_H)
    assert r.status_code == 200, r.text
    return r.json()["claim"]


def _release(api: Any, change_id: str, holder: str) -> None:
    r = api.post(f"{P}/changes/{change_id}/release", json={"holder": holder}, headers=ADMIN_H)
    assert r.status_code == 200, r.text


def _complete(api: Any, change_id: str, holder: str) -> None:
    r = api.post(f"{P}/changes/{change_id}/tasks/1.1/complete", headers=with_holder(holder))
    assert r.status_code == 200, r.text


def test_no_work_is_a_null_claim(api: Any) -> None:
    assert _allocate(api, "a") is None
    push_new(api, "001-01_draft", tasks=None)  # no tasks: draft
    assert _allocate(api, "a") is None


def test_allocation_is_a_claim_with_ttl_and_token(api: Any, clock: FakeClock) -> None:
    push_new(api, "001-01_alpha")
    got = _allocate(api, "a", ttl_seconds=30)
    assert got == {
        "change_id": "001-01_alpha",
        "holder": "a",
        "acquired_at": format_us(clock.now),
        "expires_at": format_us(clock.now + 30 * S),
        "ttl_seconds": 30,
        "fencing_token": 1,
    }
    assert api.get(f"{P}/changes/001-01_alpha/lease", headers=ADMIN_H).json() == got


def test_canonical_order_is_numeric_then_sub_modules_then_legacy(api: Any) -> None:
    ids = [
        "legacy-change",
        "002-01_two",
        "001.01-01_sub",
        "001-10_ten",
        "001-02_two",
        "010-01_ten",
    ]
    import_changes(api, ids)
    order = []
    for i in range(len(ids)):
        got = _allocate(api, f"agent-{i}")
        order.append(got["change_id"])
    assert order == [
        "001-02_two",
        "001-10_ten",
        "001.01-01_sub",
        "002-01_two",
        "010-01_ten",
        "legacy-change",
    ]
    assert _allocate(api, "late") is None


def test_only_ready_and_in_progress_unleased_unarchived_changes_are_offered(
    api: Any, clock: FakeClock
) -> None:
    import_changes(api, ["001-01_done", "001-02_leased", "001-03_archived", "001-05_ready"])
    push_new(api, "001-04_draft", tasks=None)
    _complete(api, "001-01_done", "x")  # work status complete
    api.post(f"{P}/changes/001-02_leased/claim", json={"holder": "x"}, headers=ADMIN_H)
    assert (
        api.post(f"{P}/changes/001-03_archived/archive?force=true", headers=ADMIN_H).status_code
        == 200
    )
    assert _allocate(api, "a")["change_id"] == "001-05_ready"
    assert _allocate(api, "b") is None


def test_abandoned_in_progress_work_is_offered_first(api: Any, clock: FakeClock) -> None:
    import_changes(api, ["001-01_first", "005-01_abandoned", "006-01_busy"])
    for cid in ("005-01_abandoned", "006-01_busy"):
        lease = api.post(
            f"{P}/changes/{cid}/claim", json={"holder": "old", "ttl_seconds": 10}, headers=ADMIN_H
        ).json()
        assert lease["fencing_token"] == 1
        r = api.post(f"{P}/changes/{cid}/tasks/1.1/start", headers=with_holder("old", 1))
        assert r.status_code == 200
    clock.advance(10)  # both in-progress leases lapse
    api.post(f"{P}/changes/006-01_busy/claim", json={"holder": "old"}, headers=ADMIN_H)  # resumed
    got = _allocate(api, "new")
    assert got["change_id"] == "005-01_abandoned"
    assert got["fencing_token"] == 2  # an ownership change
    assert _allocate(api, "other")["change_id"] == "001-01_first"
    assert _allocate(api, "third") is None


def test_only_lapsed_leases_make_in_progress_work_abandoned(api: Any, clock: FakeClock) -> None:
    """PRODUCT.md §3.3: "in-progress with an expired lease = abandoned work, offered first".
    In-progress work that was never leased, or whose holder released it, is offered in
    canonical order like ready work."""
    import_changes(api, ["001-01_ready", "004-01_unleased", "005-01_released", "009-01_lapsed"])
    r = api.post(f"{P}/changes/004-01_unleased/tasks/1.1/start", headers=ADMIN_H)
    assert r.status_code == 200
    for cid, ttl in (("005-01_released", 60), ("009-01_lapsed", 10)):
        lease = api.post(
            f"{P}/changes/{cid}/claim", json={"holder": "old", "ttl_seconds": ttl}, headers=ADMIN_H
        ).json()
        r = api.post(
            f"{P}/changes/{cid}/tasks/1.1/start",
            headers=with_holder("old", lease["fencing_token"]),
        )
        assert r.status_code == 200
    api.post(f"{P}/changes/005-01_released/release", json={"holder": "old"}, headers=ADMIN_H)
    clock.advance(10)  # 009's lease lapses
    order = [_allocate(api, f"agent-{i}")["change_id"] for i in range(4)]
    assert order == ["009-01_lapsed", "001-01_ready", "004-01_unleased", "005-01_released"]
    assert _allocate(api, "late") is None


def test_expired_lease_is_taken_over_by_allocation(api: Any, clock: FakeClock) -> None:
    push_new(api, "001-01_alpha")
    first = _allocate(api, "a", ttl_seconds=10)
    assert _allocate(api, "b") is None
    clock.advance(10)
    second = _allocate(api, "b")
    assert second["change_id"] == "001-01_alpha"
    assert second["fencing_token"] == first["fencing_token"] + 1


def test_module_and_changes_filters(api: Any) -> None:
    import_changes(api, ["001-01_a", "001-02_b", "001.01-01_sub", "002-01_c", "002-02_d"])
    assert _allocate(api, "m2", module="002")["change_id"] == "002-01_c"
    assert _allocate(api, "m2b", module="2")["change_id"] == "002-02_d"
    assert _allocate(api, "m2c", module="002") is None
    assert _allocate(api, "sub", module="001.01")["change_id"] == "001.01-01_sub"
    assert _allocate(api, "sub2", module="001.01") is None
    listed = _allocate(api, "l", changes=["002-02_d", "001-02_b"])
    assert listed["change_id"] == "001-02_b"  # 002-02_d is taken already
    assert _allocate(api, "l2", changes=["002-02_d", "001-02_b", "009-09_unknown"]) is None
    assert _allocate(api, "l3", changes=[]) is None
    assert _allocate(api, "m1", module="001")["change_id"] == "001-01_a"


def test_bad_filters_are_400(api: Any) -> None:
    for body in ({"module": "1/2"}, {"changes": ["../etc"]}, {"module": "abc"}):
        r = api.post(f"{P}/allocate", json={"holder": "a", **body}, headers=ADMIN_H)
        assert r.status_code == 400, (body, r.text)


def test_a_holder_gets_its_own_lease_back_renewed(api: Any, clock: FakeClock) -> None:
    import_changes(api, ["001-01_a", "001-02_b", "002-01_c"])
    first = _allocate(api, "a", ttl_seconds=20)
    clock.advance(5)
    again = _allocate(api, "a", ttl_seconds=20)
    assert again["change_id"] == first["change_id"]
    assert again["fencing_token"] == first["fencing_token"]
    assert again["expires_at"] == format_us(clock.now + 20 * S)
    assert len(api.get(f"{P}/leases", headers=ADMIN_H).json()) == 1
    # the filters scope the resume: outside them the holder gets fresh work
    other = _allocate(api, "a", module="002")
    assert other["change_id"] == "002-01_c"
    # once released, it gets the next change
    _release(api, "001-01_a", "a")
    _release(api, "002-01_c", "a")
    _complete(api, "001-01_a", "a")
    assert _allocate(api, "a")["change_id"] == "001-02_b"


def test_idempotency_key_replays_the_same_claim(api: Any, clock: FakeClock) -> None:
    import_changes(api, ["001-01_a", "001-02_b"])
    headers = {**ADMIN_H, "Idempotency-Key": "alloc-1"}
    first = api.post(f"{P}/allocate", json={"holder": "a"}, headers=headers)
    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    # a retry, even after the agent released and time moved on, gets the stored answer
    _release(api, first.json()["claim"]["change_id"], "a")
    clock.advance(30)
    retry = api.post(f"{P}/allocate", json={"holder": "a"}, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    events = api.get(f"{P}/events", params={"op": "allocate"}, headers=ADMIN_H).json()
    assert len(events) == 1
    assert api.get(f"{P}/leases", headers=ADMIN_H).json() == []
    # the same key for a different request is refused
    other = api.post(f"{P}/allocate", json={"holder": "b"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["kind"] == "idempotency_key_reused"
    # a new key allocates again
    fresh = api.post(
        f"{P}/allocate", json={"holder": "a"}, headers={**ADMIN_H, "Idempotency-Key": "k2"}
    )
    assert fresh.json()["claim"]["change_id"] == "001-01_a"


def test_idempotent_null_claim_is_replayed_too(api: Any) -> None:
    headers = {**ADMIN_H, "Idempotency-Key": "empty"}
    assert api.post(f"{P}/allocate", json={"holder": "a"}, headers=headers).json() == {
        "claim": None
    }
    push_new(api, "001-01_a")
    replay = api.post(f"{P}/allocate", json={"holder": "a"}, headers=headers)
    assert replay.json() == {"claim": None}
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert api.get(f"{P}/leases", headers=ADMIN_H).json() == []


@pytest.mark.parametrize("ttl", [5, 100_000])
def test_allocate_checks_the_ttl(api: Any, ttl: int) -> None:
    push_new(api, "001-01_a")
    r = api.post(f"{P}/allocate", json={"holder": "a", "ttl_seconds": ttl}, headers=ADMIN_H)
    assert r.status_code == 400
    assert r.json()["kind"] == "invalid_ttl"
