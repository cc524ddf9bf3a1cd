"""Synchronous database code run on the event loop without blocking it (PostgreSQL).

A lease request on PostgreSQL used to hop to a writer thread, and every round trip of its
transaction gave the GIL up and took it back from the busy event loop: that hand-off, not
the database, was most of Loom's CPU per PostgreSQL lease request (docs/scaling.md). The
lease use cases are synchronous code (the same on both engines, the rules decided in one
place), so instead of rewriting them as coroutines they run in a *greenlet* on the event
loop thread, the technique SQLAlchemy's own asyncio layer uses: when a statement has to
wait for PostgreSQL, :func:`await_` suspends the greenlet and hands an awaitable to
:func:`run_on_loop`, which awaits it on the loop and resumes the greenlet with the result.
Other requests run meanwhile; nothing blocks the loop.

Only libpq's non-blocking calls are made here (send, flush, consume input, read results),
on the connection's socket watched by the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import greenlet
from psycopg.pq import ExecStatus

from loom import metrics

__all__ = [
    "Prepare",
    "RunPrepared",
    "await_",
    "execute",
    "note_blocking",
    "on_loop",
    "run_on_loop",
]

T = TypeVar("T")


def note_blocking() -> None:
    """Count a statement that ran the blocking way while on the loop (it holds the loop for
    its round trip; correct, but the lease paths must not do it: tests check the count,
    ``loom_db_loop_blocking_statements``)."""
    if on_loop():
        metrics.DB_LOOP_BLOCKING.inc()


class _LoopGreenlet(greenlet.greenlet):  # type: ignore[misc]
    """A greenlet running synchronous code for a coroutine on the event loop."""


def on_loop() -> bool:
    """Whether the caller runs inside :func:`run_on_loop` (and may call :func:`await_`)."""
    return isinstance(greenlet.getcurrent(), _LoopGreenlet)


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` on the event loop from synchronous code in :func:`run_on_loop`."""
    current = greenlet.getcurrent()
    if not isinstance(current, _LoopGreenlet):
        raise RuntimeError("await_() outside run_on_loop()")
    return cast(T, current.parent.switch(awaitable))


async def run_on_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on this thread in a greenlet, awaiting what it hands to
    :func:`await_`. Its exceptions propagate; the current context (contextvars) is its."""
    child = _LoopGreenlet(fn, greenlet.getcurrent())
    child.gr_context = greenlet.getcurrent().gr_context
    value = child.switch(*args)
    while not child.dead:
        try:
            result = await value
        except BaseException as exc:  # delivered into the greenlet, where it is raised
            value = child.throw(exc)
        else:
            value = child.switch(result)
    return cast(T, value)


async def _ready(fd: int, *, write: bool) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await done
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _communicate(pg: Any, pipeline: bool) -> list[Any]:
    """Send what is buffered, then read the results: a statement's, or in a pipeline every
    statement's up to the sync point. An error result is returned, not raised: the caller
    checks."""
    fd = pg.socket
    while pg.flush():
        await _ready(fd, write=True)
    results: list[Any] = []
    while True:
        pg.consume_input()
        while not pg.is_busy():
            result = pg.get_result()
            if result is None:
                if not pipeline:
                    return results
                continue  # the end of one statement's results, in a pipeline
            if result.status == ExecStatus.PIPELINE_SYNC:
                return results
            results.append(result)
        await _ready(fd, write=False)


class Prepare(NamedTuple):
    """Prepare ``sql`` (``$n`` placeholders) as the named statement ``name``."""

    name: bytes
    sql: bytes


class RunPrepared(NamedTuple):
    """Run the prepared statement ``name`` with text parameters."""

    name: bytes
    values: list[bytes | None]


Statement = tuple[bytes, list[bytes | None]] | Prepare | RunPrepared
"""SQL with ``$n`` placeholders and its text parameters, or a named statement's step."""


def _send(pg: Any, statement: Statement) -> None:
    if isinstance(statement, RunPrepared):
        pg.send_query_prepared(statement.name, statement.values)
    elif isinstance(statement, Prepare):
        pg.send_prepare(statement.name, statement.sql)
    else:
        pg.send_query_params(*statement)


def execute(pg: Any, statements: Sequence[Statement]) -> Coroutine[Any, Any, list[Any]]:
    """Send ``statements`` on the non-blocking libpq connection ``pg`` now (one round trip
    for all of them: a libpq pipeline when there are several) and return the coroutine that
    reads their results; await it at once (the connection is busy until it is done). After
    a failing statement, the later ones' results are ``PIPELINE_ABORTED``."""
    if len(statements) == 1:
        _send(pg, statements[0])
        return _communicate(pg, pipeline=False)
    pg.enter_pipeline_mode()
    try:
        for statement in statements:
            _send(pg, statement)
        pg.pipeline_sync()
    except BaseException:
        with contextlib.suppress(Exception):  # the caller drops pg
            pg.exit_pipeline_mode()
        raise
    return _pipeline_results(pg)


async def _pipeline_results(pg: Any) -> list[Any]:
    try:
        results = await _communicate(pg, pipeline=True)
    except BaseException:
        with contextlib.suppress(Exception):  # results may be pending: the caller drops pg
            pg.exit_pipeline_mode()
        raise
    pg.exit_pipeline_mode()
    return results
