"""SQLite WAL checkpoints run on the checkpointer thread, never inside a commit."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

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
