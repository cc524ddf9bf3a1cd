"""Stored responses for ``Idempotency-Key`` (per project, with expiry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from loom.store.schema import idempotency

__all__ = [
    "IdemRecord",
    "claim_key",
    "finish_key",
    "get_key",
    "purge_expired",
    "release_key",
    "release_other_boots",
]


@dataclass(frozen=True)
class IdemRecord:
    fingerprint: str
    state: str
    owner: str | None
    status: int | None
    body: str | None
    created_us: int
    expires_us: int


def get_key(
    conn: Connection, project_id: int, key: str, *, lock: bool = False
) -> IdemRecord | None:
    stmt = select(
        idempotency.c.fingerprint,
        idempotency.c.state,
        idempotency.c.owner,
        idempotency.c.status,
        idempotency.c.body,
        idempotency.c.created_us,
        idempotency.c.expires_us,
    ).where(idempotency.c.project_id == project_id, idempotency.c.key == key)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return IdemRecord(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]))


def claim_key(
    conn: Connection,
    project_id: int,
    key: str,
    *,
    fingerprint: str,
    owner: str,
    now_us: int,
    expires_us: int,
) -> bool:
    """Insert an in-flight record; False if a record for the key already exists."""
    from sqlalchemy.dialects import postgresql, sqlite

    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        module.insert(idempotency)
        .values(
            project_id=project_id,
            key=key,
            fingerprint=fingerprint,
            state="in_flight",
            owner=owner,
            created_us=now_us,
            expires_us=expires_us,
        )
        .on_conflict_do_nothing(index_elements=["project_id", "key"])
        # RETURNING, not rowcount: SQLAlchemy does not keep an INSERT's rowcount on psycopg
        # (it reads -1), which made every key look taken on PostgreSQL.
        .returning(idempotency.c.key)
    )
    return conn.execute(stmt).first() is not None


def take_over_key(
    conn: Connection,
    project_id: int,
    key: str,
    *,
    fingerprint: str,
    owner: str,
    now_us: int,
    expires_us: int,
) -> None:
    conn.execute(
        update(idempotency)
        .where(idempotency.c.project_id == project_id, idempotency.c.key == key)
        .values(
            fingerprint=fingerprint,
            state="in_flight",
            owner=owner,
            status=None,
            body=None,
            created_us=now_us,
            expires_us=expires_us,
        )
    )


def finish_key(
    conn: Connection, project_id: int, key: str, *, owner: str, status: int, body: str
) -> bool:
    """Store the response, only if the in-flight record is still ours."""
    result = conn.execute(
        update(idempotency)
        .where(
            idempotency.c.project_id == project_id,
            idempotency.c.key == key,
            idempotency.c.owner == owner,
            idempotency.c.state == "in_flight",
        )
        .values(state="done", status=status, body=body)
    )
    return bool(result.rowcount == 1)


def release_key(conn: Connection, project_id: int, key: str, *, owner: str) -> None:
    """Forget an in-flight record (the request failed with a 5xx and may be retried)."""
    conn.execute(
        delete(idempotency).where(
            idempotency.c.project_id == project_id,
            idempotency.c.key == key,
            idempotency.c.owner == owner,
            idempotency.c.state == "in_flight",
        )
    )


def purge_expired(conn: Connection, now_us: int) -> int:
    result = conn.execute(delete(idempotency).where(idempotency.c.expires_us <= now_us))
    return int(result.rowcount or 0)


def release_other_boots(conn: Connection, boot_prefix: str) -> int:
    """Delete in-flight records whose owner does not start with ``boot_prefix`` (records
    of processes that are gone; see ``loom.service.idempotency.release_abandoned``)."""
    result = conn.execute(
        delete(idempotency).where(
            idempotency.c.state == "in_flight",
            ~idempotency.c.owner.startswith(boot_prefix, autoescape=True),
        )
    )
    return int(result.rowcount or 0)
