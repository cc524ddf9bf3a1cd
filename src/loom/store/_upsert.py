"""A dialect-aware ``INSERT … ON CONFLICT DO UPDATE`` (atomic on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["upsert"]


def upsert(conn: Connection, table: Table, keys: dict[str, Any], values: dict[str, Any]) -> None:
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(**keys, **values)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=values)
    conn.execute(stmt)
