"""Schema and migrations agree (STYLE.md §4): Alembic builds exactly ``schema.metadata``."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from loom.cli import app as cli_app
from loom.store import migrate
from loom.store.engine import Database, normalize_database_url
from loom.store.schema import metadata


def _empty(database_url: str) -> None:
    """Drop every table, so the upgrade starts from an empty database."""
    engine = create_engine(normalize_database_url(database_url))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            for name in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE "{name}"'))
    engine.dispose()


def _diffs(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, metadata))


def test_upgrade_of_an_empty_database_builds_exactly_the_metadata(database_url: str) -> None:
    _empty(database_url)
    db = Database(database_url, pool_size=1)
    try:
        assert inspect(db.engine).get_table_names() == []
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision()
        assert _diffs(db) == []
        assert set(inspect(db.engine).get_table_names()) == set(metadata.tables) | {
            "alembic_version"
        }
        migrate.upgrade(db)  # idempotent
        assert migrate.current_revision(db) == migrate.head_revision()
    finally:
        db.dispose()


def test_the_declared_head_is_the_scripts_head() -> None:
    """``migrate.HEAD`` (what a start compares with, without loading Alembic) is the newest
    revision Alembic finds: a new revision script must update it."""
    assert migrate.head_revision() == migrate.HEAD


def test_upgrade_at_the_newest_revision_does_not_start_alembic(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every server start (and every test app) upgrades: at head that is one read, not a run
    of Alembic's script loading; behind head Alembic still runs."""
    _empty(database_url)
    db = Database(database_url, pool_size=1)
    runs: list[str] = []
    from alembic import command

    real = command.upgrade

    def counting(cfg: object, revision: str) -> None:
        runs.append(revision)
        real(cfg, revision)  # type: ignore[arg-type]

    monkeypatch.setattr(command, "upgrade", counting)
    try:
        migrate.upgrade(db)
        assert runs == ["head"]
        migrate.upgrade(db)
        assert runs == ["head"]
        assert migrate.current_revision(db) == migrate.head_revision()
    finally:
        db.dispose()


def test_compare_metadata_detects_a_drift(tmp_path: Path) -> None:
    """The comparison above can fail: a table the metadata lacks is reported."""
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    db = Database(url, pool_size=1)
    try:
        migrate.upgrade(db)
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
            conn.execute(text("DROP INDEX ix_idempotency_expires"))
        kinds = sorted(d[0] for d in _diffs(db) if isinstance(d, tuple))
        assert kinds == ["add_index", "remove_table"]
    finally:
        db.dispose()


def test_loom_db_upgrade_and_check(database_url: str, tmp_path: Path) -> None:
    _empty(database_url)
    runner = CliRunner()
    args = ["--database-url", database_url, "--data-dir", str(tmp_path / "data")]
    env = {"LOOM_CONFIG": "", "LOOM_DATABASE_URL": "", "LOOM_DATA_DIR": ""}

    before = runner.invoke(cli_app, ["db", "check", *args], env=env)
    assert before.exit_code == 1, before.output
    assert "run `loom db upgrade`" in before.output

    up = runner.invoke(cli_app, ["db", "upgrade", *args], env=env)
    assert up.exit_code == 0, up.output
    assert f"database at revision {migrate.head_revision()}" in up.output

    after = runner.invoke(cli_app, ["db", "check", *args], env=env)
    assert after.exit_code == 0, after.output
    assert "up to date" in after.output


def test_loom_db_check_reports_an_unreachable_database(tmp_path: Path) -> None:
    runner = CliRunner()
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    result = runner.invoke(
        cli_app, ["db", "check", "--database-url", url, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 5
    assert "secret" not in result.output


@pytest.mark.parametrize("name", sorted(metadata.tables))
def test_every_table_has_a_primary_key(name: str) -> None:
    assert metadata.tables[name].primary_key.columns


def test_0007_fills_entity_id_from_the_stored_events(database_url: str) -> None:
    """Events stored before migration 0007 get their ``entity_id`` from their JSON body."""
    from alembic import command

    _empty(database_url)
    db = Database(database_url, pool_size=1)
    try:
        with db.engine.connect() as conn:
            command.upgrade(migrate._config(conn), "0006")
            conn.commit()
        long_id = "x" * 250
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO projects (id, org, repo, event_seq, created_us)"
                    " VALUES (1, 'o', 'r', 0, 0)"
                )
            )
            for seq, body in enumerate(
                (
                    '{"entity":"change","entity_id":"001-01_alpha","op":"claim"}',
                    '{"entity":"task","entity_id":"1.1","op":"add","scope":"001-01_alpha"}',
                    f'{{"entity":"task","entity_id":"{long_id}","op":"add"}}',
                ),
                start=1,
            ):
                conn.execute(
                    text(
                        "INSERT INTO events (project_id, seq, entity, op, body, created_us)"
                        " VALUES (1, :seq, 'e', 'op', :body, 0)"
                    ),
                    {"seq": seq, "body": body},
                )
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT entity_id FROM events ORDER BY seq")).all()
        assert [r[0] for r in rows] == ["001-01_alpha", "1.1", long_id[:200]]
        assert _diffs(db) == []
    finally:
        db.dispose()
