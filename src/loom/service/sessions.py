"""Dashboard sign-outs, seen by every server process within the token cache's second.

A session cookie is signed and carries a random nonce; signing out records the nonce
(``ui_session_revocations``) until the session would have expired. Each dashboard request
asks :func:`is_signed_out`: answered from the process cache (at most
``token_cache_seconds`` old, as named tokens are), else one primary-key read.
"""

from __future__ import annotations

from loom.service._context import ServiceContext
from loom.service._tokencache import MISS
from loom.store import sessions as store

__all__ = ["MISS", "cached_sign_out", "is_signed_out", "sign_out"]


def sign_out(ctx: ServiceContext, nonce: str, expires_us: int) -> None:
    """Record that the session with ``nonce`` was signed out (effective in this process at
    once, in the others once their cache entry is older than its TTL)."""
    with ctx.db.write() as conn:
        store.revoke(conn, nonce, expires_us, ctx.now_us())
    ctx.sessions.put(nonce, True)


def cached_sign_out(ctx: ServiceContext, nonce: str) -> bool | object:
    """The process cache's answer, or ``MISS`` (then call :func:`is_signed_out`)."""
    found = ctx.sessions.get(nonce)
    return found if found is MISS else bool(found)


def is_signed_out(ctx: ServiceContext, nonce: str) -> bool:
    """Whether the session was signed out (read from the database, then cached)."""
    with ctx.db.read() as conn:
        revoked = store.is_revoked(conn, nonce)
    ctx.sessions.put(nonce, revoked)
    return revoked
