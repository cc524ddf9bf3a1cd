"""Named tokens' rows (``api_tokens``): looked up by the hash of the secret, never the secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from loom.domain.tokens import NamedToken, Target, validate_scope
from loom.errors import Conflict
from loom.store import _raw
from loom.store.schema import api_tokens

__all__ = ["find_by_hash", "find_by_name", "insert_token", "list_tokens", "revoke", "touch"]

_COLUMNS = (
    api_tokens.c.name,
    api_tokens.c.scope,
    api_tokens.c.target_kind,
    api_tokens.c.org,
    api_tokens.c.repo,
    api_tokens.c.created_us,
    api_tokens.c.expires_us,
    api_tokens.c.revoked_us,
    api_tokens.c.last_used_us,
)


def _token(row: Any) -> NamedToken:
    kind = row[2]
    target = Target(kind if kind in ("project", "org") else "server", row[3], row[4])
    return NamedToken(
        name=row[0],
        scope=validate_scope(row[1]),
        target=target,
        created_us=int(row[5]),
        expires_us=row[6],
        revoked_us=row[7],
        last_used_us=row[8],
    )


_BY_HASH = _raw.SQL(
    "SELECT name, scope, target_kind, org, repo, created_us, expires_us, revoked_us, "
    "last_used_us FROM api_tokens WHERE token_hash = ?"
)


def find_by_hash(conn: Connection, token_hash: str) -> NamedToken | None:
    """The token whose secret hashes to ``token_hash`` (one indexed lookup)."""
    row = _raw.fetchone(conn, _BY_HASH, (token_hash,))
    return None if row is None else _token(row)


def find_by_name(conn: Connection, name: str) -> NamedToken | None:
    row = conn.execute(select(*_COLUMNS).where(api_tokens.c.name == name)).first()
    return None if row is None else _token(row)


def insert_token(conn: Connection, token: NamedToken, token_hash: str) -> None:
    """Store a new token; a revoked token of the same name is replaced."""
    conn.execute(
        delete(api_tokens).where(
            api_tokens.c.name == token.name, api_tokens.c.revoked_us.is_not(None)
        )
    )
    statement = insert(api_tokens).values(
        name=token.name,
        token_hash=token_hash,
        scope=token.scope,
        target_kind=token.target.kind,
        org=token.target.org,
        repo=token.target.repo,
        created_us=token.created_us,
        expires_us=token.expires_us,
    )
    try:
        conn.execute(statement)
    except IntegrityError:  # a concurrent create of the same name won the race
        raise Conflict(
            f"a token named '{token.name}' already exists", kind="token_exists"
        ) from None


def list_tokens(conn: Connection) -> list[NamedToken]:
    return [_token(r) for r in conn.execute(select(*_COLUMNS).order_by(api_tokens.c.name))]


def revoke(conn: Connection, name: str, now_us: int) -> bool:
    """Mark the token revoked; False when no unrevoked token has that name."""
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.name == name, api_tokens.c.revoked_us.is_(None))
        .values(revoked_us=now_us)
    )
    return bool(result.rowcount)


def touch(conn: Connection, token_hash: str, now_us: int) -> None:
    """Record a use (callers throttle this; it is not done on every request)."""
    conn.execute(
        update(api_tokens).where(api_tokens.c.token_hash == token_hash).values(last_used_us=now_us)
    )
