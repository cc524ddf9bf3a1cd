"""PostgreSQL: ``NOTIFY`` the other server processes of this one's commits, ``LISTEN`` for
theirs (the event stream's cross-process wake-ups, :mod:`loom.api._hub`).

Two tasks on the server's event loop, each with a connection of its own, opened by psycopg
and then spoken to through libpq directly (:mod:`loom.store._loopio`: a statement's results
read by the event loop's reader callback; the listener's notifications read by a reader
callback on its socket), not through psycopg's cursors and waits. Measured before this
change, with ``bench/leases.py --backends postgresql`` with the relay and without it (two
pairs): the relay as a whole cost about 12 µs of the server's CPU per claim+release
request. (They were threads before that: every NOTIFY then woke two of them, the notifier
and the listener hearing its own process's notification, and each wake-up took the
interpreter from the loop thread.)

A wake-up is only a hint: every subscriber's channel also re-reads the log on a timer, so a
lost notification delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from loom.store import _loopio, _raw

__all__ = ["CHANNEL", "NOTIFY_EVERY", "PgRelay"]

_log = logging.getLogger("loom.stream")

CHANNEL = "loom_events"
NOTIFY_EVERY = 0.01
"""Seconds between two NOTIFYs of a process at most: a burst of commits is one wake-up."""

_NOTIFY = b"SELECT pg_notify($1, $2)"
_LISTEN = f"LISTEN {CHANNEL}".encode()


class PgRelay:
    """The relay of one server process (:meth:`start` on its event loop)."""

    def __init__(
        self, sqlalchemy_url: str, wake: Callable[[Iterable[int] | None], None], *, app_name: str
    ) -> None:
        from sqlalchemy.engine import make_url

        self._dsn = (
            make_url(sqlalchemy_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self._wake = wake
        # Every session of this process carries the process's name (loom.store.engine).
        self._app_name = app_name
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()  # mark() runs in whichever thread committed
        self._pending = asyncio.Event()
        self._own_pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start both tasks (called on the event loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tasks = [
            asyncio.create_task(self._notify_loop(), name="loom-notify"),
            asyncio.create_task(self._listen_loop(), name="loom-listen"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def mark(self, pids: set[int]) -> None:
        """Tell the other processes about ``pids`` (from any thread)."""
        with self._dirty_lock:
            self._dirty |= pids
        if threading.get_ident() == self._loop_thread:
            self._pending.set()
        elif self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._pending.set)

    async def _connect(self) -> Any:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, application_name=self._app_name
        )
        conn.pgconn.nonblocking = 1
        return conn

    async def _notify_loop(self) -> None:
        while True:
            try:
                async with await self._connect() as conn:
                    pg = conn.pgconn
                    self._own_pid = pg.backend_pid
                    while True:
                        await self._pending.wait()
                        self._pending.clear()
                        with self._dirty_lock:
                            pids, self._dirty = self._dirty, set()
                        if pids:
                            payload = ",".join(str(p) for p in sorted(pids)).encode()
                            try:
                                await _run(conn, (_NOTIFY, [CHANNEL.encode(), payload]))
                            except Exception:  # sent again on the next connection
                                self.mark(pids)
                                raise
                            await asyncio.sleep(NOTIFY_EVERY)
            except Exception:  # reconnect; listeners re-read on their timer meanwhile
                _log.warning("event stream NOTIFY connection failed", exc_info=True)
                await asyncio.sleep(1.0)

    async def _listen_loop(self) -> None:
        while True:
            try:
                async with await self._connect() as conn:
                    pg = conn.pgconn
                    await _run(conn, (_LISTEN, []))
                    self._wake(None)  # (re)connected: anything may have been missed
                    await self._hear(pg)
            except Exception:
                _log.warning("event stream LISTEN connection failed", exc_info=True)
                await asyncio.sleep(1.0)

    async def _hear(self, pg: Any) -> None:
        """Wake the channels of the projects the other processes notify, as notifications
        arrive, until the connection fails (raised)."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pg.consume_input()
                pids: list[int] = []
                whole = False
                while (note := pg.notifies()) is not None:
                    if note.be_pid == self._own_pid:
                        continue  # this process's own NOTIFY
                    heard = [int(p) for p in note.extra.split(b",") if p.isdigit()]
                    pids.extend(heard)
                    whole = whole or not heard
                if whole:
                    self._wake(None)
                elif pids:
                    self._wake(pids)
                # Watch again (libuv stops watching a socket that reported an error, before
                # its end of stream is read: _loopio._Exchange does the same).
                loop.remove_reader(fd)
                loop.add_reader(fd, readable)
            except Exception as exc:
                loop.remove_reader(fd)  # libpq may have closed the socket: unwatch it now
                if not failed.done():
                    failed.set_exception(exc)

        fd = pg.socket
        loop.add_reader(fd, readable)
        try:
            await failed
        finally:
            loop.remove_reader(fd)


async def _run(conn: Any, statement: tuple[bytes, list[bytes | None]]) -> None:
    """Run one statement on the psycopg connection ``conn`` without blocking the loop;
    raise its error."""
    (result,) = await _loopio.execute(conn.pgconn, [statement])
    _raw.checked(result, conn)
