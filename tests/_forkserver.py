"""Start ``python -m loom …`` processes for the tests by forking one pre-imported interpreter.

A ``loom serve`` process spends about 2 s of CPU before it listens, nearly all of it importing
FastAPI, SQLAlchemy, pydantic, Jinja2 and Loom itself. The suite starts well over a hundred
servers, so each pytest process keeps one *fork server*: a single-threaded interpreter that
has imported all of that once and forks a child per start (the way ``gunicorn --preload`` or
multiprocessing's ``forkserver`` do). The child is the real thing from there on: it takes the
environment, working directory, stdin/stdout/stderr and argv it is given and runs the ``loom``
module as ``__main__`` exactly as ``python -m loom`` would, so settings, migrations, signal
handling, ``--workers`` (whose workers multiprocessing *spawns* afresh) and exit codes are
those of a normal start.

The child is the fork server's child, not the test's, so :class:`ForkedProcess` gives the
test what it used from :class:`subprocess.Popen` (``pid``, ``poll``, ``wait``,
``send_signal``, ``kill``, ``terminate``, ``returncode``, ``stderr``): the fork server reaps
the child and sends its exit status on the connection that asked for it.

CLI commands a test runs to completion go the same way (:func:`run_loom`, in place of
``subprocess.run``): a ``loom token create`` then costs its own work, not the second of CPU
its imports take.

``LOOM_TEST_FORKSERVER=0`` starts every process with a plain ``subprocess.Popen`` instead.
Tests that must see a process start from ``exec`` (the wheel install, ``serve``'s command-line
checks) use ``subprocess`` themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

ENABLED = os.environ.get("LOOM_TEST_FORKSERVER", "1") != "0"

# What ``loom serve`` imports before it listens (measured with ``-X importtime``), imported
# once in the fork server.
_PRELOAD = (
    "loom.cli",
    "loom.server",
    "loom.api.app",
    "loom.api.ui",
    "loom.store.migrate",
    "alembic.command",
    "alembic.runtime.migration",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.supervisors.multiprocess",
    "loom._http_protocol",
    "loom.mcp",
    # `loom mcp` (tests/agents: each stdio session is a process): the MCP SDK is ~0.5 s of
    # imports, which the CLI loads only for that command.
    "loom.cli.mcp",
    "loom.mcp.stdio",
)
_MAX_FDS = 3


# --------------------------------------------------------------------------- the fork server


def _serve(path: str) -> None:
    """The fork server's main loop: accept a start request, fork, report the exit status."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "parent")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in sel.select():
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 1024):
                    return  # the pytest process is gone
            elif key.data == "accept":
                conn, _ = listener.accept()
                _start(conn, sel, listener)
            else:
                pid, conn = key.data
                sel.unregister(key.fileobj)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):
                    conn.send(str(os.waitstatus_to_exitcode(status)).encode())
                conn.close()


def _start(conn: socket.socket, sel: selectors.BaseSelector, listener: socket.socket) -> None:
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, _MAX_FDS)
    request = json.loads(msg)
    if threading.active_count() != 1:  # a fork must not copy another thread's locks
        conn.send(b"error: the fork server is not single-threaded")
        conn.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    conn.send(f"pid {pid}".encode())
    sel.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, conn))


