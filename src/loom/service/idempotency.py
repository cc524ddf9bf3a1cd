"""``Idempotency-Key`` handling around any mutating use case (PRODUCT.md §3.4).

1. A short transaction records the key as *in flight* with the request's fingerprint (or
   finds the stored record: replay it, 422 if the fingerprint differs, 409 while the first
   request still runs).
2. The use case runs, and its response is stored against the key, in ONE transaction: the
   effect and the record commit together or not at all.
3. An error response below 500 is stored too (the effect was rolled back). A 5xx forgets the
   in-flight record, so the client may retry.

A record left in flight by a process that died mid-request never gets its effect (which
commits with the record's answer, on the session that recorded it). It is released at
start-up (SQLite: any other boot's; PostgreSQL: a boot with no database session left) and,
on PostgreSQL, taken over by the next request with its key as soon as the boot that wrote it
has no session left; otherwise after ``idempotency_in_flight_timeout``. A request whose record
was taken over meanwhile rolls its effect back (409 ``idempotency_in_flight``) instead of
committing it twice.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from loom.errors import IdempotencyInFlight, LoomError, Unprocessable
from loom.service._common import write_pid
from loom.service._context import Project, ServiceContext
from loom.store import idempotency as store
from loom.store.engine import boot_id

__all__ = ["Replay", "release_abandoned", "run_idempotent"]

# Every in-flight record this process writes has an owner ``<boot id>.<random>`` (:func:`boot_id`).

log = logging.getLogger("loom.idempotency")


@dataclass(frozen=True)
class Replay:
    """A response served from the idempotency store."""

    status: int
    body: Any


_calls = itertools.count(1)


def _begin(ctx: ServiceContext, pid: int, key: str, fingerprint: str, owner: str) -> Replay | None:
    now = ctx.now_us()
    expires = now + ctx.policy.idempotency_ttl * 1_000_000
    with ctx.db.write() as conn:
        if next(_calls) % ctx.policy.idempotency_purge_every == 0:
            # Expired records are only ever taken over, never read: without this they
            # would accumulate forever.
            store.purge_expired(conn, now)
        if store.claim_key(
            conn, pid, key, fingerprint=fingerprint, owner=owner, now_us=now, expires_us=expires
        ):
            return None
        rec = store.get_key(conn, pid, key, lock=True)
        if rec is None or rec.expires_us <= now:
            # Vanished (released) or expired: this request owns the key now.
            if rec is None:
                if not store.claim_key(
                    conn,
                    pid,
                    key,
                    fingerprint=fingerprint,
                    owner=owner,
                    now_us=now,
                    expires_us=expires,
                ):
                    raise IdempotencyInFlight(
                        "a request with this Idempotency-Key is still in progress"
                    )
            else:
                store.take_over_key(
                    conn,
                    pid,
                    key,
                    fingerprint=fingerprint,
                    owner=owner,
                    now_us=now,
                    expires_us=expires,
                )
            return None
        if rec.fingerprint != fingerprint:
            raise Unprocessable(
                "Idempotency-Key was already used for a different request",
                kind="idempotency_key_reused",
            )
        if rec.state == "done":
            assert rec.status is not None and rec.body is not None
            return Replay(rec.status, json.loads(rec.body))
        stale = rec.created_us + ctx.policy.idempotency_in_flight_timeout * 1_000_000 <= now
        if not stale and not _live(conn, ctx, rec.owner):
            stale = True
        if not stale:
            raise IdempotencyInFlight("a request with this Idempotency-Key is still in progress")
        store.take_over_key(
            conn, pid, key, fingerprint=fingerprint, owner=owner, now_us=now, expires_us=expires
        )
        return None


def _live(conn: Connection, ctx: ServiceContext, owner: str | None) -> bool:
    """Can the request that owns this in-flight record still commit its effect?

    This process's own records: yes. Another boot's on PostgreSQL: while any session of that
    boot is connected (one query, only when a key is found in flight). SQLite: one process
    owns the database and released other boots' records at start-up.
    """
    boot = store.boot_of(owner)
    if boot == boot_id() or ctx.db.kind != "postgresql":
        return True
    return store.boot_alive(conn, boot)


def _finish(ctx: ServiceContext, pid: int, key: str, owner: str, status: int, body: Any) -> None:
    with ctx.db.write() as conn:
        store.finish_key(conn, pid, key, owner=owner, status=status, body=json.dumps(body))


def run_idempotent(
    ctx: ServiceContext,
    project: Project,
    key: str,
    fingerprint: str,
    operation: Callable[[], Any],
    *,
    success_status: int = 200,
) -> tuple[int, Any, bool]:
    """Run ``operation`` at most once per (project, key). Returns (status, body, replayed)."""
    pid = write_pid(ctx, project)
    owner = f"{boot_id()}.{secrets.token_hex(8)}"
    replay = _begin(ctx, pid, key, fingerprint, owner)
    if replay is not None:
        return replay.status, replay.body, True
    try:
        with ctx.db.write() as conn:
            body = operation()
            if not store.finish_key(
                conn, pid, key, owner=owner, status=success_status, body=json.dumps(body)
            ):
                # Taken over (this request was presumed dead): roll the effect back, the
                # request that owns the key now applies it.
                raise IdempotencyInFlight(
                    "a request with this Idempotency-Key is still in progress"
                )
    except LoomError as err:
        if err.status < 500:
            _finish(ctx, pid, key, owner, err.status, err.to_envelope())
        else:
            _forget(ctx, pid, key, owner)
        raise
    except BaseException:
        _forget(ctx, pid, key, owner)
        raise
    return success_status, body, False


def _forget(ctx: ServiceContext, pid: int, key: str, owner: str) -> None:
    with ctx.db.write() as conn:
        store.release_key(conn, pid, key, owner=owner)


def release_abandoned(ctx: ServiceContext) -> int:
    """At start-up: delete the in-flight records of processes that died mid-request.

    Their effect never committed (it commits with the record), so their keys are free again
    at once instead of answering 409 ``idempotency_in_flight`` for two minutes.
    SQLite: one process owns the database (``serve --workers > 1`` is refused there), so
    every in-flight record not written by this boot. PostgreSQL (shared by live processes):
    the records of boots with no database session left (:func:`store.release_dead_boots`).
    Returns how many were released.
    """
    with ctx.db.write() as conn:
        if ctx.db.kind == "sqlite":
            released = store.release_other_boots(conn, f"{boot_id()}.")
        else:
            released = store.release_dead_boots(conn, boot_id())
    if released:
        log.info("released %d idempotency key(s) left in flight by a stopped process", released)
    return released
