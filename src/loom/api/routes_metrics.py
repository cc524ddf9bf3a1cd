"""``GET /metrics`` (Prometheus text format) and the per-request measurements behind it."""

from __future__ import annotations

import time
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.metrics_core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom import metrics
from loom.api._scope import ROUTE_KEY
from loom.api.access import admin_access
from loom.service import ServiceContext, stats
from loom.settings import Settings

__all__ = ["measure", "router"]

router = APIRouter()

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin token unless the server runs with --metrics-public)",
    response_class=Response,
    include_in_schema=False,  # Prometheus text, not a JSON API operation
)
async def metrics_endpoint(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics_public:
        await admin_access(request)
    ctx: ServiceContext = request.app.state.ctx
    active = await ctx.db.run_read(stats.active_leases, ctx)
    gauge = GaugeMetricFamily("loom_leases_active", "Leases held right now (all projects).")
    gauge.add_metric([], active)
    return Response(metrics.render([gauge]), media_type=metrics.CONTENT_TYPE)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    hot = scope.get(ROUTE_KEY)
    return hot if isinstance(hot, str) else "unmatched"


async def measure(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` for one HTTP request and count it by route template, method and status."""
    started = time.perf_counter()
    status = 500

    async def send_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_status)
    finally:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        key = (_route_of(scope), method, status)
        children = _CHILDREN.get(key)
        if children is None:
            children = _children(*key)
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        children[2].inc()


# (route, method, status) -> the labelled metrics of such a response. ``labels()`` costs
# ~2 µs a call (lock, label checks); a dict lookup ~0.1. Bounded: route templates, seven
# methods and the statuses the app answers.
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}


def _children(route: str, method: str, status: int) -> tuple[Any, Any, Any]:
    code = str(status)
    children = (
        metrics.REQUESTS.labels(route, method, code),
        metrics.REQUEST_SECONDS.labels(route, method),
        metrics.WORKER_RESPONSES.labels(code),
    )
    _CHILDREN[(route, method, status)] = children
    return children
