"""Fixtures for CLI tests: a ``loom`` runner wired to a real server, in a scratch directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer, new_project, start_server
from loom.client import Client

from ._support import ORG, REPO, Loom


@pytest.fixture
def base_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment isolated from the developer's: no user config, state in tmp."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for var in ("LOOM_URL", "LOOM_TOKEN", "ITO_BACKEND_TOKEN", "LOOM_PROJECT", "LOOM_HOLDER"):
        monkeypatch.delenv(var, raising=False)
    return {
        "LOOM_CONFIG_HOME": str(tmp_path / "config"),
        "LOOM_STATE_DIR": str(tmp_path / "state"),
        "LOOM_HOLDER": "agent-a",
        "LOOM_RETRIES": "1",
        "COLUMNS": "200",
    }


@pytest.fixture
def server(live_server: Any) -> Any:
    """The live server (``live_server`` stops it and closes its log pipe at teardown).

    A module whose tests only need *a* server overrides this and :func:`project` with
    :func:`shared_server` and :func:`own_project` (one server start for the module)."""
    return live_server


@pytest.fixture
def project() -> str:
    """The project ``loom`` and ``client`` work in."""
    return f"{ORG}/{REPO}"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real ``loom serve`` (SQLite) for a whole module."""
    live = start_server(tmp_path_factory.mktemp("cli-server") / "server")
    yield live
    live.stop()


@pytest.fixture
def own_project() -> str:
    """A project no other test of this process uses (on a shared server)."""
    return "/".join(new_project())


@pytest.fixture
def loom(server: Any, base_env: dict[str, str], project: str) -> Loom:
    """``loom`` against the live server as admin, in ``project``, holder agent-a."""
    env = {
        **base_env,
        "LOOM_URL": server.url,
        "LOOM_TOKEN": server.admin_token,
        "LOOM_PROJECT": project,
    }
    return Loom(env)


@pytest.fixture
def client(server: Any, project: str) -> Any:
    """A library client on the same server and project (holder agent-a)."""
    with Client(server.url, server.admin_token, project, holder="agent-a") as c:
        yield c
