"""Schema migrations with Alembic, applied on server start and by ``loom db upgrade``.

Alembic (~0.3 s to import, and it loads every revision script) is imported only when there
is something to apply or to report: a database already at :data:`HEAD` is recognised with one
read of ``alembic_version``, so a server start on an up-to-date database never loads it."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, inspect, text

from loom.store.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "current_revision", "head_revision", "upgrade"]

# The newest revision of the shipped scripts. tests/store/test_migrations.py checks that it
# is what Alembic computes from them: a new revision must update it.
HEAD: Final = "0008"

# A fixed key for pg_advisory_xact_lock, so concurrent server starts migrate one at a time.
_PG_MIGRATION_LOCK = 0x4C4F4F4D  # "LOOM"


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "loom.store:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest revision as Alembic computes it from the scripts (read once a process)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    """The database's revision (``alembic_version``), or None before the first upgrade."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return None if version is None else str(version)


def upgrade(db: Database) -> None:
    """Bring the database to the newest revision (idempotent, safe to race on PostgreSQL).

    A database already at the newest revision costs one read of ``alembic_version``: Alembic
    (which loads every revision script and runs ``env.py``) is started only when there is
    something to apply. Every server start and every test app pays this check."""
    if current_revision(db) == HEAD:
        return
    from alembic import command

    with db.engine.connect() as conn:
        if db.kind == "postgresql":
            with conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                command.upgrade(_config(conn), "head")
        else:
            command.upgrade(_config(conn), "head")
            conn.commit()
