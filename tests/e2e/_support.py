"""Helpers for end-to-end tests: ``loom`` as a real process, raw HTTP reads of the server."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _forkserver import run_loom
from conftest import NO_CA

__all__ = ["LoomProcess", "api_get", "artifact_files", "clean_env"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any LOOM_/ITO_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    env.update(extra)
    return env


@dataclass
class LoomProcess:
    """Runs ``python -m loom …`` as a separate process in ``cwd`` with a fixed environment."""

    env: dict[str, str]
    cwd: Path
    calls: list[list[str]] = field(default_factory=list)

    def __call__(
        self, *args: str, code: int = 0, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        done = run_loom(list(args), self.env, cwd=self.cwd, timeout=timeout)
        assert done.returncode == code, (
            f"loom {' '.join(args)} -> {done.returncode} (wanted {code})\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return done

    def json(self, *args: str, code: int = 0, timeout: float = 120) -> Any:
        return json.loads(self(*args, "--json", code=code, timeout=timeout).stdout)


def api_get(url: str, token: str, project: str, path: str, **params: str) -> Any:
    """``GET /api/v1/projects/<project><path>`` as raw JSON (pages followed for ``/changes``)."""
    base = f"{url}/api/v1/projects/{project}{path}"
    headers = {"Authorization": f"Bearer {token}"}
    items: list[Any] = []
    query = dict(params)
    with httpx.Client(timeout=60, trust_env=False, verify=NO_CA) as http:
        while True:
            response = http.get(base, params=query, headers=headers)
            assert response.status_code == 200, (path, response.status_code, response.text)
            body = response.json()
            cursor = response.headers.get("X-Next-Cursor")
            if not isinstance(body, list):
                return body
            items += body
            if not cursor:
                return items
            query["cursor"] = cursor


def artifact_files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative posix path → bytes), ignoring
    ``.backend-revision`` bookkeeping files."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != ".backend-revision"
    }
