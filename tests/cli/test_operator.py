"""Operator commands: ``--json`` on token and db commands, and clean ``loom serve`` failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from loom.api.auth import derive_project_token
from loom.cli import app
from loom.store import migrate

UNREACHABLE_PG = "postgresql+psycopg://user:pw-secret@127.0.0.1:9/x"
_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}


def _run(*args: str, **env: str) -> Result:
    blank = {k: "" for k in os.environ if k.startswith(("LOOM_", "ITO_"))}
    return CliRunner().invoke(app, list(args), env={**blank, "COLUMNS": "200", **env})


def test_token_project_json(tmp_path: Path) -> None:
    args = ["token", "project", "acme/widgets", "--json", "--data-dir", str(tmp_path)]
    result = _run(*args, LOOM_TOKEN_SEED="seed")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "project": "acme/widgets",
        "token": derive_project_token("seed", "acme", "widgets"),
    }


def test_token_project_honours_ito_backend_token_seed(tmp_path: Path) -> None:
    args = ["token", "project", "acme/widgets", "--data-dir", str(tmp_path)]
    result = _run(*args, ITO_BACKEND_TOKEN_SEED="ito-seed")
    assert result.stdout.strip() == derive_project_token("ito-seed", "acme", "widgets")


def test_token_init_json(tmp_path: Path) -> None:
    result = _run("token", "init", "--json", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(tmp_path / "auth.toml")
    auth = tomllib.loads((tmp_path / "auth.toml").read_text())
    assert auth["admin_tokens"] == [data["admin_token"]]
    assert auth["token_seed"] not in result.stdout  # the seed stays in the file


def test_db_upgrade_and_check_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    head = migrate.head_revision()
    before = _run("db", "check", "--json", "--database-url", url, "--data-dir", str(tmp_path))
    assert before.exit_code == 1
    expected = {"database": url, "ok": False, "revision": None, "head": head, "integrity": "ok"}
    assert json.loads(before.stdout) == expected
    up = _run("db", "upgrade", "--json", "--database-url", url, "--data-dir", str(tmp_path))
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout) == {"database": url, "from": None, "to": head}
    again = _run("db", "upgrade", "--json", "--database-url", url, "--data-dir", str(tmp_path))
    assert json.loads(again.stdout) == {"database": url, "from": head, "to": head}
    after = _run("db", "check", "--json", "--database-url", url, "--data-dir", str(tmp_path))
    assert after.exit_code == 0
    assert json.loads(after.stdout) == expected | {"ok": True, "revision": head}


def test_db_commands_honour_loom_config(tmp_path: Path) -> None:
    config = tmp_path / "loom.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "cfg.db"}"\n')
    up = _run("db", "upgrade", "--json", "--data-dir", str(tmp_path), LOOM_CONFIG=str(config))
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout)["database"] == f"sqlite:///{tmp_path / 'cfg.db'}"
    check = _run("db", "check", "--data-dir", str(tmp_path), "--config", str(config))
    assert check.exit_code == 0 and "up to date" in check.stdout


@pytest.mark.parametrize("command", [["db", "check"], ["db", "upgrade"]])
def test_db_commands_on_an_unreachable_database(tmp_path: Path, command: list[str]) -> None:
    result = _run(*command, "--database-url", UNREACHABLE_PG, "--data-dir", str(tmp_path))
    assert result.exit_code == 5, result.output
    assert "pw-secret" not in result.output and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "database unreachable: OperationalError (postgresql+psycopg://user:***@127.0.0.1:9/x)"
    ]


def test_db_commands_refuse_an_unusable_url(tmp_path: Path) -> None:
    result = _run("db", "check", "--database-url", "nosuch://x", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--database-url" in result.stderr


# --- loom serve ------------------------------------------------------------------------


def _serve_args(tmp_path: Path, *args: str) -> list[str]:
    return ["serve", "--data-dir", str(tmp_path), "--admin-token", "a", "--token-seed", "s", *args]


def test_serve_on_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = _run(*_serve_args(tmp_path, "--port", "0", "--database-url", UNREACHABLE_PG))
    assert result.exit_code == 5, result.output
    assert "pw-secret" not in result.output and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "loom: database unreachable: OperationalError (postgresql+psycopg://user:***@127.0.0.1:9/x)"
    ]


def test_serve_refuses_an_unusable_database_url(tmp_path: Path) -> None:
    result = _run(*_serve_args(tmp_path, "--port", "0", "--database-url", "nosuch://x"))
    assert result.exit_code == 2 and "--database-url" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loom", *_serve_args(tmp_path, *args)],
        capture_output=True,
        text=True,
        env=_CLEAN_ENV,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_busy_port_exits_1(
    tmp_path: Path, busy_port: int, workers: str, request: pytest.FixtureRequest
) -> None:
    # Several workers need PostgreSQL (SQLite refuses them).
    db = [] if workers == "1" else ["--database-url", request.getfixturevalue("pg_url")]
    done = _serve(tmp_path, "--port", str(busy_port), "--workers", workers, *db)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"loom: cannot listen on 127.0.0.1:{busy_port}: "), done.stderr
    assert "in use" in last


@pytest.mark.slow
def test_serve_on_an_unknown_host_exits_1(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--port", "0", "--bind", "no-such-host.invalid")
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("loom: cannot listen on no-such-host.invalid:0: "), done.stderr


def test_a_malformed_number_in_env_or_config_is_a_usage_error(tmp_path: Path) -> None:
    args = ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--data-dir", str(tmp_path)]
    result = _run("db", "check", *args, LOOM_PORT="abc")
    assert result.exit_code == 2 and "port" in result.stderr
    assert "Traceback" not in result.output
    config = tmp_path / "loom.toml"
    config.write_text('workers = "many"\n')
    result = _run(*_serve_args(tmp_path, "--port", "0", "--config", str(config)))
    assert result.exit_code == 2 and "workers" in result.stderr
