"""Count the statements a service call runs on the real database: through SQLAlchemy, or
straight on the DBAPI cursor (``loom.store._raw``, which SQLAlchemy's events do not see).
A batch (``executemany``) counts once: psycopg pipelines it, SQLite runs it in process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from loom.service._context import ServiceContext
from loom.store import _raw

__all__ = ["statements"]

_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "ANALYZE")


@contextmanager
def statements(ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.strip().upper().startswith(_VERBS):
            seen.append(statement)

    real_cursor, real_many = _raw._cursor, _raw.executemany

    def counting(conn: Any, stmt: _raw.SQL, params: Any) -> Any:
        seen.append(stmt.qmark)
        return real_cursor(conn, stmt, params)

    def counting_many(conn: Any, stmt: _raw.SQL, rows: Any) -> None:
        if len(rows) != 1:  # one row goes through _cursor, counted there
            seen.append(stmt.qmark)
        real_many(conn, stmt, rows)

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    with monkeypatch.context() as patch:
        patch.setattr(_raw, "_cursor", counting)
        patch.setattr(_raw, "executemany", counting_many)
        try:
            yield seen
        finally:
            event.remove(ctx.db.engine, "before_cursor_execute", count)
