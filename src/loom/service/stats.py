"""Figures about the whole server, for ``/metrics``."""

from __future__ import annotations

from loom.service._context import ServiceContext
from loom.store.stats import count_active_leases

__all__ = ["active_leases"]


def active_leases(ctx: ServiceContext) -> int:
    """Leases held right now, over every project (server clock)."""
    with ctx.db.read() as conn:
        return count_active_leases(conn, ctx.now_us())
