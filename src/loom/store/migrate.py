"""Schema migrations with Alembic, applied on server start and by ``loom db upgrade``."""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from loom.store.engine import Database

__all__ = ["current_revision", "head_revision", "upgrade"]

# A fixed key for pg_advisory_xact_lock, so concurrent server starts migrate one at a time.
_PG_MIGRATION_LOCK = 0x4C4F4F4D  # "LOOM"


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "loom.store:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest revision of the scripts shipped with this package (read once a process)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database) -> None:
    """Bring the database to the newest revision (idempotent, safe to race on PostgreSQL).

    A database already at the newest revision costs one read of ``alembic_version``: Alembic
    (which loads every revision script and runs ``env.py``) is started only when there is
    something to apply. Every server start and every test app pays this check."""
    if current_revision(db) == head_revision():
        return
    with db.engine.connect() as conn:
        if db.kind == "postgresql":
            with conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                command.upgrade(_config(conn), "head")
        else:
            command.upgrade(_config(conn), "head")
            conn.commit()
