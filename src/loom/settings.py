"""The server's one settings object, built by ``loom serve`` and owned by ``create_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Settings"]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Several processes on one SQLite file would each run their writes inline on the event loop:
# one process's write lock would stall the others' whole loops for up to the busy timeout.
_SQLITE_WORKERS = (
    "--workers > 1 needs PostgreSQL: SQLite allows one writing process, and one server "
    "process already uses it fully (see docs/scaling.md); use --workers 1 or a "
    "postgresql:// --database-url"
)


class Settings(BaseModel):
    """Everything the server needs to run. Secrets are masked in ``repr``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bind: str = "127.0.0.1"
    port: int = Field(default=9010, ge=0, le=65535)
    data_dir: Path
    database_url: str
    admin_tokens: tuple[SecretStr, ...] = ()
    token_seed: SecretStr | None = None
    # Ito's HMAC project tokens (on by default; ``--no-project-tokens`` leaves only admin
    # and named tokens).
    project_tokens: bool = True
    # How long a process may reuse a named-token lookup (revocation reaches every process
    # within this many seconds; 0 reads the database on every request).
    token_cache_seconds: float = Field(default=1.0, ge=0, le=1)
    metrics_public: bool = False
    allow_orgs: tuple[str, ...] = ()
    allow_projects: tuple[str, ...] = ()
    lease_ttl: int = Field(default=900, ge=1)
    lease_ttl_min: int = Field(default=10, ge=1)
    lease_ttl_max: int = Field(default=86400, ge=1)
    lease_enforcement: Literal["strict", "advisory"] = "strict"
    allow_blind_push: bool = False
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    workers: int = Field(default=1, ge=1, le=64)
    idempotency_ttl: int = Field(default=86400, ge=60)
    access_log: bool = True
    # The event stream (GET /events/stream, /ui/): comment heartbeat interval, per-subscriber
    # buffer (bytes of events queued for a slow reader before it is cut off), and the re-read
    # timer that bounds the delay of a lost wake-up.
    stream_heartbeat: float = Field(default=15.0, gt=0)
    stream_buffer: int = Field(default=16 * 1024 * 1024, ge=1024)
    stream_recheck: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check_ttls(self) -> Settings:
        if not self.lease_ttl_min <= self.lease_ttl <= self.lease_ttl_max:
            raise ValueError(
                f"lease TTL {self.lease_ttl}s must lie within "
                f"[{self.lease_ttl_min}, {self.lease_ttl_max}]"
            )
        if self.workers > 1 and self.database_kind == "sqlite":
            raise ValueError(_SQLITE_WORKERS)
        return self

    @property
    def database_kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @property
    def allowlist_active(self) -> bool:
        return bool(self.allow_orgs or self.allow_projects)

    def project_allowed(self, org: str, repo: str) -> bool:
        """No allowlist configured means every well-formed project is allowed."""
        if not self.allowlist_active:
            return True
        return org in self.allow_orgs or f"{org}/{repo}" in self.allow_projects
