"""Online backup, restore and integrity checks of the database.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies a consistent snapshot
while the server keeps serving — in WAL mode the copy is one read transaction, so it holds
every transaction committed before it began, and writers are not blocked. Restoring also
goes through the backup API (into the database file, WAL handled by SQLite itself).

PostgreSQL: ``pg_dump --format=custom`` when it is installed; otherwise the exact command to
run is returned for the caller to print.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = [
    "BackupResult",
    "backup_postgres",
    "backup_sqlite",
    "integrity_check",
    "pg_dump_command",
    "restore_sqlite",
    "sqlite_path",
]


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///PATH`` URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _connect(path: Path, *, must_exist: bool = True) -> sqlite3.Connection:
    if must_exist and not path.is_file():
        raise FileNotFoundError(f"no SQLite database at {path}")
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def integrity_check(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` of a SQLite file: ``["ok"]`` when it is sound."""
    conn = _connect(path)
    try:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def backup_sqlite(url: str, target: Path) -> BackupResult:
    """Copy the live database to ``target`` (written beside it first, then renamed)."""
    source = _connect(sqlite_path(url))
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest)  # all pages in one step: one consistent snapshot
            dest.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        finally:
            dest.close()
    finally:
        source.close()
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size)


def restore_sqlite(backup: Path, url: str) -> BackupResult:
    """Replace the database's content with ``backup`` (the server must be stopped)."""
    target = sqlite_path(url)
    source = _connect(backup)
    try:
        problems = [r[0] for r in source.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise ValueError(f"{backup} fails integrity_check: {'; '.join(problems[:5])}")
        target.parent.mkdir(parents=True, exist_ok=True)
        dest = _connect(target, must_exist=False)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    return BackupResult(target, target.stat().st_size)


def _libpq(url: str) -> tuple[str, str | None]:
    """(URL without driver suffix or password, password): the password goes to pg_dump in
    ``PGPASSWORD``, never on a command line other processes can read."""
    parsed = make_url(url)
    password = parsed.password
    safe = parsed.set(drivername="postgresql", password=None)
    return safe.render_as_string(hide_password=False), None if password is None else str(password)


def pg_dump_command(url: str, target: Path) -> list[str]:
    """The command that dumps the database (the password, if any, comes from PGPASSWORD)."""
    return ["pg_dump", "--format=custom", f"--file={target}", f"--dbname={_libpq(url)[0]}"]


def backup_postgres(url: str, target: Path) -> BackupResult | None:
    """Run ``pg_dump`` (None when it is not installed: print :func:`pg_dump_command`)."""
    if shutil.which("pg_dump") is None:
        return None
    partial = target.with_name(target.name + ".partial")
    env = dict(os.environ)
    password = _libpq(url)[1]
    if password is not None:
        env["PGPASSWORD"] = password
    command = pg_dump_command(url, partial)
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size)
