"""``GET /`` and the API docs page, with Swagger UI served from the package (works offline).

The Swagger UI files are ``swagger-ui-dist`` 5 (OpenAPI 3.1), vendored unmodified under
``loom/api/static/swagger/`` with their licence. ``GET /`` redirects to the docs page (a
dashboard at ``/ui/``, when there is one, is the better target; see the note below).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

__all__ = ["DOCS_URL", "install_docs"]

DOCS_URL = "/api/v1/docs"
_ASSETS_URL = "/api/v1/docs/assets"
_ASSETS = Path(__file__).parent / "static" / "swagger"


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Add ``GET /`` (redirect), ``GET /api/v1/docs`` and the Swagger UI assets."""
    app.mount(_ASSETS_URL, StaticFiles(directory=_ASSETS), name="swagger-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title="Loom API",
            swagger_js_url=f"{_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{_ASSETS_URL}/favicon-32x32.png",
        )

    # Note: when the dashboard (/ui/) exists, it is the better target for a browser.
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(DOCS_URL, status_code=307)
