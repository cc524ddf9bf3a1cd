"""A full, comparable dump of every table (for "nothing changed" assertions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, select

from loom.store.engine import normalize_database_url
from loom.store.schema import metadata

__all__ = ["counts", "snapshot"]


def snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every Loom table, ordered by primary key."""
    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            out: dict[str, list[tuple[Any, ...]]] = {}
            for table in metadata.sorted_tables:
                order = list(table.primary_key.columns)
                out[table.name] = [
                    tuple(row) for row in conn.execute(select(table).order_by(*order))
                ]
            return out
    finally:
        engine.dispose()


def counts(database_url: str) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(database_url).items()}
