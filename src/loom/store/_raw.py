"""Hand-written SQL on the DB-API connection, for the few hottest statements.

SQLAlchemy Core costs ~100 µs per statement here (measured: a 3-statement lease transaction
took ~520 µs through ``exec_driver_sql`` and ~57 µs with the bare sqlite3 driver), which
dominates a claim. The hot paths (lease rows, event appends, change lookups) therefore run
fixed SQL strings straight on the driver connection that the SQLAlchemy transaction already
holds — same connection, same transaction, same commit/rollback. Statements are written with
``?`` placeholders and converted once for psycopg (``%s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import ExecStatus, TransactionStatus
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from loom import metrics
from loom.store import _loopio

__all__ = [
    "GROUP_MAX",
    "SQL",
    "checked",
    "commit_alone",
    "end_on_loop",
    "execute",
    "execute_deferred",
    "executemany",
    "fetch_together",
    "fetchall",
    "fetchone",
    "flush_deferred",
    "fresh_on_loop",
    "group_running",
    "prepare_known",
]


class SQL:
    """A statement in qmark style, with its psycopg (format) twin precomputed.

    ``fast`` (PostgreSQL): run it straight on libpq (``psycopg.pq``: the GIL is released
    while it waits), parameters sent as text and results read as text, skipping psycopg's
    cursor machinery, as a named prepared statement of the session (prepared on its first
    use on each connection, :func:`_prepared`): PostgreSQL parses and plans it once, not on
    every run. For statements whose every parameter's type PostgreSQL infers from its
    context (a column it is compared with or stored in, a function argument) and whose
    results are integers, booleans and text: the lease statements. A ``fast`` statement is
    a long-lived object (a module constant or a cached one): its text is the key."""

    __slots__ = ("dollar", "fast", "format", "qmark")

    def __init__(self, qmark: str, *, fast: bool = False) -> None:
        self.qmark = qmark
        self.format = qmark.replace("%", "%%").replace("?", "%s")
        self.fast = fast
        parts = qmark.split("?")
        self.dollar = (
            parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        ).encode()
        if fast and len(_KNOWN) < _KNOWN_MAX:
            _KNOWN.setdefault(self.dollar, self)


_KNOWN: dict[bytes, SQL] = {}
"""The ``fast`` statements built so far (module constants first, at import), in order: what
:func:`prepare_known` prepares on a new connection."""
_KNOWN_MAX = 128

_OK = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK)
_INTEGERS = frozenset((20, 21, 23, 26))  # int8, int2, int4, oid
_BOOL = 16


def _param(value: Any) -> bytes | None:
    if value is None:
        return None
    if value is True:
        return b"t"
    if value is False:
        return b"f"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()


@contextlib.contextmanager
def _operational(statement: str) -> Iterator[None]:
    """A lost connection (or another operational failure) on libpq raises SQLAlchemy's
    ``OperationalError``, as the same statement through SQLAlchemy would: the API answers
    it 503 ``database_unavailable``."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise sa_exc.OperationalError(statement, None, exc) from exc


def _pg_fast(conn: Connection, stmt: SQL, params: Sequence[Any]) -> Any:
    """Run ``stmt`` on the connection's libpq handle, inside the transaction (``BEGIN``
    first when none is open, as psycopg itself would)."""
    with _operational(stmt.qmark):
        return _pg_fast_on(conn, stmt, params)


_PREPARED_MAX = 256
"""Named statements per connection; beyond them (statements built with a variable number of
parameters), a statement runs unnamed, planned each time."""
_NAMES = itertools.count(1)
_SESSIONS: weakref.WeakKeyDictionary[Any, dict[bytes, bytes]] = weakref.WeakKeyDictionary()


