"""``fast`` statements (PostgreSQL: straight on libpq) read and write the same values as the
DB-API path, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import errors as pg_errors

from loom.store import _raw
from loom.store.engine import Database


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    """PostgreSQL only: on SQLite ``fast`` changes nothing."""
    database = Database(pg_url)
    yield database
    database.dispose()


ROUND = "SELECT ?::bigint, ?::boolean, ?::boolean, ?::text, ?::text, ?::int, ?::text"
VALUES = (2**62, True, False, "héllo ✓ 'quoted' \\ back", None, -7, "")


def test_values_round_trip_the_same_on_both_paths(pg: Database) -> None:
    fast, plain = _raw.SQL(ROUND, fast=True), _raw.SQL(ROUND)
    with pg.write() as conn:
        assert _raw.fetchone(conn, fast, VALUES) == VALUES
        assert _raw.fetchone(conn, plain, VALUES) == VALUES
        assert _raw.fetchall(conn, fast, VALUES) == [VALUES]


def test_a_fast_write_belongs_to_the_transaction(pg: Database) -> None:
    db = pg
    with db.write() as conn:
        _raw.execute(conn, _raw.SQL("CREATE TABLE IF NOT EXISTS fast_t (n bigint)"), ())
    insert = _raw.SQL("INSERT INTO fast_t (n) VALUES (?)", fast=True)
    count = _raw.SQL("SELECT count(*) FROM fast_t WHERE n = ?", fast=True)
    with pytest.raises(RuntimeError), db.write() as conn:  # rolled back: nothing stays
        assert _raw.execute(conn, insert, (41,)) == 1
        raise RuntimeError
    with db.write() as conn:
        assert _raw.execute(conn, insert, (42,)) == 1
    with db.write() as conn:
        assert _raw.fetchone(conn, count, (41,)) == (0,)
        assert _raw.fetchone(conn, count, (42,)) == (1,)
    # A failing statement raises psycopg's own exception class, and the transaction ends.
    with pytest.raises(pg_errors.UndefinedTable), db.write() as conn:
        _raw.execute(conn, _raw.SQL("INSERT INTO no_such_table VALUES (?)", fast=True), (1,))
    with db.write() as conn:
        assert _raw.fetchone(conn, count, (42,)) == (1,)
        _raw.execute(conn, _raw.SQL("DROP TABLE fast_t"), ())
