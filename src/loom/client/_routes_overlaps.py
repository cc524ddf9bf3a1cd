"""Overlap and spec-history routes (docs/overlaps.md).

Each method imports the model it returns in its body, not at module level: a ``loom``
command whose routes parse no model never imports pydantic (tests/cli/test_startup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.client._base import BaseClient

if TYPE_CHECKING:
    from loom.models import ChangeOverlaps, ProjectOverlaps, SpecHistory

__all__ = ["OverlapsAPI"]


class OverlapsAPI(BaseClient):
    """Which changes touch the same requirements, and how specs changed over time."""

    def change_overlaps(self, change_id: str) -> ChangeOverlaps:
        """``GET /changes/{id}/overlaps``: the unarchived changes touching a requirement
        (strong) or only a capability (weak) this change touches, strong ones first."""
        from loom.models import ChangeOverlaps

        response = self._request("GET", self._project_path("changes", change_id, "overlaps"))
        return ChangeOverlaps.model_validate(self._json(response))

    def overlaps(self, *, strength: str | None = None) -> ProjectOverlaps:
        """``GET /overlaps``: every overlapping pair (``strength``: ``strong``/``weak``)."""
        from loom.models import ProjectOverlaps

        response = self._request(
            "GET", self._project_path("overlaps"), params={"strength": strength}
        )
        return ProjectOverlaps.model_validate(self._json(response))

    def spec_history(self, spec_id: str) -> SpecHistory:
        """``GET /specs/{id}/history``: every revision, oldest first."""
        from loom.models import SpecHistory

        response = self._request("GET", self._project_path("specs", spec_id, "history"))
        return SpecHistory.model_validate(self._json(response))
