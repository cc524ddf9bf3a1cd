"""Whole-database figures for ``/metrics`` (computed at scrape time)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, func, select

from loom.store.schema import leases

__all__ = ["analyze_stale", "count_active_leases"]


def count_active_leases(conn: Connection, now_us: int) -> int:
    stmt = select(func.count()).where(leases.c.holder.is_not(None), leases.c.expires_us > now_us)
    return int(conn.execute(stmt).scalar_one())


# PostgreSQL: non-empty tables whose planner statistics are missing (never analysed) or
# stale by autovacuum's default rule (modified rows > 50 + 10% of the analysed row count),
# counting ``written`` rows the caller just committed (the cumulative statistics may not
# have them yet; they may also arrive after the ANALYZE, which can cost one extra ANALYZE).
_STALE = (
    "SELECT c.relname FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
    " WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)"
    " AND pg_relation_size(c.oid) > 0 AND (c.reltuples < 0"
    " OR COALESCE(s.n_mod_since_analyze, 0) + %s > 50 + 0.1 * c.reltuples)"
)


def analyze_stale(conn: Connection, tables: Sequence[str], written: int) -> list[str]:
    """``ANALYZE`` the tables among ``tables`` whose statistics a bulk write left missing or
    stale (PostgreSQL; a no-op on SQLite, whose planner reads no statistics here). Without
    them the planner assumes a few dozen rows and, for example, sorts a whole 50,000-change
    table for a page of 100; autovacuum catches up only later, or never when it is off.
    Returns the tables analysed."""
    if conn.dialect.name != "postgresql":
        return []
    stale = sorted(r[0] for r in conn.exec_driver_sql(_STALE, (list(tables), written)))
    for table in stale:
        conn.exec_driver_sql(f'ANALYZE "{table}"')
    return stale
