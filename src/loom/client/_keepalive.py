"""Keep a lease alive from a background thread while some work runs (``loom keepalive``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from loom.client._client import Client
from loom.errors import Conflict, LoomError, NotFound
from loom.models import AuditEvent, ClaimResult

__all__ = ["LeaseKeeper", "lease_lost_by", "renew_interval"]

_log = logging.getLogger("loom.client")


def renew_interval(claim: ClaimResult) -> float:
    """Seconds between heartbeats: one third of the lease's TTL (at least one second)."""
    ttl = claim.ttl_seconds
    if ttl is None and claim.acquired_at is not None:
        ttl = int((claim.expires_at - claim.acquired_at).total_seconds())
    return max(1.0, (ttl or 900) / 3)


class LeaseKeeper:
    """Heartbeats ``change_id`` every ``interval`` seconds until stopped or the lease is lost.

    The lease is *lost* when a heartbeat is refused with a conflict (another holder, or the
    change was archived) or the change disappeared, or when heartbeats keep failing (server
    unreachable after the client's own retries) until the lease is past its expiry
    (``expires_at``, by ``clock``): then another agent may already hold it, so the error is
    a :class:`Conflict` of kind ``lease_expired``. ``on_lost`` is called once, from the
    keeper thread, with the error. Before the expiry, failures are logged and retried at
    the next tick.

    With ``watch``, a second thread follows the change's events on the event stream and
    learns of a force-release or a take-over as it happens, not at the next heartbeat.
    """

    def __init__(
        self,
        client: Client,
        change_id: str,
        *,
        interval: float,
        ttl_seconds: int | None = None,
        on_lost: Callable[[LoomError], None] | None = None,
        on_renew: Callable[[ClaimResult], None] | None = None,
        watch: bool = False,
        expires_at: datetime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.expires_at = expires_at
        self._clock = clock
        self.client = client
        self.change_id = change_id
        self.interval = interval
        self.ttl_seconds = ttl_seconds
        self.on_lost = on_lost
        self.on_renew = on_renew
        self.lost: LoomError | None = None
        self.renewals = 0
        self._stop = threading.Event()
        self._lost_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"loom-keepalive-{change_id}")
        self._thread.daemon = True
        # Daemon: it waits on the stream and ends with the process (or at the next event).
        self._watcher = (
            threading.Thread(target=self._watch, name=f"loom-watch-{change_id}", daemon=True)
            if watch
            else None
        )

    def start(self) -> None:
        """Start heartbeating (and watching) in the background."""
        self._thread.start()
        if self._watcher is not None:
            self._watcher.start()

    def stop(self) -> None:
        """Stop heartbeating and wait for the thread to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                claim = self.client.heartbeat(self.change_id, ttl_seconds=self.ttl_seconds)
            except (Conflict, NotFound) as error:
                self._lose(error)
                return
            except LoomError as error:
                _log.warning("heartbeat of %s failed: %s", self.change_id, error.message)
                if self.expires_at is not None and self._clock() >= self.expires_at:
                    self._lose(
                        Conflict(
                            f"the lease on {self.change_id} expired at "
                            f"{self.expires_at:%Y-%m-%d %H:%M:%SZ} while heartbeats failed "
                            f"({error.message})",
                            kind="lease_expired",
                            change_id=self.change_id,
                        )
                    )
                    return
                continue
            self.expires_at = claim.expires_at
            self.renewals += 1
            if self.on_renew is not None:
                self.on_renew(claim)

    def _lose(self, error: LoomError) -> None:
        """Report the loss once, whichever thread learns of it first."""
        with self._lost_lock:
            if self.lost is not None or self._stop.is_set():
                return
            self.lost = error
        self._stop.set()
        if self.on_lost is not None:
            self.on_lost(error)

    def _watch(self) -> None:
        try:
            for event in self.client.follow_events(entity_id=self.change_id):
                if self._stop.is_set():
                    return
                error = lease_lost_by(event, self.change_id, self.client.holder)
                if error is not None:
                    self._lose(error)
                    return
        except LoomError as error:  # the stream refused (the heartbeats still run)
            _log.warning("cannot watch %s on the event stream: %s", self.change_id, error.message)


def lease_lost_by(event: AuditEvent, change_id: str, holder: str | None) -> Conflict | None:
    """The loss an event of ``change_id`` means for ``holder``'s lease, or None."""
    if event.entity != "change" or event.entity_id != change_id:
        return None
    if event.op == "force_release":
        return Conflict(f"{change_id} was force-released by {event.by}", kind="lease_lost")
    if event.op == "claim" and _claimant(event) != holder:
        return Conflict(f"{change_id} was taken over by {event.by}", kind="lease_lost")
    if event.op == "archive":
        return Conflict(f"{change_id} was archived by {event.by}", kind="lease_lost")
    return None


def _claimant(event: AuditEvent) -> str | None:
    """Who a claim event gave the lease to: ``meta.holder`` (``by`` names the token when
    the claim came with a named token); ``by`` without its ``@`` for older events."""
    meta = event.meta
    if isinstance(meta, dict) and isinstance(meta.get("holder"), str):
        return str(meta["holder"])
    return event.by.removeprefix("@")
