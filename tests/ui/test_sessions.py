"""Dashboard sessions in-process: the sign-in form's CSRF check, sign-out in every server
process, and a session ending with the token it was made from."""

from __future__ import annotations

import re
from typing import Any

from conftest import ADMIN, ui_login

LOGIN_CSRF = "loom_login"


def _form_csrf(client: Any) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/login").text)
    assert found
    return found.group(1)


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