def _prepared(dbapi: Any) -> dict[bytes, bytes]:
    """The statements prepared on this DB-API connection's session: text → name.

    Only this module prepares statements: the engine turns psycopg's own automatic
    preparation off (``prepare_threshold=None``), so psycopg never sends the ``DEALLOCATE
    ALL`` with which it would drop these names after a rollback. A prepared statement
    outlives a rollback (it belongs to the session, not the transaction); a lost connection
    takes its names with it, and its replacement is a new DB-API connection. Names are never
    reused: a statement whose preparation may or may not have happened (the request failed
    mid-way) is prepared again under a new name."""
    names = _SESSIONS.get(dbapi)
    if names is None:
        names = _SESSIONS[dbapi] = {}
    return names


def _name_for(names: dict[bytes, bytes], stmt: SQL) -> tuple[bytes | None, bool]:
    """(the statement's name on this session or None: run unnamed, whether to prepare it)."""
    name = names.get(stmt.dollar)
    if name is not None:
        return name, False
    if len(names) >= _PREPARED_MAX:
        return None, False
    return b"loom_%d" % next(_NAMES), True


def prepare_known(conn: Connection) -> int:
    """Prepare every ``fast`` statement built so far on this (idle, PostgreSQL) connection
    that it has not prepared yet, blocking, in one round trip per statement; returns how
    many were prepared. For a connection opened ahead of need (warm-up, off the event
    loop): its first lease request then neither prepares nor loads the tables' catalog
    entries. A statement PostgreSQL refuses is skipped (it is prepared, or fails, on use)."""
    dbapi: Any = conn.connection.dbapi_connection
    pg = dbapi.pgconn
    names = _prepared(dbapi)
    prepared = 0
    with _operational("PREPARE"):
        for stmt in list(_KNOWN.values()):
            name, prepare = _name_for(names, stmt)
            if name is None or not prepare:
                continue  # prepared already, or the session holds its maximum
            if pg.prepare(name, stmt.dollar).status == ExecStatus.COMMAND_OK:
                names[stmt.dollar] = name
                prepared += 1
    return prepared


def _on_loop(
    conn: Connection,
    pending: list[tuple[SQL, list[bytes | None]]],
    last: bytes | None,
) -> list[Any]:
    """Send ``pending`` statements (each by name, prepared first where needed), then
    ``last`` (a plain command such as COMMIT) if any, in one round trip awaited on the loop,
    with BEGIN first when no transaction is open; returns the results after BEGIN's,
    checked: the first failure is raised."""
    dbapi: Any = conn.connection.dbapi_connection
    pg = dbapi.pgconn
    names = _prepared(dbapi)
    begin = pg.transaction_status == TransactionStatus.IDLE and not dbapi.autocommit
    statements, prepares, ran = _statements(names, pending, begin=begin)
    if last is not None:
        statements.append((last, []))
        ran.append(len(statements) - 1)
    results = _loopio.await_(_loopio.execute(pg, statements))
    _note_prepared(names, results, prepares)
    for result in results:
        checked(result, dbapi)
    return [results[index] for index in ran]


def _statements(
    names: dict[bytes, bytes],
    pending: Sequence[tuple[SQL, list[bytes | None]]],
    *,
    begin: bool = False,
) -> tuple[list[_loopio.Statement], list[tuple[int, bytes, bytes]], list[int]]:
    """The libpq steps for ``pending`` on a session with the prepared ``names``: (the steps,
    BEGIN first if ``begin``, each statement by name and prepared first where needed; the
    preparations as (result index, text, name); the result index of each statement)."""
    statements: list[_loopio.Statement] = [(b"BEGIN", [])] if begin else []
    prepares: list[tuple[int, bytes, bytes]] = []
    ran: list[int] = []
    for stmt, values in pending:
        name, prepare = _name_for(names, stmt)
        if name is None:
            statements.append((stmt.dollar, values))
        else:
            if prepare:
                prepares.append((len(statements), stmt.dollar, name))
                statements.append(_loopio.Prepare(name, stmt.dollar))
            statements.append(_loopio.RunPrepared(name, values))
        ran.append(len(statements) - 1)
    return statements, prepares, ran


