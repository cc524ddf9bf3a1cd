"""``loom.domain``: the pure rules (ids, tasks, spec deltas, modules, events, leases)."""

from __future__ import annotations

__all__: list[str] = []
