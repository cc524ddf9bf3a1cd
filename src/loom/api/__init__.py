"""``loom.api``: the HTTP layer (FastAPI); ``loom.api.app.create_app`` builds the server."""

from __future__ import annotations

__all__: list[str] = []
