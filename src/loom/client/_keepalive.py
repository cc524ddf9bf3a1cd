"""Keep a lease alive from a background thread while some work runs (``loom keepalive``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from loom.client._client import Client
from loom.errors import Conflict, LoomError, NotFound
from loom.models import ClaimResult

__all__ = ["LeaseKeeper", "renew_interval"]

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
        self._thread = threading.Thread(target=self._run, name=f"loom-keepalive-{change_id}")
        self._thread.daemon = True

    def start(self) -> None:
        """Start heartbeating in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop heartbeating and wait for the thread to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _lose(self, error: LoomError) -> None:
        self.lost = error
        if self.on_lost is not None:
            self.on_lost(error)

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
