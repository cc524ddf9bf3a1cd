"""``loom.store``: SQL (SQLAlchemy Core and Alembic) behind ``loom.service``."""

from __future__ import annotations

__all__: list[str] = []
