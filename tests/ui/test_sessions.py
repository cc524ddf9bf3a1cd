"""Dashboard sessions in-process: the sign-in form's CSRF check, sign-out in every server
process, and a session ending with the token it was made from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import ADMIN, ORG, REPO, FakeClock, auth, form_csrf, ui_login
from loom.service._tokencache import TokenCache

LOGIN_CSRF = "loom_login"


def _form_csrf(client: Any) -> str:
    return form_csrf(client.get("/ui/login").text)


def test_sign_in_without_the_forms_csrf_token_is_refused(api: Any) -> None:
    # No token in the form at all (a form posted from another site).
    bare = api.post("/ui/login", data={"token": ADMIN}, follow_redirects=False)
    assert bare.status_code == 403 and "loom_session" not in bare.cookies
    assert "sign in again" in bare.text
    # A token from the form, but the browser has no nonce cookie (the attacker's own form
    # token, replayed from the victim's browser).
    csrf = _form_csrf(api)
    api.cookies.clear()
    stolen = api.post("/ui/login", data={"token": ADMIN, "csrf": csrf}, follow_redirects=False)
    assert stolen.status_code == 403 and "loom_session" not in stolen.cookies
    # Another browser's nonce cookie with this form token: refused too.
    api.cookies.set(LOGIN_CSRF, "0" * 32, path="/ui")
    other = api.post("/ui/login", data={"token": ADMIN, "csrf": csrf}, follow_redirects=False)
    assert other.status_code == 403
    # A wrong token: refused.
    api.cookies.clear()
    _form_csrf(api)
    forged = api.post("/ui/login", data={"token": ADMIN, "csrf": "f" * 64}, follow_redirects=False)
    assert forged.status_code == 403
    # The form as served: signed in, and the nonce cookie is dropped.
    api.cookies.clear()
    good = ui_login(api, ADMIN)
    assert good.status_code == 303 and good.headers["location"] == "/ui/"
    assert "loom_session" in good.cookies
    assert api.get("/ui/", follow_redirects=False).status_code == 200


def test_the_login_nonce_cookie_is_httponly_and_strict(api: Any) -> None:
    resp = api.get("/ui/login")
    header = resp.headers["set-cookie"]
    assert header.startswith(f"{LOGIN_CSRF}=")
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/ui" in header


class _Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sign_out_in_one_server_process_ends_the_session_in_another(
    app_factory: Callable[..., Any],
) -> None:
    """Two apps on one database stand for two server processes: a sign-out recorded by one
    reaches the other once its cached answer (at most the token cache's second) has aged."""
    first, second = app_factory(), app_factory()
    ticks = _Monotonic()
    second.app.state.ctx.sessions = TokenCache(1.0, monotonic=ticks)
    assert ui_login(first, ADMIN).status_code == 303
    cookie = first.cookies.get("loom_session")
    second.cookies.set("loom_session", cookie, path="/ui")
    assert second.get("/ui/", follow_redirects=False).status_code == 200  # cached: not out
    csrf = form_csrf(first.get("/ui/").text)
    out = first.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    # The process that signed out refuses the copied cookie at once.
    replay = httpx_cookies(first, cookie)
    assert replay.status_code == 303 and replay.headers["location"] == "/ui/login"
    ticks.now += 0.999
    assert second.get("/ui/", follow_redirects=False).status_code == 200  # within the TTL
    ticks.now += 0.001
    refused = second.get("/ui/", follow_redirects=False)
    assert (refused.status_code, refused.headers["location"]) == (303, "/ui/login")
    assert second.get(f"/ui/{ORG}/{REPO}", follow_redirects=False).status_code == 303


def httpx_cookies(client: Any, cookie: str) -> Any:
    """``GET /ui/`` through ``client`` with only ``cookie`` as the session."""
    client.cookies.clear()
    client.cookies.set("loom_session", cookie, path="/ui")
    return client.get("/ui/", follow_redirects=False)


def test_a_session_ends_when_its_named_token_expires(
    app_factory: Callable[..., Any], clock: FakeClock
) -> None:
    api = app_factory(token_cache_seconds=0)
    pushed = api.post(
        f"/api/v1/projects/{ORG}/{REPO}/changes/001-01_alpha/sync",
        json={"proposal": "# Alpha\n", "specs": []},
        headers=auth(ADMIN),
    )
    assert pushed.status_code == 200, pushed.text  # a known project the token may open
    made = api.post(
        "/api/v1/admin/tokens",
        json={"name": "viewer", "project": f"{ORG}/{REPO}", "expires": "1h"},
        headers=auth(ADMIN),
    )
    assert made.status_code == 200, made.text
    assert ui_login(api, made.json()["token"]).status_code == 303
    assert api.get("/ui/", follow_redirects=False).status_code == 200
    clock.advance(3600)
    for path in ("/ui/", f"/ui/{ORG}/{REPO}"):
        resp = api.get(path, follow_redirects=False)
        assert (resp.status_code, resp.headers["location"]) == (303, "/ui/login"), path
