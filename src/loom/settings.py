"""The server's one settings object, built by ``loom serve`` and owned by ``create_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["DEFAULT_MAX_ARTIFACT_BYTES", "DEFAULT_MAX_BODY_BYTES", "Settings", "make_private_dir"]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024 * 1024
"""Each stored artifact (proposal, design, tasks, one spec or delta, a module.md, a change's
metadata) is at most this many UTF-8 bytes: 413 ``artifact_too_large`` before any parsing."""
# Several processes on one SQLite file would each run their writes inline on the event loop:
# one process's write lock would stall the others' whole loops for up to the busy timeout.
_SQLITE_WORKERS = (
    "--workers > 1 needs PostgreSQL: SQLite allows one writing process, and one server "
    "process already uses it fully (see docs/scaling.md); use --workers 1 or a "
    "postgresql:// --database-url"
)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents); the directories created are mode 0700.

    An existing directory keeps its mode (the operator chose it)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode is masked by the umask


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
    require_lease: bool = False
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_artifact_bytes: int = Field(default=DEFAULT_MAX_ARTIFACT_BYTES, ge=1024)
    # Connections (docs/operations: "Connections and timeouts"): an idle keep-alive
    # connection closes after keep_alive_timeout; a request head must arrive within
    # header_timeout (408); a body may pause at most body_timeout between chunks (408);
    # connections beyond max_connections are answered 503 and closed.
    keep_alive_timeout: int = Field(default=5, ge=1)
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1024, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    # Database connections per server process (docs/scaling.md, "Connections"): writer
    # threads, lease requests in flight on the event loop (PostgreSQL opens that many at
    # start), and the pool they share are sized from it.
    db_pool_size: int = Field(default=8, ge=1, le=64)
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

    def make_data_dir(self) -> None:
        """Create the data dir (and parents) if missing; a new data dir is mode 0700."""
        make_private_dir(self.data_dir)

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
