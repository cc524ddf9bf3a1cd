"""``loom db upgrade|check|backup|restore``: the server's database, with the same settings
(``--data-dir``, ``--database-url``, ``--config``) as ``loom serve``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from loom.cli._common import EXIT_ERROR, EXIT_UNREACHABLE
from loom.cli.server import (
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    JsonOption,
    _database_errors,
    _db,
    _emit_json,
    _err,
    _redacted,
    db_app,
    resolve_settings,
)

__all__ = ["db_backup", "db_check", "db_restore", "db_upgrade"]

ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing file.")]


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Apply all schema migrations (exit 5 when the database is unreachable)."""
    from loom.store import migrate

    db = _db(database_url, data_dir, config)
    try:
        with _database_errors(db.url):
            before = migrate.current_revision(db)
            migrate.upgrade(db)
            after = migrate.current_revision(db)
    finally:
        db.dispose()
    if json_output:
        _emit_json({"database": _redacted(db.url), "from": before, "to": after})
        return
    typer.echo(f"database at revision {after}")


@db_app.command("check")
def db_check(
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Exit 0 if the database is reachable, sound and at the newest schema revision.

    SQLite is checked with `PRAGMA integrity_check`. Exits 1 when it needs `loom db upgrade`
    or fails the integrity check, 5 when it is unreachable.
    """
    from loom.store import backup, migrate

    db = _db(database_url, data_dir, config)
    head = migrate.head_revision()
    report: dict[str, Any] = {
        "database": _redacted(db.url),
        "ok": False,
        "revision": None,
        "head": head,
        "integrity": None,
    }
    try:
        current = migrate.current_revision(db)
        db.ping()
    except Exception as exc:
        message = f"database unreachable: {type(exc).__name__} ({report['database']})"
        if json_output:
            _emit_json(report | {"error": message})
        _err(message)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    finally:
        db.dispose()
    problems = backup.integrity_check(backup.sqlite_path(db.url)) if db.kind == "sqlite" else []
    integrity = "ok" if problems in ([], ["ok"]) else "; ".join(problems[:10])
    report |= {"ok": current == head and integrity == "ok", "revision": current}
    report["integrity"] = integrity
    if json_output:
        _emit_json(report)
    if integrity != "ok":
        _err(f"integrity check failed: {integrity}")
        raise typer.Exit(EXIT_ERROR)
    if current != head:
        _err(f"database at revision {current or 'none'}, newest is {head}: run `loom db upgrade`")
        raise typer.Exit(EXIT_ERROR)
    if not json_output:
        checked = ", integrity ok" if db.kind == "sqlite" else ""
        typer.echo(f"database at revision {current} (up to date{checked})")


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup.")],
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
) -> None:
    """Write a consistent copy of the database while the server keeps serving.

    SQLite: the online backup API (a snapshot of every committed write). PostgreSQL:
    `pg_dump --format=custom` if installed; otherwise prints the command to run (exit 1).
    """
    from loom.store import backup

    settings, _ = resolve_settings(database_url=database_url, data_dir=data_dir, config=config)
    url = settings.database_url
    if file.exists() and not force:
        _err(f"{file} already exists (use --force to replace it)")
        raise typer.Exit(EXIT_ERROR)
    try:
        if settings.database_kind == "sqlite":
            result = backup.backup_sqlite(url, file)
        else:
            done = backup.backup_postgres(url, file)
            if done is None:
                command = shlex.join(backup.pg_dump_command(url, file))
                _err("pg_dump is not installed here. Run, where it is (PGPASSWORD or ~/.pgpass")
                _err("for the password):")
                typer.echo(command)
                raise typer.Exit(EXIT_ERROR)
            result = done
    except (OSError, ValueError, RuntimeError) as exc:
        _err(f"backup failed: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    if json_output:
        _emit_json({"database": _redacted(url), "file": str(result.path), "bytes": result.bytes})
        return
    typer.echo(f"backed up {_redacted(url)} to {result.path} ({result.bytes} bytes)")


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, typer.Argument(help="A backup written by `loom db backup`.")],
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing database.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Restore a SQLite backup into the database (stop the server first).

    Refuses to replace an existing database without --force. PostgreSQL: use `pg_restore`.
    """
    from loom.store import backup

    settings, _ = resolve_settings(database_url=database_url, data_dir=data_dir, config=config)
    url = settings.database_url
    if settings.database_kind != "sqlite":
        _err("loom db restore handles SQLite; for PostgreSQL run, with the server stopped:")
        typer.echo(
            f"pg_restore --clean --if-exists --dbname=<database url> {shlex.quote(str(file))}"
        )
        raise typer.Exit(EXIT_ERROR)
    target = backup.sqlite_path(url)
    if target.exists() and target.stat().st_size > 0 and not force:
        _err(f"{target} already exists (stop the server, then use --force to replace it)")
        raise typer.Exit(EXIT_ERROR)
    try:
        result = backup.restore_sqlite(file, url)
    except (OSError, ValueError) as exc:
        _err(f"restore failed: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    if json_output:
        _emit_json({"database": _redacted(url), "file": str(file), "bytes": result.bytes})
        return
    typer.echo(f"restored {file} into {_redacted(url)}")
