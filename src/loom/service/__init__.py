"""``loom.service``: the use cases, one database transaction each.

The context every use case takes (database, policy, clock) and the request's project and
actor are public here; the use cases are the submodules (``loom.service.changes``, ...).
"""

from __future__ import annotations

from loom.service._context import (
    Actor,
    Policy,
    Project,
    ServiceContext,
    open_context,
    system_clock_us,
)

__all__ = ["Actor", "Policy", "Project", "ServiceContext", "open_context", "system_clock_us"]
