"""The database schema, as SQLAlchemy Core metadata. Alembic revisions build exactly this.

Times are stored as integer microseconds since the Unix epoch (UTC): portable across SQLite
and PostgreSQL, exact, and cheap to compare in lease conditions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = [
    "api_tokens",
    "change_requirements",
    "change_specs",
    "changes",
    "event_batches",
    "events",
    "idempotency",
    "leases",
    "metadata",
    "modules",
    "projects",
    "spec_revisions",
    "specs",
    "ui_session_revocations",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org", String(100), nullable=False),
    Column("repo", String(100), nullable=False),
    Column("event_seq", BigInteger, nullable=False, server_default="0"),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("org", "repo"),
)

_ELIGIBLE = "archived_us IS NULL AND work_status IN ('ready', 'in-progress')"

changes = Table(
    "changes",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("change_id", String(160), nullable=False),
    Column("sort_key", String(200), nullable=False),
    Column("module_id", String(3), nullable=True),
    Column("sub_module_id", String(6), nullable=True),
    Column("revision", BigInteger, nullable=False),
    # Derived from the artifacts on every write (same transaction), so lists need no parsing.
    Column("tasks_format", String(10), nullable=False, server_default="checkbox"),
    Column("total_tasks", Integer, nullable=False, server_default="0"),
    Column("completed_tasks", Integer, nullable=False, server_default="0"),
    Column("shelved_tasks", Integer, nullable=False, server_default="0"),
    Column("in_progress_tasks", Integer, nullable=False, server_default="0"),
    Column("pending_tasks", Integer, nullable=False, server_default="0"),
    Column("has_proposal", Boolean, nullable=False, server_default="0"),
    Column("has_design", Boolean, nullable=False, server_default="0"),
    Column("has_specs", Boolean, nullable=False, server_default="0"),
    Column("work_status", String(12), nullable=False),
    Column("archived_us", BigInteger, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    # The large texts come last: SQLite stores a row's columns in order, so the summary
    # columns stay readable without walking the texts' overflow pages (5,000-row lists).
    Column("proposal", Text, nullable=True),
    Column("design", Text, nullable=True),
    Column("tasks", Text, nullable=True),
    Column("metadata", Text, nullable=True),
    PrimaryKeyConstraint("project_id", "change_id"),
    Index("ix_changes_project_sort", "project_id", "sort_key"),
    # Allocation walks eligible changes of one work status in canonical order.
    Index("ix_changes_project_status_sort", "project_id", "work_status", "sort_key"),
    # Active changes only (a large project is mostly archived; migration 0008): active list
    # pages, and allocation's eligible changes in canonical order.
    Index(
        "ix_changes_active",
        "project_id",
        "sort_key",
        sqlite_where=text("archived_us IS NULL"),
        postgresql_where=text("archived_us IS NULL"),
    ),
    Index(
        "ix_changes_eligible",
        "project_id",
        "sort_key",
        sqlite_where=text(_ELIGIBLE),
        postgresql_where=text(_ELIGIBLE),
    ),
)

change_specs = Table(
    "change_specs",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("change_id", String(160), nullable=False),
    Column("capability", String(128), nullable=False),
    Column("content", Text, nullable=False),
    # The spec revision this delta was written against (0: the spec did not exist then).
    Column("base_revision", BigInteger, nullable=True),
    PrimaryKeyConstraint("project_id", "change_id", "capability"),
    ForeignKeyConstraint(
        ["project_id", "change_id"],
        ["changes.project_id", "changes.change_id"],
        ondelete="CASCADE",
    ),
)

# The requirement index: what each unarchived change's deltas touch (loom.domain.specs
# .requirement_refs), rewritten with the deltas in the same transaction.
change_requirements = Table(
    "change_requirements",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("change_id", String(160), nullable=False),
    Column("capability", String(128), nullable=False),
    Column("requirement", String(300), nullable=False),
    Column("op", String(10), nullable=False),
    Column("from_name", String(300), nullable=True),
    Column("to_name", String(300), nullable=True),
    PrimaryKeyConstraint("project_id", "change_id", "capability", "requirement", "op"),
    ForeignKeyConstraint(
        ["project_id", "change_id"],
        ["changes.project_id", "changes.change_id"],
        ondelete="CASCADE",
    ),
    # Who else touches this requirement (overlaps, overlap-aware allocation).
    Index(
        "ix_change_requirements_project_id_capability_requirement",
        "project_id",
        "capability",
        "requirement",
    ),
)

leases = Table(
    "leases",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("change_id", String(160), nullable=False),
    Column("holder", String(200), nullable=True),
    Column("acquired_us", BigInteger, nullable=True),
    Column("expires_us", BigInteger, nullable=True),
    Column("ttl_seconds", Integer, nullable=True),
    # Per-change counter: increases on every ownership transition, never on renewal.
    Column("fencing_token", BigInteger, nullable=False, server_default="0"),
    Column("previous_holder", String(200), nullable=True),
    # The last holder stays recorded after expiry so lazy expiry can be reported once.
    Column("expiry_recorded", Boolean, nullable=False, server_default="0"),
    PrimaryKeyConstraint("project_id", "change_id"),
    ForeignKeyConstraint(
        ["project_id", "change_id"],
        ["changes.project_id", "changes.change_id"],
        ondelete="CASCADE",
    ),
)

modules = Table(
    "modules",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("module_id", String(6), nullable=False),
    Column("parent_id", String(3), nullable=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("markdown", Text, nullable=True),
    Column("updated_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "module_id"),
)

specs = Table(
    "specs",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("spec_id", String(128), nullable=False),
    Column("markdown", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    # Bumped by every archive, import or PUT that changes the text (see spec_revisions).
    Column("revision", BigInteger, nullable=False, server_default="1"),
    PrimaryKeyConstraint("project_id", "spec_id"),
)

# Every revision of every spec: the text (NULL: the spec was deleted) and what produced it.
spec_revisions = Table(
    "spec_revisions",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("spec_id", String(128), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("markdown", Text, nullable=True),
    Column("change_id", String(160), nullable=True),
    Column("source", String(10), nullable=False),  # archive | import | put
    Column("created_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "spec_id", "revision"),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(10), nullable=False),  # in_flight | done
    Column("owner", String(32), nullable=True),
    Column("status", Integer, nullable=True),
    Column("body", Text, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "key"),
    Index("ix_idempotency_expires", "expires_us"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # The per-project position in the log. SQLite assigns it on append (writers are
    # serialised anyway); PostgreSQL appends with NULL and numbers committed events in id order
    # when the log is read (see loom.store.events.publish_events), so writers never queue on
    # a per-project counter.
    Column("seq", BigInteger, nullable=True),
    Column("entity", String(100), nullable=False),
    Column("scope", String(200), nullable=True),
    Column("op", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    # The event's ``entity_id`` (also in ``body``), so one entity's events are an index
    # range (the dashboard's change page), not a scan of the log.
    Column("entity_id", String(200), nullable=True),
    UniqueConstraint("project_id", "seq"),
    Index("ix_events_entity", "project_id", "entity_id", "seq"),
    # Partial: lease events (the hot path) have no scope and cost this index nothing.
    Index(
        "ix_events_scope",
        "project_id",
        "scope",
        "seq",
        sqlite_where=text("scope IS NOT NULL"),
        postgresql_where=text("scope IS NOT NULL"),
    ),
    # Events still waiting for their number (PostgreSQL only; see publish_events). Partial, so
    # it holds only the unpublished tail and costs SQLite, which numbers on append, nothing.
    Index(
        "ix_events_unnumbered",
        "project_id",
        "id",
        sqlite_where=text("seq IS NULL"),
        postgresql_where=text("seq IS NULL"),
    ),
)

event_batches = Table(
    "event_batches",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "key"),
)

# Named tokens (``loom token create``): only the SHA-256 of the secret is stored. Revoked
# rows stay (the audit log names them); a new token may reuse a revoked token's name.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("scope", String(10), nullable=False),
    Column("target_kind", String(10), nullable=False),
    Column("org", String(100), nullable=True),
    Column("repo", String(100), nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=True),
    Column("revoked_us", BigInteger, nullable=True),
    Column("last_used_us", BigInteger, nullable=True),
    UniqueConstraint("name"),
    UniqueConstraint("token_hash"),
)

# Dashboard sessions signed out before they expire (the cookie's random nonce), so sign-out
# reaches every server process; rows are dropped once the session would have expired.
ui_session_revocations = Table(
    "ui_session_revocations",
    metadata,
    Column("nonce", String(64), nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("nonce"),
    Index("ix_ui_session_revocations_expires_us", "expires_us"),
)