def _child(request: dict[str, Any], fds: list[int]) -> None:
    code: Any = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["loom", *request["args"]]
        sys.path[0] = request["cwd"]  # as `python -m` sets it
        import runpy

        try:
            runpy.run_module("loom", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        # As the interpreter's own exit would: join non-daemon threads, run atexit.
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:  # reported like an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        if code is None:
            code = 0
        elif not isinstance(code, int):
            with contextlib.suppress(Exception):
                print(code, file=sys.stderr)
            code = 1
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


# --------------------------------------------------------------------------- the test's side


class ForkedProcess:
    """What a test uses of ``subprocess.Popen``, for a child of the fork server."""

    def __init__(self, args: list[str], conn: socket.socket, pid: int, stderr: IO[str] | None):
        self.args = args
        self.pid = pid
        self.stderr = stderr
        self.returncode: int | None = None
        self._conn = conn

    def _read_status(self, timeout: float | None) -> None:
        self._conn.settimeout(timeout)
        try:
            data = self._conn.recv(64)
        except (TimeoutError, BlockingIOError):
            return
        if not data:
            raise RuntimeError(f"the fork server lost process {self.pid}")
        self.returncode = int(data)
        self._conn.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._read_status(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _ForkServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._path = ""

    def _ensure(self) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._dir = tempfile.TemporaryDirectory(prefix="loom-forkserver-")
                self._path = str(Path(self._dir.name) / "sock")
                env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
                self._proc = subprocess.Popen(
                    [sys.executable, __file__, self._path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
                assert self._proc.stdout is not None
                if self._proc.stdout.readline() != b"ready\n":
                    raise RuntimeError("the test fork server did not start")
                atexit.register(self.close)
            return self._path

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                assert self._proc.stdin is not None and self._proc.stdout is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
                self._proc.stdout.close()
                self._proc = None
            if self._dir is not None:
                self._dir.cleanup()
                self._dir = None

    def spawn(self, args: list[str], env: dict[str, str], stderr_pipe: bool) -> ForkedProcess:
        path = self._ensure()
        devnull = os.open(os.devnull, os.O_RDWR)
        read_end: int | None = None
        if stderr_pipe:
            read_end, write_end = os.pipe()
        else:
            write_end = os.dup(devnull)
        try:
            conn, pid = _ask(path, args, env, [devnull, devnull, write_end])
        except BaseException:
            if read_end is not None:
                os.close(read_end)
            raise
        finally:
            os.close(devnull)
            os.close(write_end)
        stderr = open(read_end, encoding="utf-8") if read_end is not None else None  # noqa: SIM115
        return ForkedProcess(["loom", *args], conn, pid, stderr)

    def run(
        self, args: list[str], env: dict[str, str], cwd: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        path = self._ensure()
        with (
            open(os.devnull, "rb") as stdin,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            conn, pid = _ask(path, args, env, [stdin.fileno(), out.fileno(), err.fileno()], cwd)
            proc = ForkedProcess(["loom", *args], conn, pid, None)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                proc.args, code, out.read().decode(), err.read().decode()
            )


def _ask(
    path: str, args: list[str], env: dict[str, str], fds: list[int], cwd: str | None = None
) -> tuple[socket.socket, int]:
    """Ask the fork server at ``path`` to run ``python -m loom *args`` with ``env``, ``cwd``
    (default: this process's working directory) and ``fds`` as its stdin, stdout and
    stderr: (the connection on which its exit status will come, its pid)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect(path)
        request = {"args": args, "env": env, "cwd": cwd or os.getcwd()}
        socket.send_fds(conn, [json.dumps(request).encode()], fds)
        reply = conn.recv(256).decode()
        if not reply.startswith("pid "):
            raise RuntimeError(f"the test fork server refused to start {args}: {reply}")
    except BaseException:
        conn.close()
        raise
    return conn, int(reply[4:])


_SERVER = _ForkServer()


def launcher(args: list[str], pid_file: Path) -> list[str] | None:
    """The command line of a process that runs ``python -m loom *args`` on its own stdin,
    stdout and stderr, with its own environment and working directory, as a child of the fork
    server; it writes the child's pid to ``pid_file``, passes SIGTERM and SIGINT on, and exits
    with the child's exit status. For a test whose client starts the process itself (the MCP
    SDK's ``stdio_client``). None when the fork server is off."""
    if not ENABLED:
        return None
    return [sys.executable, __file__, "--launch", _SERVER._ensure(), str(pid_file), *args]


def _launch(path: str, pid_file: str, args: list[str]) -> int:
    try:
        conn, pid = _ask(path, args, dict(os.environ), [0, 1, 2])
    except RuntimeError as refused:
        print(refused, file=sys.stderr)
        return 1
    Path(pid_file).write_text(str(pid))

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            data = conn.recv(64)
        except InterruptedError:
            continue
        if not data:
            print(f"the test fork server lost process {pid}", file=sys.stderr)
            return 1
        code = int(data)
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


def spawn_loom(args: list[str], env: dict[str, str]) -> ForkedProcess | subprocess.Popen[str]:
    """``python -m loom *args`` with ``env``, stdin and stdout on /dev/null and stderr on a
    text pipe (``.stderr``)."""
    if not ENABLED:
        return subprocess.Popen(
            [sys.executable, "-m", "loom", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    return _SERVER.spawn(args, env, stderr_pipe=True)


def run_loom(
    args: list[str], env: dict[str, str], *, cwd: str | Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m loom *args`` run to completion, as ``subprocess.run(..., capture_output=True,
    text=True, check=False)`` would (stdin on /dev/null; :class:`subprocess.TimeoutExpired`
    after ``timeout`` seconds, the process killed): a fork of the pre-imported interpreter,
    so a CLI command costs its own work, not a second of imports."""
    if not ENABLED:
        return subprocess.run(
            [sys.executable, "-m", "loom", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return _SERVER.run(args, env, None if cwd is None else str(cwd), timeout)


if __name__ == "__main__":
    if sys.argv[1] == "--launch":
        sys.exit(_launch(sys.argv[2], sys.argv[3], sys.argv[4:]))
    _serve(sys.argv[1])