def _note_prepared(
    names: dict[bytes, bytes], results: Sequence[Any], prepares: list[tuple[int, bytes, bytes]]
) -> None:
    for index, text, name in prepares:
        if results[index].status == ExecStatus.COMMAND_OK:
            names[text] = name


_DEFERRED = "loom_deferred_writes"
"""Key in a connection's ``info``: the writes :func:`execute_deferred` holds back."""


def execute_deferred(conn: Connection, stmt: SQL, params: Sequence[Any]) -> None:
    """Run a write whose row count nobody reads, as late as correctness allows.

    On the event loop (PostgreSQL, a ``fast`` statement) it is held back and sent in the
    same round trip as the transaction's next statement, or as its COMMIT: the last write
    of a lease request costs no round trip of its own. Statements reach PostgreSQL in the
    order they were run, so nothing observes the difference, except that the write's error,
    if any, is raised by that next statement or the commit (and the transaction rolls back
    as it would have). Elsewhere it runs at once."""
    if stmt.fast and _loopio.on_loop() and conn.dialect.name == "postgresql":
        conn.info.setdefault(_DEFERRED, []).append((stmt, [_param(p) for p in params]))
        return
    execute(conn, stmt, params)


def flush_deferred(conn: Connection) -> None:
    """Send the writes :func:`execute_deferred` held back on ``conn`` (before a statement
    that does not go through this module)."""
    pending = conn.info.pop(_DEFERRED, None)
    if pending:
        with _operational(pending[0][0].qmark):
            _on_loop(conn, pending, None)


def _pg_fast_on(conn: Connection, stmt: SQL, params: Sequence[Any]) -> Any:
    values = [_param(p) for p in params]
    if _loopio.on_loop():  # on the event loop (Database.run_write(on_loop=True)): never block it
        pending = conn.info.pop(_DEFERRED, None) or []
        return _on_loop(conn, [*pending, (stmt, values)], None)[-1]
    dbapi: Any = conn.connection.dbapi_connection
    pg = dbapi.pgconn
    if pg.transaction_status == TransactionStatus.IDLE and not dbapi.autocommit:
        checked(pg.exec_(b"BEGIN"), dbapi)
    names = _prepared(dbapi)
    name, prepare = _name_for(names, stmt)
    if name is None:
        return checked(pg.exec_params(stmt.dollar, values), dbapi)
    if prepare:
        checked(pg.prepare(name, stmt.dollar), dbapi)
        names[stmt.dollar] = name
    return checked(pg.exec_prepared(name, values), dbapi)


def fresh_on_loop(conn: Connection) -> bool:
    """Whether ``conn`` is PostgreSQL's, on the event loop, with no transaction begun and
    nothing held back: where :func:`commit_alone` may run."""
    if conn.dialect.name != "postgresql" or not _loopio.on_loop() or conn.info.get(_DEFERRED):
        return False
    dbapi: Any = conn.connection.dbapi_connection
    return bool(dbapi.pgconn.transaction_status == TransactionStatus.IDLE)


