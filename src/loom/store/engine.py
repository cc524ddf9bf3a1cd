"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

SQLite: WAL, ``busy_timeout``, foreign keys ON, and write transactions that take the write
lock up front (``BEGIN IMMEDIATE``), so a check-then-write can never interleave with another
writer. Small writes run inline on the event loop thread, one at a time (no lock waits
inside the process, no thread hand-off); writes that may store megabytes run on one writer
thread, and writes arriving meanwhile queue behind them; reads run concurrently on a small
pool; WAL checkpoints run on a thread of their own (:class:`_Checkpointer`), not in the
commit that happens to cross the WAL's size threshold. One server process per SQLite file:
several would stall each other's whole event loops on the write lock, so
``serve --workers N > 1`` is refused on SQLite (:mod:`loom.settings`).

PostgreSQL: READ COMMITTED transactions; correctness comes from row locks
(``SELECT … FOR UPDATE [SKIP LOCKED]``) and conditional writes issued by the store functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from psycopg.pq import ConnStatus, TransactionStatus
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from loom import metrics
from loom.store import _loopio, _raw

__all__ = [
    "APPENDED",
    "Database",
    "application_name",
    "boot_id",
    "normalize_database_url",
    "redact_url",
]

T = TypeVar("T")

# PostgreSQL writes run on the event loop (Database.run_write(on_loop=True)): the connection
# reserved for the current request, and the transaction open on it (per asyncio task).
_LOOP_CONN: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "loom_loop_conn", default=None
)
_LOOP_TX: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "loom_loop_tx", default=None
)
log = logging.getLogger("loom.store")

_SQLITE_BUSY_TIMEOUT_MS = 10_000
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
_CHECKPOINT_EVERY = 0.25  # seconds
_RESTART_EVERY = 5.0  # seconds: the checkpointer's WAL restarts (_restart_wal) at most this often
_WRITE_SECONDS = metrics.DB_TRANSACTION.labels("write")
_READ_SECONDS = metrics.DB_TRANSACTION.labels("read")
# SQLSTATEs of PostgreSQL lock trouble: lock_not_available, deadlock_detected,
# serialization_failure.
_PG_BUSY = frozenset({"55P03", "40P01", "40001"})


def _busy(exc: DBAPIError) -> bool:
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    return getattr(orig, "sqlstate", None) in _PG_BUSY


_BOOT = [secrets.token_hex(6)]


def boot_id() -> str:
    """This process's boot (random, new at every start, and new in a forked child: a process
    forked from a loaded interpreter, as ``gunicorn --preload`` does, is a boot of its own)."""
    return _BOOT[0]


def application_name() -> str:
    """The ``application_name`` of every PostgreSQL session this process opens: another
    process tells from ``pg_stat_activity`` whether any session of this boot is still
    connected (see :func:`loom.store.idempotency.live_boots`)."""
    return f"loom:{_BOOT[0]}"


def _new_boot() -> None:
    _BOOT[0] = secrets.token_hex(6)


os.register_at_fork(after_in_child=_new_boot)


# Key in ``Connection.info``: the project ids whose audit log this transaction appended to
# (set by ``loom.store.events.append_events``).
APPENDED = "loom.appended"


def normalize_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for logs and startup output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is not printed at all
        return "<unparseable database url>"


