"""Client configuration resolution (CLI.md §2).

Precedence, highest first: flag > environment > project files (``.loom.toml`` in the
repository root, then ``.ito/config.json``) > the project's git ``origin`` remote (project
only) > user config (``~/.config/loom/config.toml``) > default. Every resolved value
records where it came from; the token is never shown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import platformdirs

from loom.client._client import Client
from loom.client._identity import (
    default_holder,
    find_repo_root,
    git_origin_url,
    parse_git_remote,
    valid_project_part,
)
from loom.errors import ValidationError

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ClientConfig",
    "Resolved",
    "resolve_config",
    "url_problem",
    "user_config_path",
]

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:9010"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
SETTINGS = ("url", "token", "project", "holder", "timeout", "retries")
_ENV: dict[str, tuple[str, ...]] = {
    "url": ("LOOM_URL",),
    "token": ("LOOM_TOKEN", "ITO_BACKEND_TOKEN"),
    "project": ("LOOM_PROJECT",),
    "holder": ("LOOM_HOLDER",),
    "timeout": ("LOOM_TIMEOUT",),
    "retries": ("LOOM_RETRIES",),
}


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """A resolved setting and where it came from (``flag``, ``env:NAME``, a file, ...)."""

    value: T
    source: str
    secret: bool = field(default=False, compare=False)

    def shown(self) -> Any:
        """The value as it may be displayed (secrets redacted)."""
        if self.secret and self.value:
            return "***"
        return self.value

    def __repr__(self) -> str:
        return f"Resolved(value={self.shown()!r}, source={self.source!r})"


@dataclass(frozen=True)
class ClientConfig:
    """The resolved client settings; ``root`` is the repository root they were found from."""

    url: Resolved[str]
    token: Resolved[str | None]
    project: Resolved[str | None]
    holder: Resolved[str]
    timeout: Resolved[float]
    retries: Resolved[int]
    root: Path

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{setting: {"value", "source"}}`` with the token redacted."""
        return {
            name: {"value": getattr(self, name).shown(), "source": getattr(self, name).source}
            for name in SETTINGS
        }

    def client(self, **overrides: Any) -> Client:
        """A :class:`Client` built from these settings (keyword arguments override)."""
        kwargs: dict[str, Any] = {
            "base_url": self.url.value,
            "token": self.token.value,
            "project": self.project.value,
            "holder": self.holder.value,
            "timeout": self.timeout.value,
            "retries": self.retries.value,
        }
        kwargs.update(overrides)
        return Client(**kwargs)


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``~/.config/loom/config.toml`` (``LOOM_CONFIG_HOME`` overrides the directory)."""
    env = os.environ if env is None else env
    base = env.get("LOOM_CONFIG_HOME") or platformdirs.user_config_dir("loom")
    return Path(base) / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import tomllib  # only when there is a file: ~5 ms of regex compiling otherwise

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"cannot read {path}: {exc}", kind="invalid_config") from None


def _read_ito_config(path: Path) -> dict[str, Any]:
    """The settings found under ``backend`` in ``.ito/config.json``."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read {path}: {exc}", kind="invalid_config") from None
    backend = data.get("backend") if isinstance(data, dict) else None
    if not isinstance(backend, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(backend.get("url"), str) and backend["url"].strip():
        out["url"] = backend["url"].strip()
    project = backend.get("project")
    if isinstance(project, dict):
        org, repo = project.get("org"), project.get("repo")
        if isinstance(org, str) and isinstance(repo, str) and org.strip() and repo.strip():
            out["project"] = f"{org.strip()}/{repo.strip()}"
    timeout_ms = backend.get("timeout_ms")
    if isinstance(timeout_ms, int | float) and not isinstance(timeout_ms, bool):
        out["timeout"] = timeout_ms / 1000
    retries = backend.get("max_retries")
    if isinstance(retries, int) and not isinstance(retries, bool):
        out["retries"] = retries
    return out


def _parse_float(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{where}: timeout must be a number, got {value!r}", kind="invalid_config"
        ) from None
    if not number > 0:
        raise ValidationError(
            f"{where}: timeout must be positive, got {value!r}", kind="invalid_config"
        )
    return number


def _parse_int(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{where}: retries must be an integer, got {value!r}", kind="invalid_config"
        ) from None
    if number < 0:
        raise ValidationError(
            f"{where}: retries must be 0 or more, got {value!r}", kind="invalid_config"
        )
    return number


def _check_project(value: str, where: str) -> str:
    parts = value.strip().split("/")
    if len(parts) != 2 or not all(valid_project_part(p) for p in parts):
        raise ValidationError(
            f"{where}: project must be ORG/REPO, got {value!r}", kind="invalid_config"
        )
    return "/".join(parts)


def url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable server URL, or None (``http(s)://HOST[:PORT][/PREFIX]``)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {value!r}"
    try:
        parts.port  # noqa: B018  (raises ValueError for a malformed port)
    except ValueError:
        return f"bad port in {value!r}"
    if not parts.hostname:
        return f"no host in {value!r}"
    if parts.query or parts.fragment:
        return f"a server URL has no query or fragment, got {value!r}"
    return None


def _check_url(value: str, where: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise ValidationError(f"{where}: invalid server URL: {problem}", kind="invalid_config")
    return _normalise_url(value)


def _normalise_url(value: str) -> str:
    url = value.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    return url


def resolve_config(
    flags: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user_config: Path | None = None,
    git_remote: Callable[[Path], str | None] = git_origin_url,
    holder_default: Callable[[Path], str] = default_holder,
) -> ClientConfig:
    """Resolve every client setting from flags, environment, files, git and defaults.

    ``flags`` maps setting names (url, token, project, holder, timeout, retries) to values
    given on the command line; None values are ignored. Blank environment variables count
    as unset. Raises :class:`ValidationError` for malformed values or unreadable files.
    """
    env = os.environ if env is None else env
    here = (cwd or Path.cwd()).resolve()
    root = find_repo_root(here)
    given = {k: v for k, v in (flags or {}).items() if v is not None and v != ""}

    env_layer: dict[str, tuple[Any, str]] = {}
    for name, names in _ENV.items():
        for var in names:
            raw = env.get(var)
            if raw is not None and raw.strip():
                env_layer[name] = (raw.strip(), f"env:{var}")
                break
    loom_toml = root / ".loom.toml"
    ito_json = root / ".ito" / "config.json"
    project_toml = {
        k: v
        for k, v in _read_toml(loom_toml).items()
        if k in ("url", "project", "timeout", "retries")
    }
    ito_settings = _read_ito_config(ito_json)
    user_path = user_config or user_config_path(env)
    user = _read_toml(user_path)

    def pick(name: str) -> tuple[Any, str] | None:
        if name in given:
            return given[name], "flag"
        if name in env_layer:
            return env_layer[name]
        if name in project_toml:
            return project_toml[name], str(loom_toml)
        if name in ito_settings:
            return ito_settings[name], str(ito_json)
        return None

    # url
    found = pick("url") or ((user["url"], str(user_path)) if "url" in user else None)
    url = Resolved(_check_url(str(found[0]), found[1]), found[1]) if found else None
    url = url or Resolved(DEFAULT_URL, "default")

    # project
    found = pick("project")
    if found is None:
        remote = git_remote(root)
        parsed = parse_git_remote(remote) if remote else None
        if parsed:
            found = (f"{parsed[0]}/{parsed[1]}", "git:origin")
    if found is None and "project" in user:
        found = (user["project"], str(user_path))
    project: Resolved[str | None] = (
        Resolved(_check_project(str(found[0]), found[1]), found[1])
        if found
        else Resolved(None, "unset")
    )

    # token: flag > env > user config (per-project table first)
    found = None
    if "token" in given:
        found = (given["token"], "flag")
    elif "token" in env_layer:
        found = env_layer["token"]
    else:
        projects = user.get("projects")
        table = projects.get(project.value) if isinstance(projects, dict) else None
        if project.value and isinstance(table, dict) and table.get("token"):
            found = (table["token"], f"{user_path} [projects.{project.value!r}]")
        elif user.get("token"):
            found = (user["token"], str(user_path))
    token: Resolved[str | None] = (
        Resolved(str(found[0]).strip(), found[1], secret=True)
        if found
        else Resolved(None, "unset", secret=True)
    )

    # holder: flag > env > user config > default (never from a shared project file)
    if "holder" in given:
        holder = Resolved(str(given["holder"]), "flag")
    elif "holder" in env_layer:
        holder = Resolved(*env_layer["holder"])
    elif user.get("holder"):
        holder = Resolved(str(user["holder"]), str(user_path))
    else:
        holder = Resolved(holder_default(here), "default")

    found = pick("timeout") or ((user["timeout"], str(user_path)) if "timeout" in user else None)
    timeout = (
        Resolved(_parse_float(found[0], found[1]), found[1])
        if found
        else Resolved(DEFAULT_TIMEOUT, "default")
    )
    found = pick("retries") or ((user["retries"], str(user_path)) if "retries" in user else None)
    retries = (
        Resolved(_parse_int(found[0], found[1]), found[1])
        if found
        else Resolved(DEFAULT_RETRIES, "default")
    )
    return ClientConfig(
        url=url,
        token=token,
        project=project,
        holder=holder,
        timeout=timeout,
        retries=retries,
        root=root,
    )