def commit_alone(
    conn: Connection, stmt: SQL, params: Sequence[Any], *, order: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    """Run the ``fast`` statement ``stmt`` as a transaction of its own (:func:`fresh_on_loop`
    must hold): sent without BEGIN, it is PostgreSQL's implicit transaction, committed
    before the answer comes back, in one round trip. Returns its rows. The connection is
    idle afterwards: the caller's transaction goes on with a new one (the next statement's
    BEGIN). A failure rolls back and is raised, as for any statement.

    Such statements of the requests that reach this point in one turn of the event loop are
    sent together, up to :data:`GROUP_MAX` at a time (a *commit group*, :func:`_group_answered`):
    one round trip and one commit for all of them. ``order`` is the statement's place in a
    group (the rows it locks, in the order every group locks them)."""
    assert stmt.fast  # (fresh_on_loop is the caller's check: it costs a few lookups)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    gathering = _GATHERING.get(loop)
    if gathering is None:
        gathering = _GATHERING[loop] = []
        loop.call_soon(_start_group, loop)
    gathering.append(_Member(conn, stmt, [_param(p) for p in params], order, future))
    if len(gathering) >= GROUP_MAX:
        _start_group(loop)  # sent now: PostgreSQL starts on it while the turn goes on
    with _operational(stmt.qmark):
        result = _loopio.await_(future)
        dbapi: Any = conn.connection.dbapi_connection
        return _pg_rows(checked(result, dbapi))


class _Member(NamedTuple):
    """One request's statement waiting in a commit group."""

    conn: Connection
    stmt: SQL
    values: list[bytes | None]
    order: tuple[Any, ...]
    future: asyncio.Future[Any]


GROUP_MAX = 4
"""A commit group is sent as soon as it holds this many statements, without waiting for the
end of the turn. Under load one turn of the event loop starts many requests; sending the
first ones' writes while the turn goes on lets PostgreSQL work on them in parallel with
Loom, and a group of 4 still saves 3 of 4 round trips and commits. Measured with
``bench/leases.py --backends postgresql`` (16 clients), claim ratio by group cap, two runs
each: 2: 0.46, 0.46; 3: 0.54, 0.51; 4: 0.47, 0.55, 0.49, 0.57; 6: 0.52, 0.48; 8: 0.46,
0.43; no cap (a whole turn, ~8 per group there): 0.43, 0.42."""

_GATHERING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Member]] = (
    weakref.WeakKeyDictionary()
)
"""Per event loop: the :func:`commit_alone` statements of this turn, not sent yet."""

_GROUP_TASK = "loom_commit_group"
"""Key in a connection's ``info``: the end of the commit group running on it (a future,
:func:`group_running`)."""


def group_running(conn: Connection) -> asyncio.Future[None] | None:
    """The end of the commit group still running on ``conn``, if any: the connection must
    not be given back (or closed) before it, even if its own request was cancelled
    meanwhile."""
    end: asyncio.Future[None] | None = conn.info.get(_GROUP_TASK)
    return None if end is None or end.done() else end


def _start_group(loop: asyncio.AbstractEventLoop) -> None:
    """Send the statements gathered in the turn that just ended (here, not one more turn
    later in a task: under load a turn of the loop is many requests' work); their answers
    are handed out by :func:`_group_answered` as soon as they arrive."""
    members = [m for m in _GATHERING.pop(loop, None) or () if not m.future.done()]
    if not members:
        return
    owner = members[0].conn  # every member's connection is idle; this one does the work
    members.sort(key=lambda m: m.order)
    try:
        sent = _send_group(owner, members)
    except Exception as exc:  # nothing was sent, or the connection is lost
        for member in members:
            if not member.future.done():
                member.future.set_exception(exc)
        return
    end: asyncio.Future[None] = loop.create_future()
    owner.info[_GROUP_TASK] = end
    sent.answers.add_done_callback(lambda _: _group_answered(owner, members, sent, end))


class _Sent(NamedTuple):
    """A commit group's statements, sent: the future of the round trip's answers, and how
    to read them."""

    answers: asyncio.Future[list[Any]]
    names: dict[bytes, bytes]
    prepares: list[tuple[int, bytes, bytes]]
    ran: list[int]

    def results(self) -> list[Any]:
        """Each member's result (the answers must be in)."""
        answers = self.answers.result()
        _note_prepared(self.names, answers, self.prepares)
        return [answers[index] for index in self.ran]


def _send_group(owner: Connection, members: list[_Member]) -> _Sent:
    """Send the members' statements on ``owner``'s connection now."""
    dbapi: Any = owner.connection.dbapi_connection
    names = _prepared(dbapi)
    statements, prepares, ran = _statements(names, [(m.stmt, m.values) for m in members])
    answers = asyncio.ensure_future(_loopio.execute(dbapi.pgconn, statements))
    return _Sent(answers, names, prepares, ran)


