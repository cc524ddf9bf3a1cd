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
import threading
from collections.abc import Awaitable, Callable, Sequence
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


class _Outcome(NamedTuple):
    """What a pooled greenlet hands back when its function is done."""

    ok: bool
    value: Any


def _serve(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The body of a pooled greenlet: run each function it is handed, hand back its outcome,
    wait for the next one. Its frames unwind between two functions, so a greenlet is reused
    in a clean state; one torn down while suspended (``GreenletExit``) just ends."""
    current = greenlet.getcurrent()
    while True:
        try:
            outcome = _Outcome(True, fn(*args))
        except greenlet.GreenletExit:
            raise
        except BaseException as exc:  # handed to the caller, where it is raised
            outcome = _Outcome(False, exc)
        fn = args = None  # type: ignore[assignment]
        fn, args = current.parent.switch(outcome)
        outcome = None  # type: ignore[assignment]


class _Pool(threading.local):
    def __init__(self) -> None:
        self.idle: list[_LoopGreenlet] = []


_POOL = _Pool()
_POOL_MAX = 64
"""Idle greenlets kept per thread for reuse. A greenlet started anew costs ~10 µs more
than a reused one (measured): Python gives each new greenlet a data stack of its own, mapped
(``mmap``) on its first call and unmapped when it ends, each unmapping a TLB flush on every
CPU running the process's threads."""


async def run_on_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on this thread in a greenlet, awaiting what it hands to
    :func:`await_`. Its exceptions propagate; the current context (contextvars) is its."""
    here = greenlet.getcurrent()
    idle = _POOL.idle
    if idle:
        child = idle.pop()
        child.parent = here
    else:
        child = _LoopGreenlet(_serve, here)
    child.gr_context = here.gr_context
    value = child.switch(fn, args)
    try:
        while not isinstance(value, _Outcome):
            try:
                result = await value
            except BaseException as exc:  # delivered into the greenlet, where it is raised
                value = child.throw(exc)
            else:
                value = child.switch(result)
    finally:
        # Back to the pool once its function is done (not when it was torn down mid-way).
        if isinstance(value, _Outcome) and not child.dead and len(idle) < _POOL_MAX:
            child.gr_context = None
            idle.append(child)
    if value.ok:
        return cast(T, value.value)
    raise value.value


class _Exchange:
    """One round trip on a connection, read by the event loop's callbacks: its socket is
    watched for writing while libpq has data left to send, then for reading until every
    result is in; then :attr:`future` has them. Cancelling the future stops the watching
    (the caller then drops the connection: results may be pending)."""

    __slots__ = ("_fd", "_loop", "_pg", "_pipeline", "_results", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, pg: Any, pipeline: bool) -> None:
        self._loop = loop
        self._pg = pg
        self._pipeline = pipeline
        self._results: list[Any] = []
        self.future: asyncio.Future[list[Any]] = loop.create_future()
        self._fd = pg.socket
        if pg.flush():
            loop.add_writer(self._fd, self._writable)
        else:
            loop.add_reader(self._fd, self._readable)
        self.future.add_done_callback(self._ended)

    def _writable(self) -> None:
        try:
            if self._pg.flush():  # more to send: watch again (see _readable)
                self._loop.remove_writer(self._fd)
                self._loop.add_writer(self._fd, self._writable)
                return
        except BaseException as exc:
            self._fail(exc)
            return
        self._loop.remove_writer(self._fd)
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        pg = self._pg
        try:
            pg.consume_input()
            while not pg.is_busy():
                result = pg.get_result()
                if result is None:
                    if not self._pipeline:
                        break
                    continue  # the end of one statement's results, in a pipeline
                if result.status == ExecStatus.PIPELINE_SYNC:
                    break
                self._results.append(result)
            else:
                # More to come. Watch the socket again: libuv stops watching a socket that
                # reported an error (a connection PostgreSQL terminated: its last message
                # read here, the end of the stream still to come), and calls no one again.
                self._loop.remove_reader(self._fd)
                self._loop.add_reader(self._fd, self._readable)
                return
            self._stop()
            if self._pipeline:
                pg.exit_pipeline_mode()
        except BaseException as exc:
            self._fail(exc)
            return
        if not self.future.done():
            self.future.set_result(self._results)

    def _stop(self) -> None:
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)

    def _fail(self, exc: BaseException) -> None:
        self._stop()
        if self._pipeline:
            with contextlib.suppress(Exception):  # the caller drops pg
                self._pg.exit_pipeline_mode()
        if not self.future.done():
            self.future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise exc

    def _ended(self, future: asyncio.Future[list[Any]]) -> None:
        if future.cancelled():
            self._stop()
            if self._pipeline:
                with contextlib.suppress(Exception):  # results may be pending: pg is dropped
                    self._pg.exit_pipeline_mode()


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


def execute(pg: Any, statements: Sequence[Statement]) -> asyncio.Future[list[Any]]:
    """Send ``statements`` on the non-blocking libpq connection ``pg`` now (one round trip
    for all of them: a libpq pipeline when there are several) and return the future of
    their results, read by the event loop as they arrive (the connection is busy until it
    is done). An error result is returned, not raised: the caller checks. After a failing
    statement, the later ones' results are ``PIPELINE_ABORTED``."""
    loop = asyncio.get_running_loop()
    if len(statements) == 1:
        _send(pg, statements[0])
        return _Exchange(loop, pg, pipeline=False).future
    pg.enter_pipeline_mode()
    try:
        for statement in statements:
            _send(pg, statement)
        pg.pipeline_sync()
        return _Exchange(loop, pg, pipeline=True).future
    except BaseException:
        with contextlib.suppress(Exception):  # the caller drops pg
            pg.exit_pipeline_mode()
        raise
