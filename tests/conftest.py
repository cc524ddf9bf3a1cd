"""Shared fixtures: real SQLite files, a real PostgreSQL, in-process apps and real servers.

PostgreSQL: ``LOOM_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/
postgres``) names an administrative connection; each test run creates its own database and
drops it at the end. Unreachable PostgreSQL skips those tests, unless
``LOOM_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which makes them fail instead.
"""

from __future__ import annotations

import gc
import itertools
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from _forkserver import ForkedProcess, spawn_loom
from loom.api.auth import derive_project_token
from loom.settings import Settings

# --------------------------------------------------------------------------- hypothesis
# One verdict per commit: under CI (``CI`` set, as ``.ci/run`` does) every property and state
# machine test draws the same examples on every run (derandomized, fixed budgets, no
# deadline, no example database). ``dev`` (the default) draws at random with the same
# budgets; ``explore`` (``make explore``) draws at random with ten times the budget, to hunt
# for new failures deliberately. A test that sets its own budget writes
# ``max_examples=examples(n)`` so that ``explore`` scales it too; tests never pin
# ``derandomize`` or a seed themselves (the profile decides).
_SLOW_OK = [HealthCheck.too_slow]
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "explore",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
    phases=list(Phase),
    verbosity=Verbosity.normal,
)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") else "dev"
)
settings.load_profile(HYPOTHESIS_PROFILE)
_EXPLORE_FACTOR = 10


def examples(n: int) -> int:
    """A test's example budget: ``n``, or ten times ``n`` under the ``explore`` profile."""
    return n * _EXPLORE_FACTOR if HYPOTHESIS_PROFILE == "explore" else n


ADMIN = "test-admin-token"
SEED = "test-seed"
ORG, REPO = "acme", "widgets"
PG_ADMIN_URL = os.environ.get(
    "LOOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("LOOM_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]

# Every HTTP client the tests create talks plain HTTP to 127.0.0.1, yet httpx builds each
# ``httpx.Client`` a certificate-verifying SSL context, loading the CA bundle that
# ``SSL_CERT_FILE`` names (this image sets it) or certifi's: ~22 ms of CPU per client. The race
# tests alone create over a thousand clients (one per racing agent), about a tenth of the
# suite's CPU. With no CA file and a CA directory that does not exist (httpx's documented
# ``SSL_CERT_DIR``; OpenSSL looks into it only when verifying), a client costs ~0.3 ms; a TLS
# connection, which no test makes, would fail verification. Servers and ``loom`` commands the
# tests start inherit it (they make no TLS connections either).
os.environ.pop("SSL_CERT_FILE", None)
os.environ["SSL_CERT_DIR"] = os.path.join(os.devnull, "no-ca-certificates")
# A client made with ``trust_env=False`` reads neither variable and loads certifi's bundle:
# such clients pass ``verify=NO_CA`` (verifying, with no authority to trust, built once).
NO_CA = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def project_token(org: str = ORG, repo: str = REPO, seed: str = SEED) -> str:
    return derive_project_token(seed, org, repo)


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_FORM_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def form_csrf(page: str) -> str:
    """The CSRF token of a dashboard page's form (sign-in, sign-out, force-release)."""
    found = _FORM_CSRF.search(page)
    assert found, page
    return found.group(1)


def ui_login(client: Any, token: str) -> Any:
    """Sign in to the dashboard as a browser does: open the form (its CSRF token and nonce
    cookie), post it back. ``client``: a TestClient or an ``httpx.Client`` (keeps cookies)."""
    form = client.get("/ui/login")
    assert form.status_code == 200, form.text
    csrf = form_csrf(form.text)
    return client.post("/ui/login", data={"token": token, "csrf": csrf}, follow_redirects=False)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class _PgState:
    url: str | None = None
    error: str | None = None
    created: list[str] = field(default_factory=list)
    handle: Any = None


@dataclass
class _SqliteState:
    template: Path | None = None


_PG = _PgState()
_SQLITE = _SqliteState()


def _pg_database() -> str:
    """A fresh database for this test run (created once per session)."""
    if _PG.url is not None:
        return _PG.url
    _PG.url = _create_pg_database()
    return _PG.url


