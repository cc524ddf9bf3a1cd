"""The dashboard's sign-in session: a signed, expiring, HttpOnly SameSite=Strict cookie.

The cookie carries the token the person signed in with (never shown in a URL or a page), an
expiry and a random nonce, signed with HMAC-SHA256 under a key derived from the server's
secrets. Every request re-checks the token with the API's own ``authorize``, so a token
that stops being valid (or a token kind added later) applies to the dashboard at once.
Signing out clears the cookie and records its nonce in the database until it expires
(:mod:`loom.service.sessions`), so every server process refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from loom.settings import Settings

__all__ = ["COOKIE", "LOGIN_COOKIE", "LOGIN_SECONDS", "SESSION_SECONDS", "Session", "SessionSigner"]

COOKIE = "loom_session"
SESSION_SECONDS = 12 * 3600
# The sign-in form's CSRF nonce (double submit: this cookie and a signed copy in the form).
LOGIN_COOKIE = "loom_login"
LOGIN_SECONDS = 3600


@dataclass(frozen=True)
class Session:
    token: str
    expires: int
    nonce: str


class SessionSigner:
    """Makes and checks session cookies and CSRF tokens for one server."""

    def __init__(self, settings: Settings) -> None:
        secrets_ = [s.get_secret_value() for s in settings.admin_tokens]
        if settings.token_seed is not None:
            secrets_.append(settings.token_seed.get_secret_value())
        material = "\x00".join(secrets_).encode() if secrets_ else os.urandom(32)
        self._key = hashlib.sha256(b"loom-ui-session\x00" + material).digest()

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def issue(self, token: str, now: float | None = None) -> tuple[str, Session]:
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        session = Session(token, expires, secrets.token_hex(16))
        body = json.dumps({"t": token, "e": expires, "n": session.nonce}).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        return f"{payload.decode()}.{self._sign(payload)}", session

    def read(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None (missing, forged, expired). Whether it was
        signed out is the caller's to ask (:mod:`loom.service.sessions`)."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(payload.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(str(data["t"]), int(data["e"]), str(data["n"]))
        except (ValueError, KeyError, TypeError):
            return None
        current = time.time() if now is None else now
        if session.expires <= current:
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session (sent in forms, checked on POST)."""
        return self._sign(f"csrf\x00{session.nonce}".encode())

    def check_csrf(self, session: Session, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value), self.csrf(session))

    def login_nonce(self, current: str | None) -> str:
        """The sign-in form's nonce: the browser's current one if it has one, else new."""
        if current and len(current) == 32 and all(c in "0123456789abcdef" for c in current):
            return current
        return secrets.token_hex(16)

    def login_csrf(self, nonce: str) -> str:
        """The CSRF token the sign-in form carries for the nonce in the browser's cookie.

        Login CSRF (a site signing its visitor in as the attacker) needs a POST the victim's
        browser sends with a form token matching a cookie it cannot set or read."""
        return self._sign(f"login-csrf\x00{nonce}".encode())

    def check_login_csrf(self, nonce: str | None, value: str | None) -> bool:
        if not nonce or not value:
            return False
        return hmac.compare_digest(str(value), self.login_csrf(nonce))
