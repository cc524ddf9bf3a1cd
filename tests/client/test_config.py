"""Configuration resolution: every source, precedence, git remotes, redaction."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loom.client._config import resolve_config, user_config_path
from loom.client._identity import default_holder, find_repo_root, parse_git_remote
from loom.errors import ValidationError


def _resolve(
    tmp_path: Path,
    flags: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    remote: str | None = None,
):
    return resolve_config(
        flags,
        cwd=tmp_path,
        env=env or {},
        user_config=tmp_path / "user" / "config.toml",
        git_remote=lambda root: remote,
        holder_default=lambda cwd: "me@box:wt",
    )


def _write_user(tmp_path: Path, text: str) -> None:
    path = tmp_path / "user" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_ito(tmp_path: Path, backend: dict[str, object]) -> None:
    (tmp_path / ".ito").mkdir(exist_ok=True)
    (tmp_path / ".ito" / "config.json").write_text(json.dumps({"backend": backend}))


def test_defaults(tmp_path: Path) -> None:
    cfg = _resolve(tmp_path)
    assert (cfg.url.value, cfg.url.source) == ("http://127.0.0.1:9010", "default")
    assert (cfg.timeout.value, cfg.timeout.source) == (30.0, "default")
    assert (cfg.retries.value, cfg.retries.source) == (3, "default")
    assert (cfg.holder.value, cfg.holder.source) == ("me@box:wt", "default")
    assert cfg.token.value is None and cfg.project.value is None


def test_user_config_is_read(tmp_path: Path) -> None:
    _write_user(
        tmp_path,
        'url = "http://user:1"\ntoken = "utok"\nproject = "u/p"\nholder = "uh"\n'
        "timeout = 5\nretries = 1\n",
    )
    cfg = _resolve(tmp_path)
    src = str(tmp_path / "user" / "config.toml")
    assert (cfg.url.value, cfg.url.source) == ("http://user:1", src)
    assert (cfg.token.value, cfg.token.source) == ("utok", src)
    assert (cfg.project.value, cfg.holder.value) == ("u/p", "uh")
    assert (cfg.timeout.value, cfg.retries.value) == (5.0, 1)


def test_user_config_per_project_token(tmp_path: Path) -> None:
    _write_user(tmp_path, 'token = "generic"\n[projects."acme/w"]\ntoken = "specific"\n')
    assert _resolve(tmp_path, {"project": "acme/w"}).token.value == "specific"
    assert _resolve(tmp_path, {"project": "other/w"}).token.value == "generic"


def test_ito_config_json_beats_user_config(tmp_path: Path) -> None:
    _write_user(tmp_path, 'url = "http://user:1"\nproject = "u/p"\ntimeout = 5\n')
    _write_ito(
        tmp_path,
        {
            "url": "http://ito:2",
            "project": {"org": "acme", "repo": "w"},
            "timeout_ms": 1500,
            "max_retries": 7,
        },
    )
    cfg = _resolve(tmp_path)
    src = str(tmp_path / ".ito" / "config.json")
    assert (cfg.url.value, cfg.url.source) == ("http://ito:2", src)
    assert (cfg.project.value, cfg.project.source) == ("acme/w", src)
    assert (cfg.timeout.value, cfg.retries.value) == (1.5, 7)


def test_ito_config_ignores_incomplete_project_and_blank_url(tmp_path: Path) -> None:
    _write_ito(tmp_path, {"url": "  ", "project": {"org": "acme", "repo": ""}})
    cfg = _resolve(tmp_path, remote="git@github.com:g/r.git")
    assert cfg.url.source == "default"
    assert (cfg.project.value, cfg.project.source) == ("g/r", "git:origin")


def test_loom_toml_beats_ito_config(tmp_path: Path) -> None:
    _write_ito(tmp_path, {"url": "http://ito:2", "project": {"org": "acme", "repo": "w"}})
    (tmp_path / ".loom.toml").write_text('url = "http://toml:3/"\nproject = "t/p"\ntoken = "no"\n')
    cfg = _resolve(tmp_path)
    assert (cfg.url.value, cfg.url.source) == ("http://toml:3", str(tmp_path / ".loom.toml"))
    assert cfg.project.value == "t/p"
    assert cfg.token.value is None  # a token never comes from a shared project file


def test_env_beats_files_and_flags_beat_env(tmp_path: Path) -> None:
    _write_ito(tmp_path, {"url": "http://ito:2", "project": {"org": "acme", "repo": "w"}})
    env = {
        "LOOM_URL": "http://env:4",
        "LOOM_PROJECT": "e/p",
        "LOOM_HOLDER": "eh",
        "LOOM_TIMEOUT": "9",
        "LOOM_RETRIES": "0",
        "LOOM_TOKEN": "etok",
    }
    cfg = _resolve(tmp_path, env=env)
    assert cfg.as_dict() == {
        "url": {"value": "http://env:4", "source": "env:LOOM_URL"},
        "token": {"value": "***", "source": "env:LOOM_TOKEN"},
        "project": {"value": "e/p", "source": "env:LOOM_PROJECT"},
        "holder": {"value": "eh", "source": "env:LOOM_HOLDER"},
        "timeout": {"value": 9.0, "source": "env:LOOM_TIMEOUT"},
        "retries": {"value": 0, "source": "env:LOOM_RETRIES"},
    }
    flags = {
        "url": "http://flag:5",
        "project": "f/p",
        "holder": "fh",
        "timeout": 2.0,
        "retries": 4,
        "token": "ftok",
    }
    cfg = _resolve(tmp_path, flags=flags, env=env)
    assert {k: v["source"] for k, v in cfg.as_dict().items()} == dict.fromkeys(flags, "flag")
    assert cfg.token.value == "ftok"
    assert cfg.url.value == "http://flag:5"


def test_token_env_order_and_blank_env_is_unset(tmp_path: Path) -> None:
    _write_user(tmp_path, 'token = "utok"\n')
    cfg = _resolve(tmp_path, env={"ITO_BACKEND_TOKEN": "ito", "LOOM_TOKEN": "loom"})
    assert (cfg.token.value, cfg.token.source) == ("loom", "env:LOOM_TOKEN")
    cfg = _resolve(tmp_path, env={"ITO_BACKEND_TOKEN": "ito"})
    assert (cfg.token.value, cfg.token.source) == ("ito", "env:ITO_BACKEND_TOKEN")
    # Ito made a blank variable a hard error (C-15); Loom treats it as unset.
    cfg = _resolve(tmp_path, env={"LOOM_TOKEN": "  ", "ITO_BACKEND_TOKEN": ""})
    assert cfg.token.value == "utok"


def test_git_remote_beats_user_project_but_not_project_files(tmp_path: Path) -> None:
    _write_user(tmp_path, 'project = "u/p"\n')
    assert _resolve(tmp_path, remote="https://github.com/g/r.git").project.value == "g/r"
    assert _resolve(tmp_path, remote=None).project.value == "u/p"
    _write_ito(tmp_path, {"project": {"org": "acme", "repo": "w"}})
    assert _resolve(tmp_path, remote="https://github.com/g/r.git").project.value == "acme/w"


def test_invalid_values_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        _resolve(tmp_path, env={"LOOM_TIMEOUT": "soon"})
    with pytest.raises(ValidationError, match="timeout"):
        _resolve(tmp_path, env={"LOOM_TIMEOUT": "0"})
    with pytest.raises(ValidationError, match="retries"):
        _resolve(tmp_path, env={"LOOM_RETRIES": "-1"})
    with pytest.raises(ValidationError, match="ORG/REPO"):
        _resolve(tmp_path, flags={"project": "no-slash"})
    with pytest.raises(ValidationError, match="ORG/REPO"):
        _resolve(tmp_path, flags={"project": "../etc"})
    (tmp_path / ".ito").mkdir()
    (tmp_path / ".ito" / "config.json").write_text("{not json")
    with pytest.raises(ValidationError, match=r"config\.json"):
        _resolve(tmp_path)


def test_url_is_normalised(tmp_path: Path) -> None:
    assert _resolve(tmp_path, flags={"url": "http://h:1/api/v1/"}).url.value == "http://h:1"


@pytest.mark.parametrize(
    "good", ["http://h", "https://loom.example:8443", "http://[::1]:9010", "http://h:1/prefix"]
)
def test_valid_urls_are_accepted(tmp_path: Path, good: str) -> None:
    assert _resolve(tmp_path, flags={"url": good}).url.value == good


@pytest.mark.parametrize(
    "bad", ["notaurl", "ftp://h", "http://", "http://h:port", "127.0.0.1:9010", "http://h/?q=1"]
)
def test_bad_urls_are_config_errors_naming_their_source(tmp_path: Path, bad: str) -> None:
    def refused(**kwargs: object) -> ValidationError:
        with pytest.raises(ValidationError) as info:
            _resolve(tmp_path, **kwargs)  # type: ignore[arg-type]
        assert info.value.kind == "invalid_config"
        assert "invalid server URL" in info.value.message
        return info.value

    assert refused(flags={"url": bad}).message.startswith("flag: ")
    assert refused(env={"LOOM_URL": bad}).message.startswith("env:LOOM_URL: ")
    _write_ito(tmp_path, {"url": bad})
    assert str(tmp_path / ".ito" / "config.json") in refused().message


def test_repr_and_dict_redact_the_token(tmp_path: Path) -> None:
    cfg = _resolve(tmp_path, flags={"token": "very-secret"})
    assert "very-secret" not in repr(cfg)
    assert "very-secret" not in json.dumps(cfg.as_dict())
    assert cfg.as_dict()["token"]["value"] == "***"
    client = cfg.client()
    assert "very-secret" not in repr(client) and client.has_token
    client.close()


def test_project_files_found_from_a_subdirectory(tmp_path: Path) -> None:
    _write_ito(tmp_path, {"project": {"org": "acme", "repo": "w"}})
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    assert find_repo_root(sub) == tmp_path.resolve()
    cfg = resolve_config(
        cwd=sub, env={}, user_config=tmp_path / "none.toml", git_remote=lambda r: None
    )
    assert cfg.project.value == "acme/w"
    assert cfg.root == tmp_path.resolve()


def test_user_config_path_honours_override() -> None:
    assert user_config_path({"LOOM_CONFIG_HOME": "/x/y"}) == Path("/x/y/config.toml")
    assert user_config_path({}).name == "config.toml"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/withakay/ito.git", ("withakay", "ito")),
        ("https://github.com/withakay/ito", ("withakay", "ito")),
        ("https://github.com/withakay/ito/", ("withakay", "ito")),
        ("http://user@gitlab.local:8080/grp/sub/repo.git", ("sub", "repo")),
        ("git@github.com:acme/widgets.git", ("acme", "widgets")),
        ("git@github.com:acme/widgets", ("acme", "widgets")),
        ("github.com:acme/widgets.git", ("acme", "widgets")),
        ("ssh://git@github.com:22/acme/widgets.git", ("acme", "widgets")),
        ("git://example.org/acme/w.x-y_z.git", ("acme", "w.x-y_z")),
        ("/srv/git/acme/widgets.git", ("acme", "widgets")),
        ("https://github.com/onlyone", None),
        ("", None),
        ("https://github.com/bad org/repo.git", None),
    ],
)
def test_parse_git_remote(url: str, expected: tuple[str, str] | None) -> None:
    assert parse_git_remote(url) == expected


def test_project_from_a_real_git_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "remote", "add", "origin", "git@example.com:acme/real.git"],
        check=True,
    )
    cfg = resolve_config(cwd=tmp_path, env={}, user_config=tmp_path / "none.toml")
    assert (cfg.project.value, cfg.project.source) == ("acme/real", "git:origin")
    holder = default_holder(tmp_path)
    assert holder.endswith(f":{tmp_path.name}") and "@" in holder
