"""Whole-database figures for ``/metrics`` (computed at scrape time)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from loom.store.schema import leases

__all__ = ["count_active_leases"]


def count_active_leases(conn: Connection, now_us: int) -> int:
    stmt = select(func.count()).where(leases.c.holder.is_not(None), leases.c.expires_us > now_us)
    return int(conn.execute(stmt).scalar_one())
