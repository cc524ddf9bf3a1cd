"""SQLite WAL checkpoints run on the checkpointer thread, never inside a commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from loom.store import engine
from loom.store.engine import Database


def test_commits_never_checkpoint_and_the_checkpointer_thread_does(tmp_path: Path) -> None:
    path = tmp_path / "loom.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.write() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        with db.read() as conn:
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 0
        start = path.stat().st_size
        for i in range(300):  # ~1.2 MB of pages, past SQLite's default 1,000-page threshold
            with db.write() as conn:
                conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": "x" * 4000})
        # The pages reach the database file only through a checkpoint, and no commit
        # runs one any more: the thread copies them within its period.
        deadline = time.monotonic() + 10
        while path.stat().st_size < start + 1_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= start + 1_000_000
    finally:
        db.dispose()


def test_the_checkpointer_starts_a_big_wal_over_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a burst grew the WAL past its size limit and a checkpoint copied all of it, the
    first write starts the WAL over and cuts the file back to the limit, which takes long
    for a big file. The checkpointer thread makes that write, so the next request's commit
    (on the event loop) does not: here the file shrinks with no other write at all."""
    limit = 256 * 1024
    monkeypatch.setattr(engine, "_WAL_SIZE_LIMIT", limit)
    path = tmp_path / "loom.db"
    wal = tmp_path / "loom.db-wal"
    db = Database(f"sqlite:///{path}")
    try:
        with db.write() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
            conn.execute(text("PRAGMA user_version = 7"))
        for _ in range(10):  # ~2 MB in the WAL, eight times its limit
            with db.write() as conn:
                conn.execute(text("INSERT INTO t (body) VALUES (:b)"), [{"b": "x" * 4000}] * 50)
        assert wal.stat().st_size > 4 * limit
        deadline = time.monotonic() + 20
        while wal.stat().st_size > limit and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wal.stat().st_size <= limit
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 500
            assert conn.execute(text("PRAGMA user_version")).scalar_one() == 7
    finally:
        db.dispose()


def test_once_a_burst_ends_the_wal_is_started_over_without_waiting_for_the_next_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader kept the checkpointer's restart from starting the WAL over during a burst;
    tries are then spaced out (``_RESTART_EVERY``), but once the WAL stops growing the next
    round tries again at once. (Waiting for the spacing left the restart, and its long
    truncation, to the first request after the burst: bench/large.py's first allocations.)
    The rounds are run here, one by one; the thread's own never come."""
    limit = 256 * 1024
    monkeypatch.setattr(engine, "_WAL_SIZE_LIMIT", limit)
    monkeypatch.setattr(engine, "_RESTART_EVERY", 3600.0)
    monkeypatch.setattr(engine, "_CHECKPOINT_EVERY", 3600.0)
    tries: list[int] = []
    real = engine._restart_wal

    def counted(dbapi: Any) -> None:
        tries.append(1)
        real(dbapi)

    monkeypatch.setattr(engine, "_restart_wal", counted)
    path = tmp_path / "loom.db"
    wal = tmp_path / "loom.db-wal"
    db = Database(f"sqlite:///{path}")
    checkpointer = db._checkpointer
    assert checkpointer is not None
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        with db.write() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        for _ in range(10):  # ~2 MB in the WAL, eight times its limit
            with db.write() as conn:
                conn.execute(text("INSERT INTO t (body) VALUES (:b)"), [{"b": "x" * 4000}] * 50)
        # A reader on the WAL's frames (nothing checkpointed yet): the checkpoint completes,
        # the restart cannot start the WAL over.
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (500,)
        checkpointer.round()
        assert len(tries) == 1
        assert wal.stat().st_size > 4 * limit
        checkpointer.round()  # the WAL grew (the try's own frame): not due again yet
        assert len(tries) == 1
        reader.execute("COMMIT")
        checkpointer.round()  # the WAL stopped growing: tried again at once, and it works
        assert len(tries) == 2
        assert wal.stat().st_size <= limit
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 500
    finally:
        reader.close()
        db.dispose()