class Database:
    """An engine plus the executors that run blocking database work off the event loop."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = normalize_database_url(url)
        self.kind = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self.application_name = application_name()
        self.engine: Engine = self._make_engine(pool_size)
        self.inline_writes = self.kind == "sqlite"
        # SQLite: small writes run inline on the event loop; writes that may store megabytes
        # run on one writer thread (``run_write(offload=True)``).
        self._write_pool = ThreadPoolExecutor(
            max_workers=1 if self.inline_writes else pool_size, thread_name_prefix="loom-w"
        )
        self._read_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loom-r")
        # PostgreSQL: connections of the writes that run on the event loop (lease requests),
        # each used by one request at a time (run_write(on_loop=True)).
        self._loop_max = pool_size
        self._loop_open = 0
        self._loop_free: list[Connection] = []
        self._loop_waiters: deque[asyncio.Future[None]] = deque()
        self._local = threading.local()
        self._writers: list[Connection] = []
        self._writers_lock = threading.Lock()
        self._offloaded = 0  # SQLite writes queued on the writer thread (event loop only)
        # SQLite: writes waiting for this turn's group commit (event loop only; run_write).
        self._batch: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] | None
        self._batch = None
        # Called (from the committing thread) with the project ids whose audit log a write
        # transaction appended to, once it has committed: the event stream's wake-up.
        self.on_events: Callable[[set[int]], None] | None = None
        # SQLite: WAL checkpoints run on a thread of their own, not inside whichever commit
        # crosses the WAL's size threshold (on the event loop, that cost a claim ~60 µs on
        # average, in spikes of milliseconds).
        self._checkpointer = _Checkpointer(self.engine) if self.kind == "sqlite" else None

    def _make_engine(self, pool_size: int) -> Engine:
        if self.kind == "sqlite":
            _create_private_file(self.url)
            engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"check_same_thread": False, "timeout": 10},
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        engine = create_engine(
            self.url,
            # Held for good: a connection per writer thread and per loop writer (below), and
            # the readers'; the overflow serves short-lived uses (migrations, backups).
            pool_size=2 * pool_size + 4,
            max_overflow=pool_size,
            pool_pre_ping=True,
            # psycopg's automatic preparation off: loom.store._raw prepares the hot
            # statements itself, under names psycopg's DEALLOCATE ALL would drop.
            connect_args={"application_name": self.application_name, "prepare_threshold": None},
        )
        # A statement through SQLAlchemy on the event loop blocks it (counted for the tests).
        event.listen(engine, "before_cursor_execute", _before_sqlalchemy_statement)
        return engine

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception.

        Re-entrant per thread: a use case called inside another's transaction (for example
        inside the idempotency wrapper) joins it, so both commit or roll back together.
        Each writer thread keeps its own connection (no pool round trip per transaction).
        """
        current: Connection | None = getattr(self._local, "conn", None) or _LOOP_TX.get()
        if current is not None:
            yield current
            return
        loop_conn = _LOOP_CONN.get() if _loopio.on_loop() else None
        conn = loop_conn or self._writer_connection()
        started = time.perf_counter()
        try:
            if self.kind == "sqlite":
                with self._sqlite_transaction(conn):
                    yield conn
            elif loop_conn is not None:
                with self._on_loop_transaction(conn):
                    yield conn
            else:
                with conn.begin():
                    self._local.conn = conn
                    try:
                        yield conn
                    finally:
                        self._local.conn = None
        except DBAPIError as exc:
            conn.info.pop(APPENDED, None)
            if _busy(exc):
                metrics.DB_BUSY.inc()
            if loop_conn is None and (
                exc.connection_invalidated or conn.invalidated or conn.closed
            ):
                self._drop_writer_connection()
            raise
        except BaseException:
            conn.info.pop(APPENDED, None)
            raise
        finally:
            _WRITE_SECONDS.observe(time.perf_counter() - started)
        appended = conn.info.pop(APPENDED, None)
        if appended and self.on_events is not None:
            self.on_events(appended)

    @contextlib.contextmanager
    def _on_loop_transaction(self, conn: Connection) -> Iterator[None]:
        """PostgreSQL, on the event loop: the transaction's BEGIN goes with its first
        statement and its COMMIT or ROLLBACK is sent without blocking the loop, all straight
        on libpq (:func:`loom.store._raw.end_on_loop`). A SQLAlchemy statement inside starts
        SQLAlchemy's own bookkeeping of the same transaction (autobegin); its commit or
        rollback, after ours, finds the connection idle and sends nothing."""
        token = _LOOP_TX.set(conn)
        try:
            yield
            _raw.end_on_loop(conn, commit=True)
            if conn.in_transaction():
                conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection is dropped on return
                _raw.end_on_loop(conn, commit=False)
                if conn.in_transaction():
                    conn.rollback()
            raise
        finally:
            _LOOP_TX.reset(token)

    @contextlib.contextmanager
    def _sqlite_transaction(self, conn: Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` straight on the driver connection.

        SQLAlchemy's own transaction bookkeeping costs ~35 µs per transaction, a tenth of a
        claim. Core statements run inside still work: SQLAlchemy then "autobegins" (the begin
        listener sees the open transaction and emits nothing) and is committed or rolled back
        here with the rest.
        """
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        started = time.perf_counter()
        try:
            dbapi.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            metrics.DB_BUSY.inc()
            raise
        metrics.DB_LOCK_WAIT.observe(time.perf_counter() - started)
        self._local.conn = conn
        try:
            yield
        except BaseException:
            self._local.conn = None
            if conn.in_transaction():
                conn.rollback()
            else:
                dbapi.rollback()
            raise
        self._local.conn = None
        if conn.in_transaction():
            conn.commit()
        else:
            dbapi.commit()

    def _writer_connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "writer", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            conn.execution_options(loom_write=True)
            self._local.writer = conn
            with self._writers_lock:
                self._writers.append(conn)
        return conn

    def _drop_writer_connection(self) -> None:
        conn: Connection | None = getattr(self._local, "writer", None)
        self._local.writer = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot); inside a write, the write's own."""
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        finally:
            _READ_SECONDS.observe(time.perf_counter() - started)

    async def run_write(
        self,
        fn: Callable[..., T],
        *args: Any,
        offload: bool = False,
        batch: bool = False,
        on_loop: bool = False,
    ) -> T:
        """Run a write use case.

        SQLite: inline on the event loop thread. Writes are serialised by the database lock
        anyway and take a fraction of a millisecond; running them inline avoids a thread
        hand-off and GIL ping-pong per request (measured: the single biggest cost of a claim).
        ``offload`` (writes that may store megabytes: committing 1.4 MB takes ~60 ms) runs on
        the single writer thread instead, and every write arriving while one is queued
        there follows it, so the event loop never waits for a lock its own process holds.
        ``batch`` (small writes that are one transaction each, such as unkeyed lease
        requests): the writes that arrive within one turn of the event loop share one
        transaction (group commit, :meth:`_flush`), each inside its own savepoint, so each
        still takes effect whole or not at all, and each caller is answered only after the
        shared commit. PostgreSQL: on a pool of writer threads (network round trips must not
        block the loop).

        ``on_loop`` (PostgreSQL; use cases whose statements are all ``fast`` ones of
        :mod:`loom.store._raw`, the lease requests): on the event loop thread, in a greenlet
        whose round trips are awaited on the loop (:mod:`loom.store._loopio`), not on a
        writer thread. Other requests go on while it waits for PostgreSQL. On SQLite ``on_loop``
        changes nothing.
        """
        if on_loop and not self.inline_writes and not offload:
            return await self._on_loop(fn, args)
        if self.inline_writes and not offload and not self._offloaded:
            if batch:
                return await self._batched(fn, args)
            return fn(*args)
        loop = asyncio.get_running_loop()
        if not self.inline_writes:
            return await loop.run_in_executor(self._write_pool, functools.partial(fn, *args))
        self._offloaded += 1
        try:
            return await loop.run_in_executor(self._write_pool, functools.partial(fn, *args))
        finally:
            self._offloaded -= 1

    async def _batched(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._batch is None:
            self._batch = []
            loop.call_soon(self._flush)
        self._batch.append((fn, args, future))
        return cast(T, await future)

    def _flush(self) -> None:
        """Run the writes gathered in this turn of the event loop in one transaction.

        Each runs inside a savepoint: one that raises is rolled back to its savepoint (its
        caller gets the exception) and the others go on. Then one ``COMMIT`` for all, and
        only then are the callers answered: a write is acknowledged when it is durable, as
        before; what is shared is the ``BEGIN IMMEDIATE`` and the ``COMMIT`` (about a fifth
        of a lease request's server time). If the commit itself fails, nothing of the batch
        was written and every caller gets that error.
        """
        items, self._batch = self._batch or [], None
        if self._offloaded:
            # A large write is queued on the writer thread: these follow it there.
            for fn, args, future in items:
                _chain(asyncio.ensure_future(self.run_write(fn, *args, offload=True)), future)
            return
        try:
            if len(items) == 1:
                fn, args, future = items[0]
                _settle(future, fn, args)
            else:
                self._commit_batch(items)
        except BaseException as exc:  # nothing may leave a caller waiting for ever
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    def _commit_batch(
        self, items: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]]
    ) -> None:
        outcomes: list[tuple[bool, Any]] = []
        conn = self._writer_connection()
        started = time.perf_counter()
        try:
            with self._sqlite_transaction(conn):
                dbapi = conn.connection.dbapi_connection
                assert dbapi is not None
                for fn, args, _ in items:
                    dbapi.execute("SAVEPOINT loom_write")
                    try:
                        value = fn(*args)
                    except Exception as exc:
                        dbapi.execute("ROLLBACK TO loom_write")
                        dbapi.execute("RELEASE loom_write")
                        outcomes.append((False, exc))
                    else:
                        dbapi.execute("RELEASE loom_write")
                        outcomes.append((True, value))
        except Exception as exc:  # BEGIN or COMMIT: nothing of the batch was written
            conn.info.pop(APPENDED, None)
            raw = conn.connection.dbapi_connection
            with contextlib.suppress(Exception):
                if raw is not None and raw.in_transaction:  # a failed COMMIT leaves it open
                    raw.rollback()
            if isinstance(exc, DBAPIError) and _busy(exc):
                metrics.DB_BUSY.inc()
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            _WRITE_SECONDS.observe(time.perf_counter() - started)
        appended = conn.info.pop(APPENDED, None)
        if appended and self.on_events is not None:
            self.on_events(appended)
        for (ok, value), (_, _, future) in zip(outcomes, items, strict=True):
            if future.done():
                continue  # the caller went away (cancelled)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def _on_loop(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = await self._take_loop_connection()
        token = _LOOP_CONN.set(conn)
        lost = True
        try:
            value = await _loopio.run_on_loop(fn, *args)
            lost = False
            return value
        except DBAPIError as exc:
            lost = isinstance(exc, OperationalError)  # the connection may be gone
            raise
        except Exception:
            lost = False  # a use case's refusal (conflict, not found): rolled back
            raise
        finally:
            _LOOP_CONN.reset(token)
            metrics.DB_LOOP_WRITES.inc()
            self._give_back(conn, lost=lost)

    async def _take_loop_connection(self) -> Connection:
        loop = asyncio.get_running_loop()
        while True:
            if self._loop_free:
                return self._loop_free.pop()
            if self._loop_open < self._loop_max:
                self._loop_open += 1
                try:
                    # Connecting blocks: on a reader thread (a connection's first use is
                    # from the loop, after this).
                    return await loop.run_in_executor(self._read_pool, self.engine.connect)
                except BaseException:
                    self._loop_open -= 1
                    raise
            waiter = loop.create_future()
            self._loop_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_loop_waiter()  # it was woken for us: pass it on
                raise

    async def warm_loop_connections(self) -> int:
        """PostgreSQL: open the connections that lease requests use on the event loop before
        the first requests need them, each with the ``fast`` statements prepared; returns
        how many were opened. Without it the first burst after a start (a fleet of agents
        allocating at once) waited for up to ``pool_size`` connections to be opened, and for
        each new backend to load the tables' catalog entries and plan its statements.
        Failures are not errors: a connection that cannot be opened now is opened on
        demand, as before. It never takes PostgreSQL's last connections: it opens at most
        what :meth:`_spare_connections` leaves (best effort: processes starting together
        each see the same count). SQLite: nothing to do."""
        if self.inline_writes:
            return 0
        loop = asyncio.get_running_loop()
        spare = await loop.run_in_executor(self._read_pool, self._spare_connections)
        wanted = min(self._loop_max - self._loop_open, spare)
        if wanted <= 0:
            return 0
        self._loop_open += wanted
        opened = await asyncio.gather(
            *(loop.run_in_executor(self._read_pool, self._warm_connection) for _ in range(wanted)),
            return_exceptions=True,
        )
        count = 0
        for conn in opened:
            if isinstance(conn, BaseException):
                self._loop_open -= 1
            else:
                self._loop_free.append(conn)
                count += 1
            self._wake_loop_waiter()
        return count

    def _spare_connections(self) -> int:
        """How many more connections PostgreSQL accepts now, minus a reserve for everyone
        else (a quarter of ``max_connections``, at least 10) and its superuser slots."""
        with self.engine.connect() as conn:
            limit, reserved, used = conn.execute(_HEADROOM).one()
        return max(0, int(limit) - int(reserved) - int(used) - max(10, int(limit) // 4))

    def _warm_connection(self) -> Connection:
        conn = self.engine.connect()
        try:
            dbapi: Any = conn.connection.dbapi_connection
            if dbapi.pgconn.transaction_status == TransactionStatus.IDLE:
                _raw.prepare_known(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.invalidate()
                conn.close()
            raise
        return conn

    def _give_back(self, conn: Connection, *, lost: bool) -> None:
        """Keep a loop connection for the next request, or drop it if it is not clean (or
        the request ended in a connection failure, or was cancelled mid-way). A connection
        still sending a commit group (:func:`loom.store._raw.commit_alone`; its own request
        was cancelled) is given back when the group is done."""
        group = _raw.group_running(conn)
        if group is not None:
            group.add_done_callback(lambda _: self._give_back(conn, lost=lost))
            return
        dbapi: Any = None if conn.closed or conn.invalidated else conn.connection.dbapi_connection
        pg = None if dbapi is None else dbapi.pgconn
        clean = (
            pg is not None
            and pg.status == ConnStatus.OK
            and pg.transaction_status == TransactionStatus.IDLE
        )
        if clean and not lost:
            self._loop_free.append(conn)
        else:
            self._loop_open -= 1
            with contextlib.suppress(Exception):
                conn.invalidate()  # closes the DB-API connection, no round trip
                conn.close()
        self._wake_loop_waiter()

    def _wake_loop_waiter(self) -> None:
        while self._loop_waiters:
            waiter = self._loop_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, functools.partial(fn, *args))

    def ping(self) -> None:
        """Raise if a trivial query fails."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._write_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        with self._writers_lock:
            for conn in self._writers:
                with contextlib.suppress(Exception):
                    conn.close()
            self._writers.clear()
        for conn in self._loop_free:
            with contextlib.suppress(Exception):
                conn.close()
        self._loop_free.clear()
        self.engine.dispose()


_HEADROOM = text(
    "SELECT current_setting('max_connections')::int,"
    " current_setting('superuser_reserved_connections')::int,"
    " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
)


def _before_sqlalchemy_statement(conn: Connection, *_: Any) -> None:
    # Writes held back on the loop go first (loom.store._raw.execute_deferred), then the
    # statement, which blocks the loop (counted).
    _raw.flush_deferred(conn)
    _loopio.note_blocking()


def _create_private_file(url: str) -> None:
    """Create a missing SQLite database file with mode 0600 (SQLite would make it 0644, and
    it gives its -wal/-shm files the database file's mode)."""
    try:
        name = make_url(url).database
    except Exception:  # an unparseable URL fails at create_engine with a clear message
        return
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if path.exists() or not path.parent.is_dir():
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is off).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints are the checkpointer thread's job (Database._checkpointer); after one, a
    # WAL file grown by a burst is cut back to this size.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if dbapi.in_transaction:
        return  # joined a transaction opened by Database._sqlite_transaction
    if conn.get_execution_options().get("loom_write"):
        dbapi.execute("BEGIN IMMEDIATE")
    else:
        dbapi.execute("BEGIN")


class _Checkpointer:
    """SQLite: a daemon thread that runs a ``PASSIVE`` WAL checkpoint every
    :data:`_CHECKPOINT_EVERY` seconds (one that finds nothing new to copy costs a few
    microseconds and no ``fsync``).

    ``PASSIVE`` never waits for (or blocks) a writer or reader: it copies what it can and the
    next round does the rest. sqlite3 releases the GIL while it runs, so the copying and the
    ``fsync`` of the database file happen beside the event loop instead of inside a commit
    on it. Each server connection has ``wal_autocheckpoint=0``; other processes opening the
    file (the CLI) keep SQLite's default, and the last connection to close checkpoints.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._restarted_at: float | None = None
        self._last_frames = -1
        self._thread = threading.Thread(target=self._run, name="loom-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_CHECKPOINT_EVERY):
            try:
                self.round()
            except Exception:  # a closed engine at shutdown, a locked file: next round
                if self._stop.is_set():
                    return
                log.debug("WAL checkpoint failed", exc_info=True)

    def round(self) -> None:
        """One checkpoint, and the WAL restart when it is due (the thread's every round)."""
        with self._engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            busy, frames, copied = dbapi.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            complete = busy == 0 and copied == frames
            big = frames * (_page_size(dbapi) + 24) > _WAL_SIZE_LIMIT
            # During a burst, a restart is tried at most every _RESTART_EVERY seconds
            # (readers on old frames keep it from happening); once the WAL has stopped
            # growing, at once: the next write would otherwise do it, on the event loop (a
            # burst's end is when requests come back).
            settled, self._last_frames = frames == self._last_frames, frames
            due = (
                self._restarted_at is None
                or settled
                or time.monotonic() - self._restarted_at > _RESTART_EVERY
            )
            if complete and big and due:
                self._restarted_at = time.monotonic()
                _restart_wal(dbapi)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _page_size(dbapi: Any) -> int:
    return int(dbapi.execute("PRAGMA page_size").fetchone()[0])


def _restart_wal(dbapi: Any) -> None:
    """Make the first write after a complete checkpoint of a WAL over its size limit, here.

    That write starts the WAL over and cuts the file back to ``journal_size_limit``, which
    takes long for a big file (about half a second at 1.2 GB on the development machine,
    after a burst of a million events). Left to the next request, it stalled a commit on the
    event loop; this thread makes it with a write that changes nothing (``user_version``
    set to its own value). Readers still on old WAL frames keep the WAL from starting over:
    the write then adds one frame and a later round tries again."""
    version = int(dbapi.execute("PRAGMA user_version").fetchone()[0])
    dbapi.execute("BEGIN IMMEDIATE")
    try:
        dbapi.execute(f"PRAGMA user_version = {version}")
    except BaseException:
        dbapi.execute("ROLLBACK")
        raise
    dbapi.execute("COMMIT")


def _settle(future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run one write inline and put its outcome in ``future``."""
    try:
        value = fn(*args)
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(value)


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """Copy ``source``'s outcome to ``target`` when it has one."""

    def copy(done: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
