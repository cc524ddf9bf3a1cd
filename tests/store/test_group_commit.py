"""SQLite group commit: the writes of one event-loop turn share a transaction, each in its
own savepoint, and every caller is answered after the shared commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from loom.store.engine import Database


class Boom(Exception):
    pass


def _insert(db: Database, value: str, fail: bool = False) -> str:
    with db.write() as conn:
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
        if fail:
            raise Boom(value)  # after writing: its row must not survive
    return value


def _rows(db: Database) -> list[str]:
    with db.read() as conn:
        return [r[0] for r in conn.execute(text("SELECT v FROM t ORDER BY id"))]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'loom.db'}")
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield database  # type: ignore[misc]
    database.dispose()


def test_one_turn_shares_a_commit_and_a_failure_takes_only_its_own_writes(db: Database) -> None:
    commits: list[int] = []

    async def main() -> list[object]:
        raw = db._writer_connection().connection.dbapi_connection
        assert raw is not None
        raw.set_trace_callback(lambda sql: commits.append(1) if sql == "COMMIT" else None)
        calls = [
            db.run_write(_insert, db, "a", batch=True),
            db.run_write(_insert, db, "b", True, batch=True),
            db.run_write(_insert, db, "c", batch=True),
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    a, b, c = asyncio.run(main())
    assert (a, c) == ("a", "c")
    assert isinstance(b, Boom)
    assert _rows(db) == ["a", "c"]
    assert len(commits) == 1  # three writes, one commit


def test_writes_of_different_turns_commit_apart(db: Database) -> None:
    async def main() -> None:
        await db.run_write(_insert, db, "x", batch=True)
        assert _rows(db) == ["x"]  # committed before the second is even submitted
        await db.run_write(_insert, db, "y", batch=True)

    asyncio.run(main())
    assert _rows(db) == ["x", "y"]


def test_a_batch_that_cannot_begin_answers_every_caller(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No caller is left waiting when the shared transaction cannot even start."""

    def broken() -> None:
        raise RuntimeError("no writer connection")

    async def main() -> list[object]:
        monkeypatch.setattr(db, "_writer_connection", broken)
        calls = [db.run_write(_insert, db, v, batch=True) for v in ("a", "b")]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    monkeypatch.undo()
    assert _rows(db) == []
