"""Lease rules: claim, heartbeat, release and write checks, as pure functions of state and time.

The store keeps one :class:`LeaseState` per change and calls these functions while holding the
change's lock; these functions decide. Times are integer microseconds (UTC) supplied by the
caller, so every rule is testable with an injected clock.

Rules (PRODUCT.md §3.3):
- a lease is *active* while ``now < expires``; at ``now == expires`` it has expired;
- the fencing token increases on every ownership transition, never on a renewal;
- a claim by the active holder renews; a claim of a change actively held by another is a
  ``lease_conflict``; after expiry anybody may claim (a new holder bumps the token, the last
  holder reclaiming its own untaken lease keeps it);
- a heartbeat renews the holder's lease, also after expiry as long as nobody else took it;
- release is idempotent; only ``force`` (admin) releases another holder's active lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loom.domain.timefmt import format_us
from loom.errors import LeaseConflict

__all__ = [
    "LeaseEvent",
    "LeaseOutcome",
    "LeaseState",
    "check_write",
    "claim",
    "heartbeat",
    "release",
]

LeaseEvent = Literal["claim", "expire", "release", "force_release"]

_US = 1_000_000


@dataclass(frozen=True)
class LeaseState:
    """What is stored for one change. ``holder`` stays set after expiry until taken over."""

    holder: str | None = None
    acquired_us: int | None = None
    expires_us: int | None = None
    ttl_seconds: int | None = None
    fencing_token: int = 0
    previous_holder: str | None = None
    expiry_recorded: bool = False

    def is_active(self, now_us: int) -> bool:
        return self.holder is not None and self.expires_us is not None and now_us < self.expires_us

    def active_holder(self, now_us: int) -> str | None:
        return self.holder if self.is_active(now_us) else None


@dataclass(frozen=True)
class LeaseOutcome:
    """The new state and the audit events the transition produces, in order."""

    state: LeaseState
    events: tuple[tuple[LeaseEvent, str], ...] = ()  # (event, holder it concerns)
    changed: bool = True


def _renewed(
    state: LeaseState, expires_us: int, ttl_seconds: int, *, expiry_recorded: bool = False
) -> LeaseState:
    """The same ownership with a new expiry (``dataclasses.replace`` cost a tenth of a
    renewal's rule evaluation)."""
    return LeaseState(
        holder=state.holder,
        acquired_us=state.acquired_us,
        expires_us=expires_us,
        ttl_seconds=ttl_seconds,
        fencing_token=state.fencing_token,
        previous_holder=state.previous_holder,
        expiry_recorded=expiry_recorded,
    )


def _expired_event(state: LeaseState, now_us: int) -> tuple[tuple[LeaseEvent, str], ...]:
    if state.holder is not None and not state.is_active(now_us) and not state.expiry_recorded:
        return (("expire", state.holder),)
    return ()


def _conflict(change_id: str, state: LeaseState, kind: str, message: str) -> LeaseConflict:
    return LeaseConflict(
        message,
        kind=kind,
        change_id=change_id,
        holder=state.holder,
        expires_at=format_us(state.expires_us),
    )


def claim(
    state: LeaseState, *, change_id: str, holder: str, now_us: int, ttl_seconds: int
) -> LeaseOutcome:
    """Acquire or renew the lease for ``holder``."""
    expires = now_us + ttl_seconds * _US
    if state.is_active(now_us):
        if state.holder != holder:
            raise _conflict(
                change_id,
                state,
                "lease_conflict",
                f"change '{change_id}' is already claimed by '{state.holder}'",
            )
        renewed = _renewed(state, expires, ttl_seconds, expiry_recorded=state.expiry_recorded)
        return LeaseOutcome(renewed, ())
    events = _expired_event(state, now_us)
    if state.holder == holder:
        # The last holder takes back its own expired, untaken lease: same ownership.
        return LeaseOutcome(_renewed(state, expires, ttl_seconds), events)
    new = LeaseState(
        holder=holder,
        acquired_us=now_us,
        expires_us=expires,
        ttl_seconds=ttl_seconds,
        fencing_token=state.fencing_token + 1,
        previous_holder=state.holder,
        expiry_recorded=False,
    )
    return LeaseOutcome(new, (*events, ("claim", holder)))


def heartbeat(
    state: LeaseState, *, change_id: str, holder: str, now_us: int, ttl_seconds: int
) -> LeaseOutcome:
    """Renew ``holder``'s lease; never changes the fencing token."""
    if state.holder == holder and state.expires_us is not None:
        return LeaseOutcome(_renewed(state, now_us + ttl_seconds * _US, ttl_seconds), ())
    if state.is_active(now_us) and state.previous_holder == holder:
        raise _conflict(
            change_id,
            state,
            "lease_conflict",
            f"the lease of '{holder}' on '{change_id}' expired and was taken by '{state.holder}'",
        )
    raise _conflict(
        change_id,
        state,
        "not_lease_holder",
        f"'{holder}' does not hold the lease on '{change_id}'",
    )


def release(
    state: LeaseState, *, change_id: str, holder: str, now_us: int, force: bool = False
) -> LeaseOutcome:
    """Release; idempotent. Releasing another holder's active lease needs ``force``."""
    if state.holder is None:
        return LeaseOutcome(state, (), changed=False)
    if state.holder != holder and state.is_active(now_us) and not force:
        raise _conflict(
            change_id,
            state,
            "not_lease_holder",
            f"'{holder}' does not hold the lease on '{change_id}' (held by '{state.holder}')",
        )
    if state.holder != holder and not state.is_active(now_us):
        # An expired lease of somebody else: nothing active to release.
        return LeaseOutcome(state, (), changed=False)
    event: LeaseEvent = "force_release" if state.holder != holder else "release"
    released = LeaseState(fencing_token=state.fencing_token, previous_holder=state.holder)
    return LeaseOutcome(released, (*_expired_event(state, now_us), (event, state.holder)))


def check_write(
    state: LeaseState,
    *,
    change_id: str,
    holder: str | None,
    fencing_token: int | None,
    now_us: int,
) -> None:
    """Refuse a write that does not come from the active holder, or carries a stale token."""
    stale = fencing_token is not None and (
        fencing_token < state.fencing_token
        or (fencing_token != state.fencing_token and state.is_active(now_us))
    )
    if stale:
        assert fencing_token is not None
        # A token above the current one was never issued (a client bug or a forged header),
        # which "stale" would misreport as a lost lease.
        ahead = fencing_token > state.fencing_token
        raise LeaseConflict(
            f"fencing token {fencing_token} for '{change_id}' was never issued "
            f"(current {state.fencing_token})"
            if ahead
            else f"fencing token {fencing_token} for '{change_id}' is stale "
            f"(current {state.fencing_token})",
            kind="unknown_fencing_token" if ahead else "stale_fencing_token",
            change_id=change_id,
            holder=state.active_holder(now_us),
            expires_at=format_us(state.expires_us) if state.is_active(now_us) else None,
            fencing_token=state.fencing_token,
        )
    if state.is_active(now_us) and state.holder != holder:
        raise _conflict(
            change_id,
            state,
            "lease_conflict",
            f"change '{change_id}' is leased by '{state.holder}'; "
            "writes must come from the holder (X-Loom-Holder)",
        )