def _group_answered(
    owner: Connection, members: list[_Member], sent: _Sent, end: asyncio.Future[None]
) -> None:
    """Hand each member the result of its statement, sent on ``owner``'s connection.

    Several: in one pipeline with one sync point and no BEGIN, so they are one implicit
    transaction, committed by PostgreSQL at the sync point before it answers (one round
    trip, one WAL flush), each statement with its own snapshot (READ COMMITTED) as if sent
    apart. They run in ``order`` (each takes its change row's lock; groups take them in the
    same order, so two groups never deadlock). If any fails, the whole group was rolled
    back, nothing of it is committed, and each statement is sent again alone
    (:func:`_split_group`): every caller gets exactly the outcome it would have had alone.
    A lost connection fails every member."""
    try:
        results = sent.results()
    except BaseException as exc:
        _end_group(owner, members, [], end, exc)
        return
    if len(members) > 1 and not all(result.status in _OK for result in results):
        metrics.DB_COMMIT_GROUPS_SPLIT.inc()
        task = asyncio.get_running_loop().create_task(_split_group(owner, members, end))
        _SPLITTING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_SPLITTING.discard)
        return
    metrics.DB_COMMIT_GROUPS.observe(len(members))  # one member's failure is its own
    _end_group(owner, members, results, end, None)


_SPLITTING: set[asyncio.Task[None]] = set()
"""The :func:`_split_group` tasks running (held here until they end)."""


async def _split_group(
    owner: Connection, members: list[_Member], end: asyncio.Future[None]
) -> None:
    """The group was rolled back: send each member's statement again, alone, in order."""
    done: list[Any] = []
    try:
        for member in members:
            sent = _send_group(owner, [member])
            await sent.answers
            done.extend(sent.results())
            metrics.DB_COMMIT_GROUPS.observe(1)
    except BaseException as exc:
        _end_group(owner, members, done, end, exc)
        if not isinstance(exc, Exception):
            raise
        return
    _end_group(owner, members, done, end, None)


def _end_group(
    owner: Connection,
    members: list[_Member],
    done: list[Any],
    end: asyncio.Future[None],
    failure: BaseException | None,
) -> None:
    """Answer the members: those in ``done`` with their result, the others with
    ``failure``. The group's end is marked first: an answered request goes on at once (its
    COMMIT, its next statement), and the first member's connection is the one the group
    used."""
    owner.info.pop(_GROUP_TASK, None)
    if not end.done():
        end.set_result(None)
    if failure is not None:
        error = (
            failure
            if isinstance(failure, Exception)
            else psycopg.OperationalError("the connection's commit group was interrupted")
        )
        for member in members[len(done) :]:
            if not member.future.done():
                member.future.set_exception(error)
    for member, result in zip(members, done, strict=False):
        _deliver(member, result)


def _deliver(member: _Member, result: Any) -> None:
    if not member.future.done():  # not cancelled meanwhile
        member.future.set_result(result)


def end_on_loop(conn: Connection, *, commit: bool) -> None:
    """COMMIT or ROLLBACK the open transaction of ``conn`` from code running on the event loop
    (:mod:`loom.store._loopio`), without blocking it; a COMMIT goes in one round trip with
    the writes held back (:func:`execute_deferred`), a ROLLBACK drops them. psycopg then sees
    an idle connection, so SQLAlchemy's own commit or rollback that follows sends nothing."""
    pending = conn.info.pop(_DEFERRED, None) or []
    if not commit:
        pending = []  # rolled back with the rest
    dbapi: Any = conn.connection.dbapi_connection
    if not pending and dbapi.pgconn.transaction_status == TransactionStatus.IDLE:
        return  # nothing sent, nothing to send (held-back writes alone get their BEGIN)
    command = b"COMMIT" if commit else b"ROLLBACK"
    with _operational(command.decode()):
        _on_loop(conn, pending or [], command)


