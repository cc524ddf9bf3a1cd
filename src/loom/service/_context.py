"""What every use case needs: the database, the clock and the policy settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection

from loom.domain.leases import LeaseState
from loom.domain.tokens import NamedToken
from loom.service._tokencache import TokenCache
from loom.settings import Settings
from loom.store import migrate
from loom.store.engine import Database
from loom.store.projects import ensure_project, find_project

__all__ = ["Actor", "Policy", "Project", "ServiceContext", "open_context", "system_clock_us"]


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
    # The named token's name (``loom token create --name``): what audit events record.
    token_name: str | None = None

    @property
    def by(self) -> str:
        if self.token_name is not None:
            return self.token_name
        return f"@{self.holder}" if self.holder else ("@admin" if self.admin else "@project")


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class Policy:
    """The rules the use cases apply; defaults are the server settings' defaults."""

    lease_ttl: int = _default("lease_ttl")
    lease_ttl_min: int = _default("lease_ttl_min")
    lease_ttl_max: int = _default("lease_ttl_max")
    lease_enforcement: Literal["strict", "advisory"] = _default("lease_enforcement")
    allow_blind_push: bool = _default("allow_blind_push")
    # Writes to an existing change need an active lease (creating a change stays open).
    require_lease: bool = _default("require_lease")
    idempotency_ttl: int = _default("idempotency_ttl")
    max_artifact_bytes: int = _default("max_artifact_bytes")
    idempotency_in_flight_timeout: int = 120
    # Expired idempotency records are deleted by every n-th keyed request of a process.
    idempotency_purge_every: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            lease_ttl=settings.lease_ttl,
            lease_ttl_min=settings.lease_ttl_min,
            lease_ttl_max=settings.lease_ttl_max,
            lease_enforcement=settings.lease_enforcement,
            allow_blind_push=settings.allow_blind_push,
            require_lease=settings.require_lease,
            idempotency_ttl=settings.idempotency_ttl,
            max_artifact_bytes=settings.max_artifact_bytes,
        )


@dataclass
class ServiceContext:
    db: Database
    policy: Policy = field(default_factory=Policy)
    clock: Callable[[], int] = system_clock_us
    tokens: TokenCache[NamedToken] = field(default_factory=TokenCache)
    # Dashboard sessions: nonce -> signed out (see loom.service.sessions).
    sessions: TokenCache[bool] = field(default_factory=TokenCache)
    # The lease state this process last stored or read, per (project id, change id): a
    # guess, never trusted unchecked (loom.service.leases: PostgreSQL's one-round-trip
    # compare-and-set).
    leases_seen: dict[tuple[int, str], LeaseState] = field(default_factory=dict)
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


def open_context(
    settings: Settings,
    clock: Callable[[], int] | None = None,
    *,
    run_migrations: bool = True,
) -> ServiceContext:
    """The context of a server process: its database (upgraded to the current schema unless
    ``run_migrations`` is False), policy and clock. ``ctx.db.dispose()`` closes it."""
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    if run_migrations:
        migrate.upgrade(db)
    return ServiceContext(
        db,
        Policy.from_settings(settings),
        clock or system_clock_us,
        tokens=TokenCache(settings.token_cache_seconds),
        sessions=TokenCache(settings.token_cache_seconds),
    )
