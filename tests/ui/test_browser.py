"""The dashboard in a real headless Chromium against a real `loom serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN, ORG, REPO, LiveServer, project_token
from loom.client import Client

# Real servers and 1-second bounds: with the other real-process tests, on one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]

BOARD = f"/ui/{ORG}/{REPO}"
DELTA = (
    "## ADDED Requirements\n\n### Requirement: It works\nThe system SHALL work.\n\n"
    "#### Scenario: It runs\n- **WHEN** it is asked\n- **THEN** it answers\n"
)
HOSTILE = (
    "# Hostile proposal\n\n"
    "<script>window.__pwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.__pwned = \'img\'">\n\n'
    "[click me](javascript:window.__pwned='link') and [docs](https://example.org/docs)\n"
)


def _ready(c: Client, change_id: str, proposal: str = "# Alpha\n") -> None:
    c.push(
        change_id,
        revision="",
        proposal=proposal,
        tasks="- [ ] 1.1 Do it\n- [ ] 1.2 Check it\n",
        specs=[("alpha", DELTA)],
    )


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def _card(change_id: str) -> str:
    return f"[id='c-{change_id}']"


def test_sign_in_and_watch_a_change_move_live_after_loom_allocate(
    live_server: LiveServer, page: Any, tmp_path: Path
) -> None:
    url = live_server.url
    with Client(url, ADMIN, f"{ORG}/{REPO}", holder="editor") as c:
        _ready(c, "001-01_alpha")
    _sign_in(page, url, ADMIN)
    assert page.url.endswith("/ui/")
    page.click(f"a[href='{BOARD}']")
    page.wait_for_selector(".live.on")  # the stream is open
    assert page.locator(f".column.s-ready {_card('001-01_alpha')}").count() == 1
    page.evaluate("window.__sameDocument = true")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    env.update(
        LOOM_URL=url,
        LOOM_TOKEN=ADMIN,
        LOOM_PROJECT=f"{ORG}/{REPO}",
        LOOM_HOLDER="agent-x",
        LOOM_CONFIG_HOME=str(tmp_path / "cfg"),
        LOOM_STATE_DIR=str(tmp_path / "state"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "loom", "allocate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    allocated = time.monotonic()
    assert done.returncode == 0 and done.stdout.strip() == "001-01_alpha"
    page.wait_for_selector(f".column.s-in-progress {_card('001-01_alpha')}", timeout=5_000)
    moved = time.monotonic() - allocated
    assert moved < 1.0, f"the board moved the card {moved:.3f}s after allocate returned"
    assert page.evaluate("window.__sameDocument") is True  # no reload
    card = page.locator(f".column.s-in-progress {_card('001-01_alpha')}")
    assert "agent-x" in card.inner_text()
    assert "left" in card.locator("time.left").inner_text()  # the countdown runs
    assert "agent-x" in page.locator(".feed").inner_text()


def test_hostile_markdown_renders_inert(live_server: LiveServer, page: Any) -> None:
    url = live_server.url
    with Client(url, ADMIN, f"{ORG}/{REPO}", holder="editor") as c:
        _ready(c, "001-02_hostile", proposal=HOSTILE)
    _sign_in(page, url, ADMIN)
    response = page.goto(f"{url}{BOARD}/changes/001-02_hostile")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    md = page.locator(".md").first
    assert md.locator("script").count() == 0
    assert md.locator("img").count() == 0
    assert md.locator("a[href^='javascript']").count() == 0
    text = md.inner_text()
    assert "<script>window.__pwned = 'script'</script>" in text
    assert "onerror" in text and "[click me](javascript:" in text
    assert md.locator("a[href='https://example.org/docs']").count() == 1


def test_sign_out_ends_access(live_server: LiveServer, page: Any) -> None:
    url = live_server.url
    _sign_in(page, url, ADMIN)
    cookie = next(c for c in page.context.cookies() if c["name"] == "loom_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN not in page.content()
    page.click("form.signout button")
    page.wait_for_load_state()
    assert page.url.endswith("/ui/login")
    page.goto(f"{url}{BOARD}")
    assert page.url.endswith("/ui/login")
    # The old cookie, replayed, is refused too.
    r = httpx.get(
        f"{url}{BOARD}", cookies={"loom_session": cookie["value"]}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"


def test_a_project_token_sees_only_its_project_and_cannot_force_release(
    live_server: LiveServer, page: Any
) -> None:
    url = live_server.url
    with Client(url, ADMIN, f"{ORG}/{REPO}", holder="editor") as c:
        _ready(c, "001-01_alpha")
        c.claim("001-01_alpha")
    with Client(url, ADMIN, "other/repo", holder="editor") as c:
        _ready(c, "001-01_beta")
    _sign_in(page, url, project_token())
    assert page.locator("a[href='/ui/other/repo']").count() == 0
    assert page.locator(f"a[href='{BOARD}']").count() == 1
    response = page.goto(f"{url}/ui/other/repo")
    assert response.status == 403
    assert "may not open other/repo" in page.inner_text("main")
    # Its own change page offers no force-release; a forged POST (with the session's own
    # CSRF token) is refused and the lease stays.
    page.goto(f"{url}{BOARD}/changes/001-01_alpha")
    assert page.locator("button.danger").count() == 0
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    r = page.request.post(
        f"{url}{BOARD}/changes/001-01_alpha/release",
        form={"csrf": csrf, "confirm": "yes"},
        max_redirects=0,
    )
    assert r.status == 403
    with Client(url, ADMIN, f"{ORG}/{REPO}") as c:
        assert c.get_lease("001-01_alpha").holder == "editor"


def test_admin_force_release_needs_csrf_and_confirmation(
    live_server: LiveServer, page: Any
) -> None:
    url = live_server.url
    with Client(url, ADMIN, f"{ORG}/{REPO}", holder="editor") as c:
        _ready(c, "001-01_alpha")
        c.claim("001-01_alpha")
    _sign_in(page, url, ADMIN)
    forged = page.request.post(
        f"{url}{BOARD}/changes/001-01_alpha/release", form={"confirm": "yes"}, max_redirects=0
    )
    assert forged.status == 403
    page.goto(f"{url}{BOARD}/changes/001-01_alpha")
    page.check("input[name=confirm]")
    page.click("button.danger")
    page.wait_for_load_state()
    assert "Not leased." in page.inner_text(".change-side")
    with Client(url, ADMIN, f"{ORG}/{REPO}") as c:
        assert c.list_leases() == []
        ops = [(e.op, e.by) for e in c.get_events() if e.entity_id == "001-01_alpha"]
    assert ("force_release", "@admin") in ops


def test_works_without_javascript_on_a_phone_and_in_dark_mode(
    live_server: LiveServer, browser: Any
) -> None:
    url = live_server.url
    with Client(url, ADMIN, f"{ORG}/{REPO}", holder="editor") as c:
        _ready(c, "001-01_alpha")
        c.claim("001-01_alpha")
    context = browser.new_context(
        java_script_enabled=False,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        is_mobile=True,
    )
    try:
        page = context.new_page()
        _sign_in(page, url, ADMIN)
        page.goto(f"{url}{BOARD}")
        card = page.locator(f".column.s-in-progress {_card('001-01_alpha')}")
        assert "editor" in card.inner_text()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(x) for x in background[4:-1].split(",")[:3])
        assert red + green + blue < 100, background  # dark
        page.goto(f"{url}{BOARD}?holder=nobody")
        assert page.locator(".kcard").count() == 0
        page.goto(f"{url}{BOARD}/changes/001-01_alpha")
        assert "Alpha" in page.inner_text(".md")
        page.goto(f"{url}{BOARD}/archived")
        assert "Nothing archived yet." in page.inner_text("main")
    finally:
        context.close()
