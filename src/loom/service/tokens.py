"""Named tokens: create (the secret is returned once), list, revoke, and per-request lookup."""

from __future__ import annotations

from loom.domain.tokens import (
    NamedToken,
    Target,
    hash_token,
    new_secret,
    parse_expiry,
    validate_scope,
    validate_token_name,
)
from loom.errors import Conflict, NotFound
from loom.service._context import ServiceContext
from loom.service._tokencache import MISS
from loom.store import tokens as store

__all__ = [
    "MISS",
    "cached_token",
    "create_token",
    "list_tokens",
    "lookup_token",
    "record_use",
    "revoke_token",
    "token_hash",
]


def token_hash(secret: str) -> str:
    return hash_token(secret)


def create_token(
    ctx: ServiceContext,
    name: str,
    target: Target,
    scope: str | None = None,
    expires: str | None = None,
) -> tuple[NamedToken, str]:
    """Store a new token and return it with its secret (the only time the secret exists)."""
    name = validate_token_name(name)
    chosen = validate_scope(scope or ("admin" if target.kind == "server" else "write"))
    now = ctx.now_us()
    # A past RFC 3339 time is accepted (the token is created expired, as ``state`` shows).
    expires_us = parse_expiry(expires, now) if expires else None
    token = NamedToken(name, chosen, target, now, expires_us)
    secret = new_secret()
    with ctx.db.write() as conn:
        existing = store.find_by_name(conn, name)
        if existing is not None and existing.revoked_us is None:
            raise Conflict(f"a token named '{name}' already exists", kind="token_exists")
        store.insert_token(conn, token, hash_token(secret))
    return token, secret


def list_tokens(ctx: ServiceContext) -> list[NamedToken]:
    with ctx.db.read() as conn:
        return store.list_tokens(conn)


def revoke_token(ctx: ServiceContext, name: str) -> NamedToken:
    """Revoke by name (404 when there is no such active token)."""
    validate_token_name(name)
    with ctx.db.write() as conn:
        if not store.revoke(conn, name, ctx.now_us()):
            raise NotFound(f"no active token named '{name}'", kind="token_not_found")
        token = store.find_by_name(conn, name)
    assert token is not None
    ctx.tokens.clear()
    return token


def cached_token(ctx: ServiceContext, digest: str) -> NamedToken | object | None:
    """The process cache's answer for a token hash, or ``MISS`` (then call lookup_token)."""
    return ctx.tokens.get(digest)


def lookup_token(ctx: ServiceContext, digest: str) -> NamedToken | None:
    """One indexed read by hash; the answer (found or not) is cached for ``ttl``."""
    with ctx.db.read() as conn:
        token = store.find_by_hash(conn, digest)
    ctx.tokens.put(digest, token)
    return token


def record_use(ctx: ServiceContext, digest: str) -> None:
    """Update ``last_used`` (callers throttle this with ``ctx.tokens.due_for_touch``)."""
    with ctx.db.write() as conn:
        store.touch(conn, digest, ctx.now_us())
