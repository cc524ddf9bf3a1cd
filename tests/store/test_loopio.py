"""loom.store._loopio on its own: synchronous code in reused greenlets on the event loop, and
round trips read by the loop's callbacks on a real PostgreSQL connection."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.pq import ExecStatus

from loom.store import _loopio

_SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


def test_greenlets_are_reused_and_each_call_keeps_its_own_outcome_and_context() -> None:
    async def pause(value: str) -> str:
        await asyncio.sleep(0)
        return value

    def work(tag: str, fail: bool) -> str:
        before = _SEEN.get()
        _SEEN.set(tag)  # set in the caller's context, as in a coroutine of the caller
        echoed = _loopio.await_(pause(tag))
        if fail:
            raise KeyError(tag)
        return f"{before}->{echoed}"

    async def call(tag: str, fail: bool) -> str:
        _SEEN.set(f"task-{tag}")
        try:
            return await _loopio.run_on_loop(work, tag, fail)
        except KeyError as exc:
            return f"failed {exc.args[0]} (seen {_SEEN.get()})"

    async def scenario() -> tuple[list[str], int]:
        first = await asyncio.gather(*(call(str(i), i % 3 == 0) for i in range(6)))
        pooled = len(_loopio._POOL.idle)
        again = await asyncio.gather(*(call(str(i), False) for i in range(6, 9)))
        return [*first, *again], pooled

    _loopio._POOL.idle.clear()  # (this thread's earlier tests may have left some)
    answers, pooled = asyncio.run(scenario())
    assert answers == [
        "failed 0 (seen 0)",
        "task-1->1",
        "task-2->2",
        "failed 3 (seen 3)",
        "task-4->4",
        "task-5->5",
        "task-6->6",
        "task-7->7",
        "task-8->8",
    ]
    assert pooled == 6  # each greenlet went back, a failure's as well


def test_a_cancelled_call_unwinds_in_its_greenlet_which_is_reused_afterwards() -> None:
    unwound: list[str] = []

    def work() -> None:
        try:
            _loopio.await_(asyncio.sleep(3600))
        finally:
            unwound.append("finally ran")

    async def scenario() -> tuple[int, str]:
        task = asyncio.ensure_future(_loopio.run_on_loop(work))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pooled = len(_loopio._POOL.idle)
        return pooled, await _loopio.run_on_loop(lambda: "next call")

    _loopio._POOL.idle.clear()
    pooled, answer = asyncio.run(scenario())
    assert unwound == ["finally ran"]
    assert (pooled, answer) == (1, "next call")


@pytest.fixture
def pg(pg_url: str) -> Iterator[Any]:
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(url, autocommit=True)
    conn.pgconn.nonblocking = 1
    try:
        yield conn.pgconn
    finally:
        conn.pgconn.finish()  # a cancelled round trip leaves its query running: just drop it
        conn.close()


def test_a_pipeline_round_trip_returns_every_result_then_the_connection_is_free(pg: Any) -> None:
    async def scenario() -> list[Any]:
        statements: list[_loopio.Statement] = [
            (b"SELECT $1::int + 1", [b"41"]),
            (b"SELECT 1/0", []),
            (b"SELECT 2", []),
        ]
        results = await _loopio.execute(pg, statements)
        again = await _loopio.execute(pg, [(b"SELECT 'alone'", [])])
        return [*results, *again]

    results = asyncio.run(scenario())
    assert [r.status for r in results] == [
        ExecStatus.TUPLES_OK,
        ExecStatus.FATAL_ERROR,
        ExecStatus.PIPELINE_ABORTED,
        ExecStatus.TUPLES_OK,
    ]
    assert results[0].get_value(0, 0) == b"42"
    assert results[3].get_value(0, 0) == b"alone"


def test_a_cancelled_round_trip_stops_watching_the_socket(pg: Any) -> None:
    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        pending = _loopio.execute(pg, [(b"SELECT pg_sleep(0.2)", [])])
        await asyncio.sleep(0)
        pending.cancel()
        await asyncio.sleep(0)
        # Nothing watches the socket any more: the caller may close the connection.
        watched = loop.remove_reader(pg.socket) or loop.remove_writer(pg.socket)
        return pending.cancelled(), watched

    assert asyncio.run(scenario()) == (True, False)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_round_trip_on_a_connection_postgresql_terminated_fails_instead_of_hanging(
    pg: Any, pg_url: str, loop_kind: str
) -> None:
    """PostgreSQL terminated the session while it was idle (a restart, a pooler, an
    administrator): its farewell is read first, the end of the stream later. uvloop's libuv
    stops watching a socket that reported an error after one callback, so a reader that is
    not armed again waits for ever; the round trip must fail (the caller answers 503 and
    drops the connection)."""
    import uvloop

    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pg.backend_pid,))

    async def scenario() -> None:
        await asyncio.sleep(0.1)  # the farewell and the end of the stream have arrived
        with pytest.raises(psycopg.OperationalError, match="terminat"):
            await asyncio.wait_for(_loopio.execute(pg, [(b"SELECT 1", [])]), 10)

    (uvloop.run if loop_kind == "uvloop" else asyncio.run)(scenario())


def test_a_statement_larger_than_the_socket_buffer_is_sent_while_the_loop_runs(pg: Any) -> None:
    """libpq cannot hand the kernel 16 MB at once: the rest is sent as the socket drains (the
    writer callback), and the result read after that."""
    big = b"x" * (16 * 1024 * 1024)

    async def scenario() -> bytes:
        (result,) = await _loopio.execute(pg, [(b"SELECT length($1::text)", [big])])
        return bytes(result.get_value(0, 0))

    assert asyncio.run(scenario()) == str(len(big)).encode()
