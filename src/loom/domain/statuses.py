"""The derived work statuses of a change (ito-domain.md §3.3), in lifecycle order.

A module of its own so that the CLI can check ``--status`` without importing the tasks
parser."""

from __future__ import annotations

from typing import Final

__all__ = ["WORK_STATUSES"]

WORK_STATUSES: Final = ("draft", "ready", "in-progress", "paused", "complete")
