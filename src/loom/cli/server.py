"""Operator commands: ``loom serve``, ``loom token``, ``loom db`` (filled in by the Server work)."""

from __future__ import annotations
