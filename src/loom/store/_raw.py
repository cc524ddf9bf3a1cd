"""Hand-written SQL on the DB-API connection, for the few hottest statements.

SQLAlchemy Core costs ~100 µs per statement here (measured: a 3-statement lease transaction
took ~520 µs through ``exec_driver_sql`` and ~57 µs with the bare sqlite3 driver), which
dominates a claim. The hot paths (lease rows, event appends, change lookups) therefore run
fixed SQL strings straight on the driver connection that the SQLAlchemy transaction already
holds — same connection, same transaction, same commit/rollback. Statements are written with
``?`` placeholders and converted once for psycopg (``%s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

__all__ = ["SQL", "execute", "executemany", "fetchall", "fetchone"]


class SQL:
    """A statement in qmark style, with its psycopg (format) twin precomputed."""

    __slots__ = ("format", "qmark")

    def __init__(self, qmark: str) -> None:
        self.qmark = qmark
        self.format = qmark.replace("%", "%%").replace("?", "%s")


def _cursor(conn: Connection, stmt: SQL, params: Sequence[Any]) -> Any:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    if conn.dialect.name == "postgresql":
        cur.execute(stmt.format, params)
    else:
        cur.execute(stmt.qmark, params)
    return cur


def execute(conn: Connection, stmt: SQL, params: Sequence[Any]) -> int:
    """Run a statement; returns the affected row count."""
    cur = _cursor(conn, stmt, params)
    count = int(cur.rowcount)
    cur.close()
    return count


def fetchone(conn: Connection, stmt: SQL, params: Sequence[Any]) -> tuple[Any, ...] | None:
    cur = _cursor(conn, stmt, params)
    row = cur.fetchone()
    cur.close()
    return None if row is None else tuple(row)


def fetchall(conn: Connection, stmt: SQL, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cur = _cursor(conn, stmt, params)
    rows = [tuple(r) for r in cur.fetchall()]
    cur.close()
    return rows


def executemany(conn: Connection, stmt: SQL, rows: Sequence[Sequence[Any]]) -> None:
    if len(rows) == 1:  # psycopg's executemany enters pipeline mode: costly for one row
        execute(conn, stmt, rows[0])
        return
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    cur.executemany(stmt.format if conn.dialect.name == "postgresql" else stmt.qmark, rows)
    cur.close()
