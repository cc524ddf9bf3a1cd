"""Dashboard sessions signed out before they expire (``ui_session_revocations``)."""

from __future__ import annotations

from sqlalchemy import Connection

from loom.store import _raw

__all__ = ["is_revoked", "revoke"]

_FIND = _raw.SQL("SELECT 1 FROM ui_session_revocations WHERE nonce = ?")
_PURGE = _raw.SQL("DELETE FROM ui_session_revocations WHERE expires_us <= ?")
_INSERT = _raw.SQL(
    "INSERT INTO ui_session_revocations (nonce, expires_us, revoked_us) VALUES (?, ?, ?)"
    " ON CONFLICT (nonce) DO NOTHING"
)


def is_revoked(conn: Connection, nonce: str) -> bool:
    """Whether the session with this nonce was signed out (one primary-key probe)."""
    return _raw.fetchone(conn, _FIND, (nonce,)) is not None


def revoke(conn: Connection, nonce: str, expires_us: int, now_us: int) -> None:
    """Record a sign-out (idempotent) and drop the rows of sessions that have expired
    anyway (an expired cookie is refused on its own)."""
    _raw.execute(conn, _PURGE, (now_us,))
    _raw.execute(conn, _INSERT, (nonce, expires_us, now_us))
