"""Who and where the client is: repository root, project from git, default holder identity."""

from __future__ import annotations

import getpass
import re
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "default_holder",
    "find_repo_root",
    "git_origin_url",
    "parse_git_remote",
    "valid_project_part",
]

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?[^:/]+:(?P<path>[^/].*)$")


def valid_project_part(value: str) -> bool:
    """True when ``value`` is a valid org or repo name (API.md §0)."""
    return bool(_PART.fullmatch(value)) and value not in (".", "..")


def parse_git_remote(url: str) -> tuple[str, str] | None:
    """``(org, repo)`` from a git remote URL, or None when it names no org/repo.

    Accepts ``https://host/org/repo(.git)``, ``ssh://git@host[:port]/org/repo.git``,
    ``git://host/org/repo``, scp-like ``git@host:org/repo.git`` and local paths ending in
    ``org/repo``. With nested groups (``group/sub/repo``) the last two segments are used.
    """
    text = url.strip()
    if not text:
        return None
    if "://" in text:
        path = urlsplit(text).path
    else:
        match = _SCP_LIKE.match(text)
        path = match.group("path") if match else text
    segments = [s for s in path.replace("\\", "/").split("/") if s]
    if len(segments) < 2:
        return None
    org, repo = segments[-2], segments[-1]
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    if not (valid_project_part(org) and valid_project_part(repo)):
        return None
    return org, repo


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    out = result.stdout.strip()
    return out or None


def git_origin_url(cwd: Path) -> str | None:
    """``git remote get-url origin`` run in ``cwd``, or None."""
    return _git(cwd, "remote", "get-url", "origin")


def find_repo_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``.ito``, ``.loom.toml`` or ``.git``.

    Falls back to ``start`` itself.
    """
    start = start.resolve()
    for candidate in (start, *start.parents):
        for marker in (".ito", ".loom.toml", ".git"):
            if (candidate / marker).exists():
                return candidate
    return start


def default_holder(cwd: Path) -> str:
    """``<user>@<host>:<worktree-name>``: distinct per person, machine and checkout."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    host = socket.gethostname().split(".")[0] or "localhost"
    top = _git(cwd, "rev-parse", "--show-toplevel")
    worktree = Path(top).name if top else find_repo_root(cwd).name
    holder = f"{user}@{host}:{worktree or 'root'}"
    # Holders are visible characters only (API.md §2.7): no whitespace, at most 200.
    return "".join("-" if ch.isspace() or not ch.isprintable() else ch for ch in holder)[:200]
