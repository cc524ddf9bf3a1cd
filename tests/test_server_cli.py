"""``loom serve`` and the operator commands (CLI.md §1): first-run auth, settings precedence,
token derivation, logs without tokens, graceful SIGTERM, readiness."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conftest import ADMIN, SEED, LiveServer, project_token, start_server
from loom.api.auth import derive_project_token
from loom.cli import app as cli_app
from loom.cli.server import resolve_settings

_LISTEN = re.compile(r"loom: listening on (http://\S+)")
# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the parent sees it.
_GRACEFUL = (0, -signal.SIGTERM)
_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}


def _serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> LiveServer:
    """``loom serve`` with exactly these arguments (no tokens unless given)."""
    cmd = [sys.executable, "-m", "loom", "serve", "--port", "0", "--data-dir", str(data_dir), *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**_CLEAN_ENV, **(env or {})},
    )
    assert proc.stderr is not None
    log: list[str] = []
    url = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        log.append(line)
        m = _LISTEN.search(line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        proc.wait()
        proc.stderr.close()
        raise RuntimeError("server did not start:\n" + "".join(log))
    server = LiveServer(url, data_dir, proc, f"sqlite:///{data_dir / 'loom.db'}", log=log)

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)

    server.drain = threading.Thread(target=drain, daemon=True)
    server.drain.start()
    return server


@pytest.fixture
def stopper() -> Iterator[list[LiveServer]]:
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        s.stop()


# --------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_first_run_generates_auth_toml_and_the_second_reuses_it(
    tmp_path: Path, stopper: list[LiveServer]
) -> None:
    data_dir = tmp_path / "fresh"
    first = _serve(data_dir)
    stopper.append(first)
    auth_file = data_dir / "auth.toml"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    saved = tomllib.loads(auth_file.read_text())
    admin = saved["admin_tokens"][0]
    seed = saved["token_seed"]
    assert len(admin) == 43 and len(seed) == 43 and admin != seed
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", admin)
    startup = "".join(first.log)
    assert startup.count(admin) == 1  # printed once
    assert seed not in startup
    assert "loom token project ORG/REPO" in startup
    with httpx.Client(base_url=first.url) as client:
        verify = client.get(
            "/api/v1/projects/acme/widgets/auth/verify",
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert verify.json()["scope"] == "admin"
        token = derive_project_token(seed, "acme", "widgets")
        verify = client.get(
            "/api/v1/projects/acme/widgets/auth/verify",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert verify.json()["scope"] == "project"
    assert first.stop() in _GRACEFUL
    assert "Finished server process" in "".join(first.log)

    second = _serve(data_dir)
    stopper.append(second)
    assert tomllib.loads(auth_file.read_text()) == saved
    assert admin not in "".join(second.log)
    assert "generated" not in "".join(second.log)
    with httpx.Client(base_url=second.url) as client:
        verify = client.get(
            "/api/v1/projects/acme/widgets/auth/verify",
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert verify.status_code == 200


@pytest.mark.slow
def test_access_log_never_contains_tokens_and_sigterm_stops(
    tmp_path: Path, stopper: list[LiveServer]
) -> None:
    server = start_server(tmp_path / "server")
    stopper.append(server)
    tokens = [ADMIN, project_token(), project_token("globex", "gadgets"), "wrong-token-123"]
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/v1/ready").json() == {"status": "ready"}
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "idem-key-xyz"}
            client.get("/api/v1/projects/acme/widgets/changes", headers=headers)
            client.post(
                "/api/v1/projects/acme/widgets/changes/001-01_a/sync",
                json={"specs": [], "revision": ""},
                headers=headers,
            )
            client.get("/api/v1/projects/acme/widgets/nope", headers=headers)
            client.post(
                "/api/v1/projects/acme/widgets/events",
                content=b"{broken",
                headers={**headers, "Content-Type": "application/json"},
            )
            # A caller that puts the token in the URL must not get it logged either.
            client.get(f"/api/v1/projects/acme/widgets/auth/verify?token={token}&since=1")
            client.get(f"/api/v1/projects/acme/widgets/events?{token}")
    rc = server.stop(signal.SIGTERM, timeout=15)
    assert rc in _GRACEFUL
    log = "".join(server.log)
    # The requests were logged (so the check below can fail) ...
    assert log.count("/api/v1/projects/acme/widgets/changes") >= len(tokens)
    assert log.count("/auth/verify?***&since=***") == len(tokens)
    assert "Shutting down" in log or "Finished server process" in log
    # ... and no token, nor the seed, appears anywhere.
    for secret in [*tokens, SEED]:
        assert secret not in log, secret


@pytest.mark.slow
def test_startup_summary_hides_the_database_password(
    tmp_path: Path, pg_url: str, stopper: list[LiveServer]
) -> None:
    url = pg_url.replace("postgres@", "postgres:pa55word-hidden@", 1)
    assert "pa55word-hidden" in url
    server = _serve(
        tmp_path / "pg", "--database-url", url, "--admin-token", ADMIN, "--token-seed", SEED
    )
    stopper.append(server)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/v1/ready").json() == {"status": "ready"}
    log = "".join(server.log)
    assert "database: postgresql" in log
    assert "pa55word-hidden" not in log
    assert "1 admin token(s)" in log


# --------------------------------------------------------------------------- token / settings


def _run(args: list[str], env: dict[str, str] | None = None) -> Any:
    runner = CliRunner()
    return runner.invoke(
        cli_app,
        args,
        env={**{k: "" for k in os.environ if k.startswith(("LOOM_", "ITO_"))}, **(env or {})},
    )


def test_token_project_prints_the_hmac(tmp_path: Path) -> None:
    result = _run(
        ["token", "project", "acme/repo1", "--token-seed", "secret", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "c11afa8977a3ad6141d7690855b35c788d01dd1bfccde8c5688a372afa3061d0"
    )


def test_token_project_reads_the_seed_from_auth_toml(tmp_path: Path) -> None:
    init = _run(["token", "init", "--data-dir", str(tmp_path)])
    assert init.exit_code == 0, init.output
    seed = tomllib.loads((tmp_path / "auth.toml").read_text())["token_seed"]
    result = _run(["token", "project", "acme/widgets", "--data-dir", str(tmp_path)])
    assert result.stdout.strip() == derive_project_token(seed, "acme", "widgets")
    again = _run(["token", "init", "--data-dir", str(tmp_path)])
    assert again.exit_code == 1  # never overwritten silently


@pytest.mark.parametrize("bad", ["acme", "acme/", "../etc/passwd", "acme/repo/x", "/repo"])
def test_token_project_rejects_bad_names(tmp_path: Path, bad: str) -> None:
    result = _run(["token", "project", bad, "--token-seed", "s", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output


def test_token_project_without_a_seed_fails(tmp_path: Path) -> None:
    result = _run(["token", "project", "acme/widgets", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1


def test_seed_precedence_flag_env_config_auth_file(tmp_path: Path) -> None:
    (tmp_path / "auth.toml").write_text('token_seed = "from-auth"\nadmin_tokens = ["a"]\n')
    config = tmp_path / "loom.toml"
    config.write_text('token_seed = "from-config"\n')

    def seed_used(args: list[str], env: dict[str, str]) -> str:
        out = _run(
            ["token", "project", "acme/widgets", "--data-dir", str(tmp_path), *args], env
        ).stdout.strip()
        for name in ("from-flag", "from-env", "from-ito-env", "from-config", "from-auth"):
            if out == derive_project_token(name, "acme", "widgets"):
                return name
        raise AssertionError(out)

    full_env = {"LOOM_TOKEN_SEED": "from-env", "LOOM_CONFIG": str(config)}
    assert seed_used(["--token-seed", "from-flag"], full_env) == "from-flag"
    assert seed_used([], full_env) == "from-env"
    assert (
        seed_used([], {"ITO_BACKEND_TOKEN_SEED": "from-ito-env", "LOOM_CONFIG": str(config)})
        == "from-ito-env"
    )
    assert seed_used([], {"LOOM_CONFIG": str(config)}) == "from-config"
    assert seed_used([], {}) == "from-auth"


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LOOM_", "ITO_")):
            monkeypatch.delenv(name)
    config = tmp_path / "loom.toml"
    config.write_text(
        'bind = "10.0.0.1"\nport = 7000\nadmin_tokens = ["cfg-admin"]\n'
        'allow_orgs = ["cfg-org"]\nlease_ttl = 600\nmax_body_bytes = 4096\n'
        f'database_url = "sqlite:///{tmp_path}/cfg.db"\n'
    )
    (tmp_path / "auth.toml").write_text('admin_tokens = ["auth-admin"]\ntoken_seed = "s"\n')

    settings, notes = resolve_settings(data_dir=tmp_path, config=config)
    assert notes == []
    assert (settings.bind, settings.port, settings.lease_ttl, settings.max_body_bytes) == (
        "10.0.0.1",
        7000,
        600,
        4096,
    )
    assert [t.get_secret_value() for t in settings.admin_tokens] == ["cfg-admin"]
    assert settings.allow_orgs == ("cfg-org",)
    assert settings.database_url == f"sqlite:///{tmp_path}/cfg.db"

    monkeypatch.setenv("LOOM_BIND", "::1")
    monkeypatch.setenv("LOOM_PORT", "7001")
    monkeypatch.setenv("LOOM_ADMIN_TOKENS", "env-a, env-b")
    monkeypatch.setenv("LOOM_ALLOW", "env-org,env-org2/repo")
    monkeypatch.setenv("LOOM_DATABASE_URL", "sqlite:///env.db")
    settings, _ = resolve_settings(data_dir=tmp_path, config=config)
    assert (settings.bind, settings.port) == ("::1", 7001)
    assert [t.get_secret_value() for t in settings.admin_tokens] == ["env-a", "env-b"]
    assert (settings.allow_orgs, settings.allow_projects) == (("env-org",), ("env-org2/repo",))
    assert settings.database_url == "sqlite:///env.db"

    settings, _ = resolve_settings(
        data_dir=tmp_path,
        config=config,
        bind="localhost",
        port=7002,
        admin_token=["flag-a"],
        allow_org=["flag-org"],
        database_url="sqlite:///flag.db",
    )
    assert (settings.bind, settings.port) == ("localhost", 7002)
    assert [t.get_secret_value() for t in settings.admin_tokens] == ["flag-a"]
    assert settings.allow_orgs == ("flag-org",)
    # The allowlist is one setting: a flag replaces LOOM_ALLOW whole, projects included.
    assert settings.allow_projects == ()
    assert settings.database_url == "sqlite:///flag.db"

    # Without flags, env or config: auth.toml, then defaults.
    for name in ("LOOM_BIND", "LOOM_PORT", "LOOM_ADMIN_TOKENS", "LOOM_ALLOW", "LOOM_DATABASE_URL"):
        monkeypatch.delenv(name)
    settings, _ = resolve_settings(data_dir=tmp_path)
    assert [t.get_secret_value() for t in settings.admin_tokens] == ["auth-admin"]
    assert (settings.bind, settings.port) == ("127.0.0.1", 9010)
    assert settings.database_url == f"sqlite:///{tmp_path / 'loom.db'}"


def test_settings_never_show_secrets(tmp_path: Path) -> None:
    settings, _ = resolve_settings(
        data_dir=tmp_path, admin_token=["top-secret-admin"], token_seed="top-secret-seed"
    )
    assert "top-secret" not in repr(settings)
    assert "top-secret" not in str(settings.model_dump())


def test_serve_rejects_bad_settings(tmp_path: Path) -> None:
    result = _run(["serve", "--data-dir", str(tmp_path), "--admin-token", "a", "--lease-ttl", "5"])
    assert result.exit_code == 2
    assert "lease" in result.output.lower()
    assert not (tmp_path / "loom.db").exists()


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    """SQLite allows one writing process: --workers 2 is a usage error, nothing is created."""
    result = _run(["serve", "--data-dir", str(tmp_path), "--admin-token", "a", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers > 1 needs PostgreSQL" in result.output
    assert "Value error" not in result.output
    assert not (tmp_path / "loom.db").exists()


@pytest.mark.slow
@pytest.mark.postgres
def test_with_workers_the_listening_line_means_serving(
    tmp_path: Path, stopper: list[LiveServer], pg_url: str
) -> None:
    """With --workers, "listening" is printed once a worker answers, not when the socket is
    bound (workers need seconds to start; clients that trusted the line raced them)."""
    server = start_server(tmp_path / "workers", pg_url, "--workers", "2")
    stopper.append(server)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:  # a bound, not a speed check
        for _ in range(20):
            assert client.get("/api/v1/health").status_code == 200
        resp = client.post(
            "/api/v1/projects/acme/widgets/changes/001-01_w/sync",
            json={"specs": [], "revision": ""},
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    assert server.stop(signal.SIGTERM, timeout=30) in _GRACEFUL


def test_each_line_of_the_servers_log_is_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--workers`` the workers share the server's stderr: a line written in two parts
    (``print`` writes the newline apart when stderr is unbuffered) let a worker's log line
    land inside the listening line, and a client read a port of "389512026-12-07"."""
    from loom import server

    writes: list[str] = []

    class Recorder:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Recorder())
    server._say("listening on http://127.0.0.1:38951")
    assert writes == ["loom: listening on http://127.0.0.1:38951\n"]
