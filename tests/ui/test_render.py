"""The dashboard's pure parts: link policy, markdown, card escaping, session cookies."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from loom.api.ui._cards import cards_html
from loom.api.ui._markdown import MAX_MARKDOWN, render_markdown, safe_link
from loom.api.ui._session import SESSION_SECONDS, SessionSigner
from loom.settings import Settings


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", " JaVaScRiPt:x", "java\tscript:x", "data:text/html,x", "vbscript:x"],
)
def test_dangerous_links_are_refused(url: str) -> None:
    assert not safe_link(url)
    assert "<a" not in render_markdown(f"[x]({url})")


@pytest.mark.parametrize("url", ["https://e.org/a", "http://e.org", "mailto:a@e.org", "../x", "#y"])
def test_ordinary_links_are_kept(url: str) -> None:
    assert safe_link(url)
    assert "<a href=" in render_markdown(f"[x]({url})")


def test_raw_html_is_text() -> None:
    out = render_markdown("<script>x()</script>\n\n<img src=x onerror=y()>")
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&lt;img" in out


def test_cards_escape_every_value() -> None:
    card = {
        "id": "001-01_a",
        "title": "<b>t</b>",
        "holder": '"><script>h()</script>',
        "expires_at": "2026-01-01T00:00:00Z",
        "expires_ms": 1,
        "revision": "<r>",
        "total": 2,
        "done": 1,
        "percent": 50,
    }
    html = str(cards_html([card], "/ui/o/r", "ready"))
    assert "<script>" not in html and "<b>" not in html and "<r>" not in html
    assert "&lt;b&gt;t&lt;/b&gt;" in html and "&lt;script&gt;" in html


def _signer(**overrides: object) -> SessionSigner:
    values: dict[str, object] = {
        "data_dir": ".",
        "database_url": "sqlite://",
        "admin_tokens": (SecretStr("adm"),),
        "token_seed": SecretStr("seed"),
    }
    values.update(overrides)
    return SessionSigner(Settings(**values))  # type: ignore[arg-type]


def test_session_cookies_are_signed_and_expiring() -> None:
    signer = _signer()
    value, session = signer.issue("tok", now=1000.0)
    assert "tok" not in value.split(".")[1]
    assert signer.read(value, now=1001.0) == session
    assert signer.read(value, now=1000.0 + SESSION_SECONDS) is None  # expired
    payload, signature = value.split(".")
    assert signer.read(payload + "x." + signature, now=1001.0) is None  # tampered
    assert signer.read(value[:-1] + ("0" if value[-1] != "0" else "1"), now=1001.0) is None
    assert _signer(token_seed=SecretStr("other")).read(value, now=1001.0) is None  # other key
    assert signer.check_csrf(session, signer.csrf(session))
    assert not signer.check_csrf(session, "") and not signer.check_csrf(session, "x" * 64)


def test_markdown_beyond_the_limit_is_plain_text() -> None:
    """markdown-it-py renders ~100-200 KB a second: a 2 MB artifact cost over ten seconds
    of CPU per page view. Beyond the limit the text is shown escaped, unrendered."""
    text = "## <b>heading</b>\n\n" + "Some *text* with `code`.\n\n" * 20_000
    assert len(text) > MAX_MARKDOWN
    started = time.perf_counter()
    out = render_markdown(text)
    assert time.perf_counter() - started < 0.5
    assert "<pre>## &lt;b&gt;heading&lt;/b&gt;" in out and "<h2>" not in out
    assert "<h2>" in render_markdown(text[:1000])
