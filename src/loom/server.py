"""Running the server: uvicorn with graceful shutdown, startup summary, optional workers."""

from __future__ import annotations

import http.client
import json
import logging
import os
import sys
import tempfile
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from loom._http_protocol import protocol_class
from loom.settings import Settings
from loom.store import migrate
from loom.store.engine import Database, redact_url

__all__ = ["WorkerFactory", "run"]

# Set by the operator, already resolved into the settings: not inherited by the workers.
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SECRET_ENV = (
    "LOOM_ADMIN_TOKENS",
    "LOOM_TOKEN_SEED",
    "ITO_BACKEND_ADMIN_TOKEN",
    "ITO_BACKEND_TOKEN_SEED",
)

_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "access": {
            "()": "loom._accesslog.RedactingAccessFormatter",
            "fmt": '%(asctime)s access %(client_addr)s "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "class": "logging.StreamHandler",
            "formatter": "default",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "loom": {"handlers": ["default"], "level": "INFO", "propagate": False},
    },
}


def _project_tokens(settings: Settings) -> str:
    if not settings.project_tokens:
        return "disabled (--no-project-tokens)"
    return "enabled" if settings.token_seed else "disabled (no seed)"


def _summary(settings: Settings) -> list[str]:
    auth = (
        f"auth: {len(settings.admin_tokens)} admin token(s), project tokens "
        f"{_project_tokens(settings)}, named tokens enabled, "
        + (
            f"allowlist {len(settings.allow_orgs)} org(s) / {len(settings.allow_projects)} "
            "project(s)"
            if settings.allowlist_active
            else "all projects allowed"
        )
    )
    return [
        f"database: {settings.database_kind} ({redact_url(settings.database_url)})",
        auth,
        f"leases: ttl {settings.lease_ttl}s (max {settings.lease_ttl_max}s), "
        f"enforcement {settings.lease_enforcement}"
        + (", required for writes" if settings.require_lease else ""),
        f"metrics: /metrics ({'public' if settings.metrics_public else 'admin token required'})",
    ]


class _Server(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in str(host) else host
                _say(f"listening on http://{shown}:{port}")


def _say(line: str) -> None:
    """One line of the server's own log on stderr, in one write: with ``--workers`` the
    workers log to the same stderr, and ``print`` writes the text and its newline
    separately when stderr is unbuffered (``PYTHONUNBUFFERED``), so a worker's line could
    land in between ("…:38951" followed by a worker's timestamp on the listening line, seen
    in a test run). A write of one short line to a pipe is not interleaved."""
    sys.stderr.write(f"loom: {line}\n")
    sys.stderr.flush()


def _prepare(settings: Settings) -> None:
    settings.make_data_dir()
    db = Database(settings.database_url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()


def run(settings: Settings) -> None:
    """Migrate, print the summary, then serve until SIGINT/SIGTERM (graceful)."""
    _prepare(settings)
    for line in _summary(settings):
        _say(line)
    if settings.workers > 1:
        for name in _SECRET_ENV:
            os.environ.pop(name, None)
        with tempfile.TemporaryDirectory(prefix="loom-metrics-") as metrics_dir:
            # prometheus-client's multiprocess mode: each worker counts into files here and
            # a scrape of any worker sums them (set before the workers import the library).
            os.environ[_METRICS_ENV] = metrics_dir
            try:
                _run_workers(settings)
            finally:
                os.environ.pop(_METRICS_ENV, None)
        return
    from loom.api.app import create_app

    config = uvicorn.Config(
        create_app(settings, run_migrations=False, freeze_gc=True, warm_connections=True),
        host=settings.bind,
        port=settings.port,
        log_config=_LOG_CONFIG,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        **_connection_limits(settings),
    )
    _Server(config).run()


def _connection_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options for the connection limits and timeouts (see loom._http_protocol)."""
    return {
        "http": protocol_class(settings.header_timeout, settings.max_connections),
        "timeout_keep_alive": settings.keep_alive_timeout,
        # h11 only: the largest request head buffered before a 400 (httptools: 80 KiB).
        "h11_max_incomplete_event_size": 64 * 1024,
    }


def _run_workers(settings: Settings) -> None:
    config = uvicorn.Config(
        WorkerFactory(_dump(settings)),
        factory=True,
        host=settings.bind,
        port=settings.port,
        workers=settings.workers,
        log_config=_LOG_CONFIG,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        **_connection_limits(settings),
    )
    # Bind here (as uvicorn.run does) so the real port is known, then fork the workers.
    sock = config.bind_socket()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    threading.Thread(
        target=_announce_when_serving, args=(str(host), int(port), shown), daemon=True
    ).start()
    Multiprocess(config, sockets=[sock]).run()


def _announce_when_serving(host: str, port: int, shown: str) -> None:
    """Print the listening line once a worker answers ``/health`` (workers start a few
    seconds after the socket is bound; announcing earlier let clients race them)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                _say(f"listening on http://{shown}:{port}")
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)


def _dump(settings: Settings) -> str:
    data = settings.model_dump(mode="json")
    data["admin_tokens"] = [t.get_secret_value() for t in settings.admin_tokens]
    data["token_seed"] = settings.token_seed.get_secret_value() if settings.token_seed else None
    return json.dumps(data)


class WorkerFactory:
    """The app factory a worker process calls, carrying the settings (secrets included).

    uvicorn starts workers with multiprocessing's *spawn*: the config object, and this factory
    in it, reach the child pickled through the pipe multiprocessing opens for it — never
    through the environment (``/proc/<pid>/environ`` is readable by the same user and
    inherited by every child process). The child drops its copy once the app is built; the
    supervisor keeps its own, to restart a worker that dies.
    """

    def __init__(self, payload: str) -> None:
        self._payload = payload

    def __call__(self) -> FastAPI:
        from loom.api.app import create_app

        payload, self._payload = self._payload, ""
        if not payload:
            raise RuntimeError("loom worker started without settings")
        settings = Settings.model_validate_json(payload)
        protocol_class(settings.header_timeout, settings.max_connections)  # this process's
        return create_app(settings, run_migrations=False, freeze_gc=True, warm_connections=True)


logging.getLogger("loom").addHandler(logging.NullHandler())
