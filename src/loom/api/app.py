"""The application factory: ``create_app(settings)`` owns the database in its lifespan."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from loom import __version__
from loom.api import contract
from loom.api.docs import install_docs
from loom.api.errors import error_response, install_error_handlers
from loom.api.middleware import BodyGuard, HotLane
from loom.api.responses import JSON
from loom.api.routes_changes import router as changes_router
from loom.api.routes_leases import fast_routes
from loom.api.routes_leases import router as leases_router
from loom.api.routes_mcp import mcp_route
from loom.api.routes_project import fast_routes as project_fast_routes
from loom.api.routes_project import router as project_router
from loom.errors import ValidationError
from loom.models import ErrorEnvelope, Health, Ready
from loom.service._context import Policy, ServiceContext, system_clock_us
from loom.settings import Settings
from loom.store import migrate
from loom.store.engine import Database

__all__ = ["create_app"]


class LoomApp(FastAPI):
    """FastAPI whose hot endpoints (leases, event batches) are answered by :class:`HotLane`
    first."""

    lane: HotLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or b""
            if raw.startswith(_PROJECTS) and b"%2f" in raw.lower():
                # The server decodes %2F before routing: "a%2Fb" would become two segments
                # (another route, or a 404). An id can never contain "/": refuse it as such.
                err = ValidationError(
                    "invalid id: a path segment contains an encoded '/'", kind="invalid_id"
                )
                await error_response(err)(scope, receive, send)
                return
            if self.lane is not None:
                scope["app"] = self
                if await self.lane.serve(scope, receive, send):
                    return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return contract.openapi(self)


_PROJECTS = b"/api/v1/projects/"


def _policy(settings: Settings) -> Policy:
    return Policy(
        lease_ttl=settings.lease_ttl,
        lease_ttl_min=settings.lease_ttl_min,
        lease_ttl_max=settings.lease_ttl_max,
        lease_enforcement=settings.lease_enforcement,
        allow_blind_push=settings.allow_blind_push,
        require_lease=settings.require_lease,
        idempotency_ttl=settings.idempotency_ttl,
    )


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], int] | None = None,
    run_migrations: bool = True,
    freeze_gc: bool = False,
) -> LoomApp:
    """Build the ASGI app. ``clock`` (µs since the epoch) is injectable for tests.

    ``freeze_gc`` (the server process, not tests that build many apps): once started, move
    every object alive then — framework, models, engine — out of the garbage collector's
    generations (``gc.freeze``), so collections under load stop re-scanning them.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        if run_migrations:
            migrate.upgrade(db)
        app.state.ctx = ServiceContext(db, _policy(settings), clock or system_clock_us)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            # Background work that lives as long as the app (the MCP session manager, started
            # on the first MCP request).
            async with anyio.create_task_group() as tasks:
                app.state.tasks = tasks
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            db.dispose()

    app = LoomApp(
        title="Loom",
        version=__version__,
        description="Coordination server for agents working on Ito spec-driven changes.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served by loom.api.docs, with Swagger UI from the package
        redoc_url=None,
        # No 307 to the slash-less path (an empty, non-JSON body built from the Host
        # header): a trailing slash is an unknown route, 404 with the envelope, as in Ito.
        redirect_slashes=False,
        lifespan=lifespan,
        generate_unique_id_function=contract.operation_id,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_docs(app, "/api/v1/openapi.json")

    @app.get(
        "/api/v1/health",
        summary="Liveness (never touches the database)",
        responses={200: {"model": Health}},
    )
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/api/v1/ready",
        summary="Readiness (runs a trivial database query)",
        responses={
            200: {"model": Ready},
            503: {"model": ErrorEnvelope, "description": "The database is unavailable"},
        },
    )
    async def ready(request: Request) -> Any:
        ctx: ServiceContext = request.app.state.ctx
        try:
            await ctx.db.run_read(ctx.db.ping)
        except Exception:
            # API.md §1's body, plus the error envelope every non-2xx carries (§0).
            return JSON(
                {
                    "status": "not_ready",
                    "reason": "database unavailable",
                    "error": "database unavailable",
                    "code": "service_unavailable",
                    "kind": "database_unavailable",
                },
                status_code=503,
            )
        return {"status": "ready"}

    # The routes are added to the app's own router (not nested with include_router): matching
    # a request then walks one flat list, hottest routes first (leases), which measurably
    # lowers per-request overhead.
    hot = fast_routes() + project_fast_routes()
    app.router.routes[:0] = hot
    app.lane = HotLane(
        [(r.path_regex, r.endpoint) for r in hot if isinstance(r, Route)], settings.max_body_bytes
    )
    for router in (leases_router, changes_router, project_router):
        app.router.routes.extend(router.routes)
    app.router.routes.append(mcp_route(settings))
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    return app
