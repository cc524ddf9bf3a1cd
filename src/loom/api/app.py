"""The application factory: ``create_app(settings)`` owns the database in its lifespan."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom import __version__
from loom.api import contract
from loom.api._hub import Hub
from loom.api.docs import install_docs
from loom.api.errors import error_response, install_error_handlers
from loom.api.middleware import BodyGuard, HotLane
from loom.api.responses import JSON
from loom.api.routes_admin import router as admin_router
from loom.api.routes_changes import router as changes_router
from loom.api.routes_leases import router as leases_router
from loom.api.routes_mcp import mcp_route
from loom.api.routes_metrics import measure
from loom.api.routes_metrics import router as metrics_router
from loom.api.routes_overlaps import router as overlaps_router
from loom.api.routes_project import router as project_router
from loom.api.routes_stream import router as stream_router
from loom.errors import Unavailable, ValidationError
from loom.models import ErrorEnvelope, Health, Ready
from loom.service import ServiceContext, open_context
from loom.service.idempotency import release_abandoned
from loom.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("loom.api")


class LoomApp(FastAPI):
    """FastAPI that refuses an encoded ``/`` in a project path before anything else, and
    documents itself with :func:`loom.api.contract.openapi`."""

    # The hot requests' way in ahead of the framework's own layers (error and telemetry
    # middleware, body limit): built on the first request, when the app's middleware is
    # exactly the body guard and the lane (no layer added later that must see them too).
    _front: ASGIApp | None = None
    _front_lane: HotLane | None = None
    _front_built = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await measure(self._dispatch, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    _limits: tuple[int, float] | None = None  # the body limit and timeout, with a hot lane

    def _build_front(self) -> None:
        self._front_built = True
        layers: list[Any] = [m.cls for m in self.user_middleware]
        if self._limits is None or layers != [BodyGuard, HotLane]:
            return
        max_bytes, timeout = self._limits
        self._front_lane = HotLane(self._framework, self.router.routes, max_bytes, timeout)
        self._front = BodyGuard(self._front_lane, max_bytes, timeout)

    async def _framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            if scope["method"] == "HEAD" and not scope["path"].endswith("/events/stream"):
                # RFC 9110 §9.3.2: the GET response's status and headers, without the body
                # (not for the event stream, whose GET never ends).
                scope = {**scope, "method": "GET"}
                send = _without_body(send)
            if not self._front_built:
                self._build_front()
            if (
                self._front is not None
                and self._front_lane is not None
                and self._front_lane.serves(scope)
            ):
                scope["app"] = self
                await self._front(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return contract.openapi(self)


_PROJECTS = b"/api/v1/projects/"


def _without_body(send: Send) -> Send:
    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


async def _warm(ctx: ServiceContext) -> None:
    log = logging.getLogger("loom.store")
    try:
        opened = await ctx.db.warm_loop_connections()
    except Exception:  # the connections open on demand instead, as they always could
        log.warning("could not open the database connections ahead of need", exc_info=True)
    else:
        if ctx.db.kind == "postgresql":
            log.info("opened %d lease connection(s) ahead of need", opened)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], int] | None = None,
    run_migrations: bool = True,
    freeze_gc: bool = False,
    hot_lane: bool = True,
    warm_connections: bool = False,
) -> LoomApp:
    """Build the ASGI app. ``clock`` (µs since the epoch) is injectable for tests.

    ``freeze_gc`` (the server process, not tests that build many apps): once started, move
    every object alive then — framework, models, engine — out of the garbage collector's
    generations (``gc.freeze``), so collections under load stop re-scanning them, and run
    full collections a tenth as often.

    ``hot_lane`` (on by default): answer the handlers marked ``hot`` (leases, event batches)
    ahead of the framework stack; off, the same handlers run through FastAPI's router.

    ``warm_connections`` (the server process; PostgreSQL): once started, open the
    connections lease requests use on the event loop, their statements prepared, in the
    background (:meth:`loom.store.engine.Database.warm_loop_connections`).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = open_context(settings, clock, run_migrations=run_migrations)
        try:
            release_abandoned(ctx)
        except Exception:  # an unreachable database answers 503 per request, as always
            logging.getLogger("loom.idempotency").warning(
                "could not release abandoned idempotency keys at start-up"
            )
        app.state.ctx = ctx
        app.state.hub = hub = Hub(
            ctx,
            buffer=settings.stream_buffer,
            recheck=settings.stream_recheck,
            heartbeat=settings.stream_heartbeat,
        )
        hub.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
            # A full collection at most every 100 collections of the middle generation
            # (700,000 allocations) instead of every 10: a request that builds a large
            # result (GET /events of 54,000 events: ~500,000 objects) ran several full
            # collections of 20-60 ms each, every thread of the process stopped, /health
            # included. What survives the young generations is rarely garbage here.
            gc.set_threshold(700, 10, 100)
            # Parsing and merging run on worker threads (CPU-bound, holding the GIL): with
            # the default 5 ms switch interval the event loop waited up to 5 ms per GIL
            # hand-off, several per request; 1 ms keeps /health fast meanwhile.
            sys.setswitchinterval(0.001)
        try:
            # Background work that lives as long as the app (the MCP session manager, started
            # on the first MCP request).
            async with anyio.create_task_group() as tasks:
                app.state.tasks = tasks
                if warm_connections:
                    tasks.start_soon(_warm, ctx)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            await hub.stop()
            ctx.db.dispose()

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
            err = Unavailable("database unavailable", kind="database_unavailable")
            body = {"status": "not_ready", "reason": err.message, **err.to_envelope()}
            return JSON(body, status_code=err.status)
        return {"status": "ready"}

    # The routes are added to the app's own router (not nested with include_router): matching
    # a request then walks one flat list, hottest routes first (leases), which measurably
    # lowers per-request overhead.
    for router in (
        leases_router,
        changes_router,
        overlaps_router,
        stream_router,
        project_router,
        admin_router,
        metrics_router,
    ):
        app.router.routes.extend(router.routes)
    from loom.api import ui

    ui.install(app)
    app.router.routes.append(mcp_route(settings))
    if hot_lane:  # innermost: every other middleware sees the hot requests too
        app._limits = (settings.max_body_bytes, settings.body_timeout)
        app.add_middleware(
            HotLane,
            routes=app.router.routes,
            max_bytes=settings.max_body_bytes,
            timeout=settings.body_timeout,
        )
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout)
    return app
