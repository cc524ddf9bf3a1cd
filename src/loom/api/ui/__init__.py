"""The live dashboard served under ``/ui/`` (see :mod:`loom.api.ui.routes`)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from loom.api.ui.routes import router

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Add the dashboard's routes and its static files (htmx, its SSE extension, CSS, JS)."""
    app.mount("/ui/static", StaticFiles(packages=[("loom.api.ui", "static")]), name="ui-static")
    app.router.routes.extend(router.routes)
