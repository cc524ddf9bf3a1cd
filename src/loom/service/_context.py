"""What every use case needs: the database, the clock and the policy settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection

from loom.store.engine import Database
from loom.store.projects import ensure_project, find_project

__all__ = ["Actor", "Policy", "Project", "ServiceContext", "system_clock_us"]


def system_clock_us() -> int:
    """Wall-clock UTC time in microseconds (the server clock is the only lease authority)."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Project:
    org: str
    repo: str

    @property
    def name(self) -> str:
        return f"{self.org}/{self.repo}"


@dataclass(frozen=True)
class Actor:
    """Who is asking: the lease headers of the request and the token's scope."""

    holder: str | None = None
    fencing_token: int | None = None
    admin: bool = False

    @property
    def by(self) -> str:
        return f"@{self.holder}" if self.holder else ("@admin" if self.admin else "@project")


@dataclass(frozen=True)
class Policy:
    lease_ttl: int = 900
    lease_ttl_min: int = 10
    lease_ttl_max: int = 86400
    lease_enforcement: Literal["strict", "advisory"] = "strict"
    allow_blind_push: bool = False
    # Writes to an existing change need an active lease (creating a change stays open).
    require_lease: bool = False
    idempotency_ttl: int = 86400
    idempotency_in_flight_timeout: int = 120
    # Expired idempotency records are deleted by every n-th keyed request of a process.
    idempotency_purge_every: int = 500


@dataclass
class ServiceContext:
    db: Database
    policy: Policy = field(default_factory=Policy)
    clock: Callable[[], int] = system_clock_us
    _project_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now_us(self) -> int:
        return self.clock()

    def project_id(self, conn: Connection, project: Project, *, create: bool) -> int | None:
        """The project's row id (cached: projects are never deleted)."""
        key = (project.org, project.repo)
        cached = self._project_ids.get(key)
        if cached is not None:
            return cached
        pid = (
            ensure_project(conn, project.org, project.repo, self.now_us())
            if create
            else find_project(conn, project.org, project.repo)
        )
        if pid is not None and not create:
            with self._lock:
                self._project_ids[key] = pid
        return pid

    def remember_project(self, project: Project, pid: int) -> None:
        """Cache an id once the transaction that created it has committed."""
        with self._lock:
            self._project_ids[(project.org, project.repo)] = pid
