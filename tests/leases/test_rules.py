"""The pure lease rules (loom.domain.leases) with explicit integer-microsecond times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from loom.domain.leases import LeaseState, check_write, claim, heartbeat, release
from loom.domain.timefmt import format_us
from loom.errors import LeaseConflict

S = 1_000_000  # one second in µs
T0 = 1_790_000_000 * S
C = "001-01_alpha"


def _claim(state: LeaseState, holder: str, now: int, ttl: int = 10) -> LeaseState:
    return claim(state, change_id=C, holder=holder, now_us=now, ttl_seconds=ttl).state


def _conflict(fn: object, *args: object, **kwargs: object) -> LeaseConflict:
    assert callable(fn)
    with pytest.raises(LeaseConflict) as info:
        fn(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- expiry


def test_active_strictly_before_expiry() -> None:
    state = _claim(LeaseState(), "a", T0, ttl=10)
    assert state.expires_us == T0 + 10 * S
    assert state.is_active(T0 + 10 * S - 1)
    assert state.active_holder(T0 + 10 * S - 1) == "a"
    # now == expires: expired
    assert not state.is_active(T0 + 10 * S)
    assert state.active_holder(T0 + 10 * S) is None


def test_empty_state_is_never_active() -> None:
    assert not LeaseState().is_active(T0)
    assert LeaseState().active_holder(T0) is None


# --------------------------------------------------------------------------- claim


def test_first_claim_gets_token_1_and_a_claim_event() -> None:
    out = claim(LeaseState(), change_id=C, holder="a", now_us=T0, ttl_seconds=30)
    assert out.state.holder == "a"
    assert out.state.acquired_us == T0
    assert out.state.ttl_seconds == 30
    assert out.state.fencing_token == 1
    assert out.events == (("claim", "a"),)


def test_claim_by_active_holder_renews_without_new_token_or_event() -> None:
    first = _claim(LeaseState(), "a", T0, ttl=10)
    out = claim(first, change_id=C, holder="a", now_us=T0 + 5 * S, ttl_seconds=20)
    assert out.state.fencing_token == 1
    assert out.state.acquired_us == T0
    assert out.state.expires_us == T0 + 25 * S
    assert out.events == ()


def test_claim_by_other_while_active_is_lease_conflict_naming_the_holder() -> None:
    first = _claim(LeaseState(), "a", T0, ttl=10)
    err = _conflict(claim, first, change_id=C, holder="b", now_us=T0 + 10 * S - 1, ttl_seconds=10)
    assert err.kind == "lease_conflict"
    assert err.details == {
        "change_id": C,
        "holder": "a",
        "expires_at": format_us(T0 + 10 * S),
    }


def test_takeover_at_the_exact_expiry_bumps_the_token() -> None:
    first = _claim(LeaseState(), "a", T0, ttl=10)
    out = claim(first, change_id=C, holder="b", now_us=T0 + 10 * S, ttl_seconds=10)
    assert out.state.holder == "b"
    assert out.state.fencing_token == 2
    assert out.state.acquired_us == T0 + 10 * S
    assert out.state.previous_holder == "a"
    assert out.events == (("expire", "a"), ("claim", "b"))


def test_reclaim_of_own_expired_untaken_lease_keeps_the_token() -> None:
    first = _claim(LeaseState(), "a", T0, ttl=10)
    out = claim(first, change_id=C, holder="a", now_us=T0 + 60 * S, ttl_seconds=10)
    assert out.state.holder == "a"
    assert out.state.fencing_token == 1
    assert out.state.expires_us == T0 + 70 * S
    assert out.events == (("expire", "a"),)


def test_claim_after_release_is_a_new_ownership() -> None:
    first = _claim(LeaseState(), "a", T0)
    released = release(first, change_id=C, holder="a", now_us=T0 + S).state
    again = _claim(released, "a", T0 + 2 * S)
    assert again.fencing_token == 2


# --------------------------------------------------------------------------- heartbeat


def test_heartbeat_renews_and_never_changes_the_token() -> None:
    first = _claim(LeaseState(), "a", T0, ttl=10)
    out = heartbeat(first, change_id=C, holder="a", now_us=T0 + 9 * S, ttl_seconds=10)
    assert out.state.fencing_token == 1
    assert out.state.expires_us == T0 + 19 * S
    assert out.state.acquired_us == T0


def test_heartbeat_after_expiry_succeeds_when_untaken() -> None:
    first = _claim(LeaseState(), "a", T0, ttl=10)
    out = heartbeat(first, change_id=C, holder="a", now_us=T0 + 100 * S, ttl_seconds=10)
    assert out.state.holder == "a"
    assert out.state.fencing_token == 1
    assert out.state.is_active(T0 + 100 * S)


def test_heartbeat_by_non_holder_is_not_lease_holder() -> None:
    first = _claim(LeaseState(), "a", T0)
    err = _conflict(heartbeat, first, change_id=C, holder="b", now_us=T0 + S, ttl_seconds=10)
    assert err.kind == "not_lease_holder"
    assert err.details["holder"] == "a"


def test_heartbeat_without_any_lease_is_not_lease_holder() -> None:
    err = _conflict(heartbeat, LeaseState(), change_id=C, holder="a", now_us=T0, ttl_seconds=10)
    assert err.kind == "not_lease_holder"


def test_heartbeat_of_expired_lease_taken_by_another_is_lease_conflict() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    b = _claim(a, "b", T0 + 10 * S, ttl=10)
    err = _conflict(heartbeat, b, change_id=C, holder="a", now_us=T0 + 11 * S, ttl_seconds=10)
    assert err.kind == "lease_conflict"
    assert err.details["holder"] == "b"
    assert err.details["expires_at"] == format_us(T0 + 20 * S)


def test_heartbeat_after_release_is_refused() -> None:
    a = _claim(LeaseState(), "a", T0)
    released = release(a, change_id=C, holder="a", now_us=T0 + S).state
    err = _conflict(heartbeat, released, change_id=C, holder="a", now_us=T0 + S, ttl_seconds=10)
    assert err.kind == "not_lease_holder"


# --------------------------------------------------------------------------- release


def test_release_is_idempotent() -> None:
    a = _claim(LeaseState(), "a", T0)
    first = release(a, change_id=C, holder="a", now_us=T0 + S)
    assert first.changed
    assert first.events == (("release", "a"),)
    assert first.state.holder is None
    assert first.state.fencing_token == 1
    second = release(first.state, change_id=C, holder="a", now_us=T0 + 2 * S)
    assert not second.changed
    assert second.events == ()
    assert release(LeaseState(), change_id=C, holder="a", now_us=T0).changed is False


def test_release_of_another_holders_active_lease_needs_force() -> None:
    a = _claim(LeaseState(), "a", T0)
    err = _conflict(release, a, change_id=C, holder="b", now_us=T0 + S)
    assert err.kind == "not_lease_holder"
    forced = release(a, change_id=C, holder="admin", now_us=T0 + S, force=True)
    assert forced.state.holder is None
    assert forced.events == (("force_release", "a"),)


def test_release_of_another_holders_expired_lease_changes_nothing() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    out = release(a, change_id=C, holder="b", now_us=T0 + 10 * S)
    assert not out.changed
    assert out.state == a


def test_release_of_own_expired_lease_records_the_expiry_first() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    out = release(a, change_id=C, holder="a", now_us=T0 + 10 * S)
    assert out.events == (("expire", "a"), ("release", "a"))


# --------------------------------------------------------------------------- write checks


def test_unleased_change_accepts_any_writer() -> None:
    check_write(LeaseState(), change_id=C, holder=None, fencing_token=None, now_us=T0)
    check_write(LeaseState(), change_id=C, holder="x", fencing_token=None, now_us=T0)


def test_active_lease_accepts_only_its_holder() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    check_write(a, change_id=C, holder="a", fencing_token=None, now_us=T0 + S)
    check_write(a, change_id=C, holder="a", fencing_token=1, now_us=T0 + S)
    for who in (None, "b"):
        err = _conflict(check_write, a, change_id=C, holder=who, fencing_token=None, now_us=T0)
        assert err.kind == "lease_conflict"
        assert err.details == {"change_id": C, "holder": "a", "expires_at": format_us(T0 + 10 * S)}


def test_stale_fencing_token_is_refused_even_from_the_right_name() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    b = _claim(a, "b", T0 + 10 * S, ttl=10)  # token 2
    err = _conflict(check_write, b, change_id=C, holder="a", fencing_token=1, now_us=T0 + 11 * S)
    assert err.kind == "stale_fencing_token"
    assert err.details["fencing_token"] == 2
    # ... also once B's lease has lapsed or was released: a stale token stays stale.
    released = release(b, change_id=C, holder="b", now_us=T0 + 12 * S).state
    err = _conflict(
        check_write, released, change_id=C, holder="a", fencing_token=1, now_us=T0 + 13 * S
    )
    assert err.kind == "stale_fencing_token"


def test_token_from_the_future_is_refused_while_leased() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    err = _conflict(check_write, a, change_id=C, holder="a", fencing_token=5, now_us=T0 + S)
    assert err.kind == "unknown_fencing_token"  # never issued: not "stale"


def test_expired_untaken_lease_no_longer_blocks_writes() -> None:
    a = _claim(LeaseState(), "a", T0, ttl=10)
    check_write(a, change_id=C, holder="b", fencing_token=None, now_us=T0 + 10 * S)
    check_write(a, change_id=C, holder="a", fencing_token=1, now_us=T0 + 10 * S)


# --------------------------------------------------------------------------- properties

_HOLDERS = st.sampled_from(["a", "b", "c"])
_STEP = st.one_of(
    st.tuples(st.just("claim"), _HOLDERS, st.integers(10, 60)),
    st.tuples(st.just("heartbeat"), _HOLDERS, st.integers(10, 60)),
    st.tuples(st.just("release"), _HOLDERS, st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 90), st.none()),
)


@settings(max_examples=examples(300))
@given(st.lists(_STEP, max_size=40))
def test_token_changes_exactly_on_ownership_transitions(
    steps: list[tuple[str, object, object]],
) -> None:
    state = LeaseState()
    now = T0
    for op, arg, extra in steps:
        before = state
        try:
            if op == "advance":
                assert isinstance(arg, int)
                now += arg * S
                continue
            assert isinstance(arg, str)
            if op == "claim":
                assert isinstance(extra, int)
                state = claim(state, change_id=C, holder=arg, now_us=now, ttl_seconds=extra).state
            elif op == "heartbeat":
                assert isinstance(extra, int)
                state = heartbeat(
                    state, change_id=C, holder=arg, now_us=now, ttl_seconds=extra
                ).state
            else:
                state = release(state, change_id=C, holder=arg, now_us=now, force=bool(extra)).state
        except LeaseConflict as err:
            # Claims and releases are refused only over somebody else's active lease;
            # heartbeats whenever the caller is not the (last) holder.
            assert before.holder != arg
            if op != "heartbeat":
                assert before.is_active(now)
                assert not (op == "release" and extra)
            assert err.details["holder"] == before.holder
            continue
        assert state.fencing_token >= before.fencing_token
        new_owner = state.holder is not None and state.holder != before.holder
        if op == "claim" and new_owner:
            assert state.fencing_token == before.fencing_token + 1
        else:
            assert state.fencing_token == before.fencing_token
        if before.is_active(now) and before.holder != arg and op == "claim":
            raise AssertionError("claim succeeded over an active lease of another holder")
