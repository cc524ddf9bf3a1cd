"""CLI behaviour that needs no server: config show, unreachable server, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

from ._support import Loom


def test_config_show_text_and_json(base_env: dict[str, str], tmp_path: Path) -> None:
    loom = Loom(base_env)
    (Path.cwd() / ".ito").mkdir()
    (Path.cwd() / ".ito" / "config.json").write_text(
        json.dumps({"backend": {"url": "http://files:1", "project": {"org": "o", "repo": "r"}}})
    )
    data = loom.json("config", "show", "--token", "top-secret", LOOM_TIMEOUT="12")
    source = str(Path.cwd() / ".ito" / "config.json")
    assert data["url"] == {"value": "http://files:1", "source": source}
    assert data["project"]["value"] == "o/r"
    assert data["token"] == {"value": "***", "source": "flag"}
    assert data["timeout"] == {"value": 12.0, "source": "env:LOOM_TIMEOUT"}
    assert data["holder"] == {"value": "agent-a", "source": "env:LOOM_HOLDER"}
    assert data["retries"]["source"] == "env:LOOM_RETRIES"
    text = loom("config", "show", "--token", "top-secret", "--url", "http://flag:2").stdout
    assert "top-secret" not in text
    assert "http://flag:2" in text and "flag" in text and "***" in text


def test_unreachable_server_is_exit_5(base_env: dict[str, str]) -> None:
    loom = Loom({**base_env, "LOOM_URL": "http://127.0.0.1:1", "LOOM_PROJECT": "a/b"})
    result = loom("changes", "--retries", "0", code=5)
    assert "cannot reach" in result.stderr
    assert result.stdout == ""
    data = json.loads(loom("claim", "001-01_a", "--json", "--retries", "0", code=5).stdout)
    assert data["exit_code"] == 5
    status = loom("status", "--json", "--retries", "0", code=5)
    body = json.loads(status.stdout)
    assert body["exit_code"] == 5 and body["status"]["ok"] is False


def test_usage_errors_are_exit_2(base_env: dict[str, str]) -> None:
    loom = Loom({**base_env, "LOOM_URL": "http://127.0.0.1:1"})
    loom("claim", code=2)  # missing argument
    loom("changes", "--no-such-option", code=2)
    loom("changes", "--timeout", "abc", code=2)
    loom("changes", "--all", "--archived", code=2)
    result = loom("changes", code=2)  # no project configured anywhere
    assert "project" in result.stderr
    loom("changes", "--project", "not-a-project", code=2)