def _create_pg_database() -> str:
    """Create a database on the run's PostgreSQL (dropped at the end of the run)."""
    if _PG.error is not None:
        _pg_unavailable(_PG.error)
    name = f"loom_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
    except Exception as exc:  # unreachable or refused
        _PG.error = f"PostgreSQL unavailable at {PG_ADMIN_URL}: {type(exc).__name__}: {exc}"
        _pg_unavailable(_PG.error)
    _PG.created.append(name)
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _pg_unavailable(reason: str) -> None:
    if REQUIRE_PG:
        pytest.fail(reason + " (LOOM_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


def _build_cli_once() -> None:
    """``typer.testing.CliRunner.invoke`` turns the Typer app into its Click command on every
    call (every option of every ``loom`` command read from its signature, its annotations
    evaluated): ~18 ms of CPU a call, ~20 s a run over the suite's ~1,100 in-process
    commands. The command is built once per app, its set of commands and the one setting
    Typer reads while building it (the completion options' shell detection), and reused: a
    ``loom`` process builds it once too, and a Click command holds no state of a run (each
    run gets a new Context)."""
    import typer.main
    import typer.testing

    build = typer.main.get_command
    assert typer.testing._get_command is build, "typer.testing no longer builds this way"
    built: dict[int, tuple[Any, tuple[object, ...], Any]] = {}

    def get_command(app: Any) -> Any:
        shape = (
            len(app.registered_commands),
            len(app.registered_groups),
            os.environ.get("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"),
        )
        known = built.get(id(app))
        if known is None or known[0] is not app or known[1] != shape:
            known = built[id(app)] = (app, shape, build(app))
        return known[2]

    typer.testing._get_command = get_command


_build_cli_once()


def pytest_collection(session: pytest.Session) -> None:
    gc.disable()  # collection builds what the tests need and keeps all of it: nothing to free


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first (a stable sort: each keeps its place among its kind).

    xdist hands tests out in this order (after the groups, largest first), so the long ones
    start while the quick ones can still fill the other workers around them. In collection
    order, tests/test_release.py (~30 s: a wheel built, installed into a new virtualenv and
    served) came among the last and ran alone at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


_UNGROUPED: set[str] = set()


def _check_xdist_groups(session: pytest.Session) -> None:
    """Under ``--dist loadgroup``, note the tests whose ``xdist_group`` mark was not applied:
    they fail at set-up (:func:`pytest_runtest_setup`) instead of running ungrouped.

    pytest-xdist groups a worker's items by renaming them (``name@group``); with pytest 9.2
    that renaming silently stopped taking effect (pytest-dev/pytest-xdist#1386), and the
    tests marked ``xdist_group("races")`` ran on every worker at once, beside the rest of the
    suite, with nothing reported. This runs in each worker, after xdist's renaming. (An
    error raised here would crash the workers without showing its message.)"""
    if not session.config.getoption("loadgroup", default=False):
        return
    _UNGROUPED.update(
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.nodeid in _UNGROUPED:
        pytest.fail(
            "--dist loadgroup ignored this test's xdist_group mark: this pytest and"
            " pytest-xdist do not group tests (pytest-dev/pytest-xdist#1386); install the"
            " versions of constraints.txt (`make test` does)",
            pytrace=False,
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the cyclic garbage collector off what collection built, and run it less often.

    A worker holds every test of the suite and the modules of schemathesis, hypothesis,
    Playwright and Loom with their caches: ~370,000 tracked objects. A full collection walks
    all of them (~350 ms), and the interpreter ran one each time the heap had grown by a
    quarter: ~9 during collection, ~20 more during the tests, per worker. Frozen (moved to
    the permanent generation), they are never walked again; they live until the worker ends
    anyway. The young generation's threshold goes from 700 to 7,000 allocations: the tests
    build and drop whole apps, and fewer of those objects survive into older generations
    to be walked again. Measured with ``gc.callbacks`` over tests/api, leases, domain and
    store on three workers: 11.3 s of collections with freezing alone, 7.6 s with both;
    without either, the whole suite spent ~28 s of its CPU in collections."""
    _check_xdist_groups(session)
    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
    gc.enable()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SQLITE.template is not None:
        shutil.rmtree(_SQLITE.template.parent, ignore_errors=True)
    if _PG.handle is not None:
        _PG.handle.dispose()
    if not _PG.created:
        return
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in _PG.created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _reset_pg(url: str) -> None:
    """Empty the run's PostgreSQL database: migrate only when it is not at the newest revision
    (a test may have dropped the schema), then DELETE every table's rows, children first, and
    restart the sequences. Much cheaper than TRUNCATE, which rewrites every table and index
    file (~0.2 s a test against ~0.01 s); the database holds one test's few rows."""
    from loom.store import migrate
    from loom.store.schema import metadata

    db = _pg_handle(url)
    migrate.upgrade(db)
    with db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
        sequences = conn.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
        ).scalars()
        for name in list(sequences):
            conn.execute(text(f'ALTER SEQUENCE "{name}" RESTART'))


def _pg_handle(url: str) -> Any:
    """One small engine on the run's database for the resets (closed at the session's end)."""
    from loom.store.engine import Database

    if _PG.handle is None:
        _PG.handle = Database(url, pool_size=1)
    return _PG.handle


def _sqlite_template() -> Path:
    """A SQLite file migrated to the newest revision, made once per process; each test copies
    it instead of running the migrations on a new file (~0.1 s a test)."""
    from loom.store import migrate
    from loom.store.engine import Database

    if _SQLITE.template is None:
        folder = Path(tempfile.mkdtemp(prefix="loom-template-"))
        path = folder / "loom.db"
        db = Database(f"sqlite:///{path}", pool_size=1)
        try:
            migrate.upgrade(db)
        finally:
            db.dispose()
        # Closing the last connection checkpoints the WAL into the file: the copy is whole.
        assert not path.with_name("loom.db-wal").exists(), "template left a WAL behind"
        _SQLITE.template = path
    return _SQLITE.template


def fresh_sqlite_file(path: Path) -> str:
    """Put a clean, migrated SQLite database at ``path`` and return its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template(), path)
    path.chmod(0o600)  # as the server creates it
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database of each kind: a copy of a migrated SQLite file, or the
    run's PostgreSQL (emptied)."""
    if request.param == "sqlite":
        return fresh_sqlite_file(tmp_path / "loom.db")
    url = _pg_database()
    _reset_pg(url)
    return url


@pytest.fixture
def pg_url() -> str:
    url = _pg_database()
    _reset_pg(url)
    return url


# --------------------------------------------------------------------------- in-process app


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "admin_tokens": (SecretStr(ADMIN),),
        "token_seed": SecretStr(SEED),
    }
    values.update(overrides)
    return Settings(**values)


class FakeClock:
    """An injectable server clock (microseconds since the epoch)."""

    def __init__(self, start_us: int = 1_790_000_000_000_000) -> None:
        self.now = start_us
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += int(seconds * 1_000_000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_factory(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[..., Any]]:
    """Build a TestClient for an app on ``database_url`` with settings overrides."""
    from _testclient import OneHopTestClient
    from loom.api.app import create_app

    clients: list[Any] = []

    def build(**overrides: Any) -> Any:
        settings = make_settings(database_url, tmp_path, **overrides)
        client = OneHopTestClient(create_app(settings, clock=clock), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def api(app_factory: Callable[..., Any]) -> Any:
    """A TestClient on a default app (admin token ``ADMIN``, seed ``SEED``)."""
    return app_factory()


# --------------------------------------------------------------------------- real servers


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it is true (a condition, not a fixed sleep); fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        time.sleep(0.01)


_LISTEN = re.compile(r"loom: listening on (http://\S+)")


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    process: ForkedProcess | subprocess.Popen[str]
    database_url: str
    admin_token: str = ADMIN
    seed: str = SEED
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    def project_token(self, org: str = ORG, repo: str = REPO) -> str:
        return derive_project_token(self.seed, org, repo)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The process is gone: let the log reader reach EOF, then close the pipe (an open
        # pipe is a ResourceWarning, an error under filterwarnings=error).
        if self.drain is not None:
            self.drain.join(timeout=10)
        if self.process.stderr is not None and (self.drain is None or not self.drain.is_alive()):
            self.process.stderr.close()
        return int(self.process.returncode)


def start_server(
    data_dir: Path,
    database_url: str | None = None,
    *args: str,
    extra_env: dict[str, str] | None = None,
) -> LiveServer:
    """Start ``loom serve`` as a real process on an ephemeral port and wait until it listens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    default_db = data_dir / "loom.db"
    if database_url is None and not default_db.exists():
        fresh_sqlite_file(default_db)  # migrated already: the start skips Alembic
    db_url = database_url or f"sqlite:///{default_db}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    if not db_url.startswith("sqlite"):
        # Three pytest workers share one PostgreSQL (max_connections 100 by default): with the
        # default pool of 8, a server holds 15-18 sessions once warmed up, and a run peaked at
        # 96. Half the pool halves that; a test that needs more says so in ``extra_env``.
        env["LOOM_DB_POOL_SIZE"] = "4"
    env.update(extra_env or {})
    args = [
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--database-url",
        db_url,
        "--admin-token",
        ADMIN,
        "--token-seed",
        SEED,
        *args,
    ]
    proc = spawn_loom(args, env)  # a fork of a pre-imported interpreter (tests/_forkserver.py)
    assert proc.stderr is not None
    log: list[str] = []
    found: list[str] = []
    listening = threading.Event()

    def drain() -> None:
        # Reads the log on its own thread, so waiting for start-up can time out.
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            m = _LISTEN.search(line)
            if m and not found:
                found.append(m.group(1))
                listening.set()
        listening.set()  # EOF: the process ended

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    listening.wait(timeout=60)
    if not found:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        proc.stderr.close()
        raise RuntimeError("server did not start:\n" + "".join(log))
    server = LiveServer(found[0], data_dir, proc, db_url, log=log)
    server.drain = reader
    return server


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real ``loom serve`` process on SQLite (admin token ``ADMIN``, seed ``SEED``)."""
    server = start_server(tmp_path / "server")
    yield server
    server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def shared_server_on(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One real ``loom serve`` per test module and backend, for tests that need *a* server
    rather than a fresh one (a start costs ~1.5 s). Each test works in a project of its own
    (:func:`new_project`): ids, event sequences and leases are per project, so the tests
    never see each other's data. On PostgreSQL the server has a database of its own, which
    the per-test resets of the run's database never touch."""
    folder = tmp_path_factory.mktemp("shared-server")
    url = None if request.param == "sqlite" else _create_pg_database()
    server = start_server(folder / "server", url)
    yield server
    server.stop()


_PROJECT_NUMBERS = itertools.count(1)


def new_project(org: str = ORG) -> tuple[str, str]:
    """An (org, repo) no other test of this process uses."""
    return org, f"{REPO}-{next(_PROJECT_NUMBERS)}"


@pytest.fixture
def live_server_on(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    """A real ``loom serve`` process on each database backend."""
    server = start_server(tmp_path / "server", database_url)
    yield server
    server.stop()