def checked(result: Any, dbapi: Any) -> Any:
    """``result``, or its error raised (decoded in the encoding of ``dbapi``, the psycopg
    connection: looked up only then, it costs a lookup per call)."""
    if result.status not in _OK:
        raise pg_errors.error_from_result(result, encoding=dbapi.info.encoding)
    return result


def _pg_rows(result: Any) -> list[tuple[Any, ...]]:
    kinds = [result.ftype(col) for col in range(result.nfields)]
    rows = []
    for row in range(result.ntuples):
        values: list[Any] = []
        for col, kind in enumerate(kinds):
            raw = result.get_value(row, col)
            if raw is None:
                values.append(None)
            elif kind in _INTEGERS:
                values.append(int(raw))
            elif kind == _BOOL:
                values.append(raw == b"t")
            else:
                values.append(raw.decode())
        rows.append(tuple(values))
    return rows


class _Fast:
    """A ``fast`` statement's result, read like the DB-API cursor it stands in for."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, result: Any) -> None:
        self.rows = _pg_rows(result)
        self.rowcount = result.command_tuples if result.command_tuples is not None else -1

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def close(self) -> None:
        pass


def _cursor(conn: Connection, stmt: SQL, params: Sequence[Any]) -> Any:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if conn.dialect.name == "postgresql":
        if stmt.fast:
            return _Fast(_pg_fast(conn, stmt, params))
        flush_deferred(conn)
        _loopio.note_blocking()
        cur = dbapi.cursor()
        cur.execute(stmt.format, params)
        return cur
    cur = dbapi.cursor()
    cur.execute(stmt.qmark, params)
    return cur


def execute(conn: Connection, stmt: SQL, params: Sequence[Any]) -> int:
    """Run a statement; returns the affected row count."""
    cur = _cursor(conn, stmt, params)
    count = int(cur.rowcount)
    cur.close()
    return count


def fetchone(conn: Connection, stmt: SQL, params: Sequence[Any]) -> tuple[Any, ...] | None:
    cur = _cursor(conn, stmt, params)
    row = cur.fetchone()
    cur.close()
    return None if row is None else tuple(row)


def fetchall(conn: Connection, stmt: SQL, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cur = _cursor(conn, stmt, params)
    rows = [tuple(r) for r in cur.fetchall()]
    cur.close()
    return rows


def fetch_together(
    conn: Connection, batch: Sequence[tuple[SQL, Sequence[Any]]]
) -> list[list[tuple[Any, ...]]]:
    """Run the statements of ``batch`` in order and return each one's rows.

    On the event loop (PostgreSQL, every statement ``fast``) they go in one round trip, with
    the writes held back before them: a pipeline, which PostgreSQL runs one statement after
    the other, each with a snapshot of its own taken when it starts (READ COMMITTED), so a
    statement sees what was committed before it started, the same as when each is sent
    alone. The first failure is raised; the statements after it did not run. Elsewhere
    they run one by one."""
    if (
        conn.dialect.name == "postgresql"
        and _loopio.on_loop()
        and all(stmt.fast for stmt, _ in batch)
    ):
        pending = conn.info.pop(_DEFERRED, None) or []
        statements = [*pending, *((stmt, [_param(p) for p in params]) for stmt, params in batch)]
        with _operational(batch[0][0].qmark):
            results = _on_loop(conn, statements, None)
        return [_pg_rows(result) for result in results[len(pending) :]]
    return [fetchall(conn, stmt, params) for stmt, params in batch]


def executemany(conn: Connection, stmt: SQL, rows: Sequence[Sequence[Any]]) -> None:
    if len(rows) == 1:  # psycopg's executemany enters pipeline mode: costly for one row
        execute(conn, stmt, rows[0])
        return
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    flush_deferred(conn)
    _loopio.note_blocking()
    cur = dbapi.cursor()
    cur.executemany(stmt.format if conn.dialect.name == "postgresql" else stmt.qmark, rows)
    cur.close()
