"""Stored responses for ``Idempotency-Key`` (per project, with expiry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, text, update

from loom.store.schema import idempotency

__all__ = [
    "IdemRecord",
    "boot_alive",
    "boot_of",
    "claim_key",
    "finish_key",
    "get_key",
    "purge_expired",
    "release_dead_boots",
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


def boot_of(owner: str | None) -> str:
    """The boot id an owner ``<boot>.<random>`` was written by."""
    return (owner or "").partition(".")[0]


def boot_alive(conn: Connection, boot: str) -> bool:
    """PostgreSQL: is any session of process boot ``boot`` still connected?

    Every session a server process opens carries ``application_name = 'loom:<boot>'``
    (:func:`loom.store.engine.application_name`); ``pg_stat_activity`` shows every session's
    ``application_name`` to any user. Read it *after* the record it is about: a session
    that wrote a record is connected before the record exists.
    """
    row = conn.execute(
        text("SELECT 1 FROM pg_stat_activity WHERE application_name = :name LIMIT 1"),
        {"name": f"loom:{boot}"},
    ).first()
    return row is not None


def release_dead_boots(conn: Connection, own_boot: str) -> int:
    """PostgreSQL: delete the in-flight records of boots with no session left.

    A record's effect commits with it in the transaction of the session that recorded it
    (:func:`loom.service.idempotency.run_idempotent`), so with every session of its boot
    gone it can never commit. The records are read before the sessions: a record written
    meanwhile belongs to a session already connected.
    """
    rows = conn.execute(
        select(idempotency.c.project_id, idempotency.c.key, idempotency.c.owner).where(
            idempotency.c.state == "in_flight"
        )
    ).all()
    if not rows:
        return 0
    live = {
        str(name).removeprefix("loom:")
        for (name,) in conn.execute(
            text(
                "SELECT DISTINCT application_name FROM pg_stat_activity"
                " WHERE application_name LIKE 'loom:%'"
            )
        )
    }
    live.add(own_boot)
    released = 0
    for project_id, key, owner in rows:
        if boot_of(owner) in live:
            continue
        result = conn.execute(
            delete(idempotency).where(
                idempotency.c.project_id == project_id,
                idempotency.c.key == key,
                idempotency.c.owner == owner,
                idempotency.c.state == "in_flight",
            )
        )
        released += int(result.rowcount or 0)
    return released
