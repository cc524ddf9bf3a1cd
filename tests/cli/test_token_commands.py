"""``loom token create|list|revoke`` and ``loom db backup|restore`` on a database, in-process."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from typer.testing import CliRunner, Result

from loom.cli import app


def _run(*args: str, **env: str) -> Result:
    blank = {k: "" for k in os.environ if k.startswith(("LOOM_", "ITO_"))}
    return CliRunner().invoke(app, list(args), env={**blank, "COLUMNS": "200", **env})


def test_create_list_revoke(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path)]
    made = _run("token", "create", "--org", "acme", "--name", "fleet", "--scope", "read", *where)
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("loom_") and len(secret) == 48
    as_json = _run(
        "token", "create", "--admin", "--name", "ops", "--expires", "12h", "--json", *where
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["scope"], data["target"], data["state"]) == ("admin", "*", "active")
    assert data["expires"] is not None and data["token"].startswith("loom_")

    listed = _run("token", "list", *where)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "SCOPE", "TARGET"]
    assert lines[1].split()[:3] == ["fleet", "read", "acme/*"]
    assert lines[2].split()[:3] == ["ops", "admin", "*"]
    assert secret not in listed.stdout and data["token"] not in listed.stdout

    assert _run("token", "revoke", "fleet", *where).exit_code == 0
    gone = _run("token", "revoke", "fleet", *where)
    assert gone.exit_code == 4 and "no active token named 'fleet'" in gone.output
    states = {
        t["name"]: t["state"]
        for t in json.loads(_run("token", "list", "--json", *where).stdout)["tokens"]
    }
    assert states == {"fleet": "revoked", "ops": "active"}


def test_bad_create_is_a_usage_error_and_stores_nothing(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path)]
    for args in (
        ["--name", "x"],  # no target
        ["--name", "x", "--org", "acme", "--admin"],  # two targets
        ["--name", "x", "--project", "acme"],  # not ORG/REPO
        ["--name", "bad name", "--org", "acme"],
        ["--name", "x", "--org", "acme", "--scope", "owner"],
        ["--name", "x", "--org", "acme", "--expires", "tomorrow"],
    ):
        result = _run("token", "create", *args, *where)
        assert result.exit_code == 2, (args, result.output)
    dup = _run("token", "create", "--name", "x", "--org", "acme", *where)
    assert dup.exit_code == 0
    again = _run("token", "create", "--name", "x", "--org", "acme", *where)
    assert again.exit_code == 1 and "already exists" in again.output
    assert len(json.loads(_run("token", "list", "--json", *where).stdout)["tokens"]) == 1


def test_backup_and_restore_refuse_to_overwrite(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path / "data")]
    assert _run("db", "upgrade", *where).exit_code == 0
    assert _run("token", "create", "--org", "acme", "--name", "kept", *where).exit_code == 0
    target = tmp_path / "b.db"
    assert _run("db", "backup", str(target), *where).exit_code == 0
    again = _run("db", "backup", str(target), *where)
    assert again.exit_code == 1 and "--force" in again.output
    assert _run("db", "backup", str(target), "--force", *where).exit_code == 0
    conn = sqlite3.connect(target)
    assert [r[0] for r in conn.execute("SELECT name FROM api_tokens")] == ["kept"]
    conn.close()
    refused = _run("db", "restore", str(target), *where)
    assert refused.exit_code == 1 and "--force" in refused.output
    assert _run("db", "restore", str(target), "--force", *where).exit_code == 0
    missing = _run("db", "restore", str(tmp_path / "nope.db"), "--data-dir", str(tmp_path / "new"))
    assert missing.exit_code == 1 and "no SQLite database" in missing.output


def test_postgres_restore_says_what_to_run(tmp_path: Path) -> None:
    url = "postgresql+psycopg://loom@db.internal/loom"
    result = _run("db", "restore", "x.dump", "--database-url", url, "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "pg_restore --clean --if-exists" in result.stdout
