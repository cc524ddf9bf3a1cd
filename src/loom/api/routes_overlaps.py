"""Routes for overlaps between changes and spec history (docs/overlaps.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request

from loom.api.access import Access, project_access, read
from loom.api.models_overlaps import (
    ERROR_RESPONSES,
    ChangeOverlapsOut,
    ProjectOverlapsOut,
    SpecHistoryOut,
)
from loom.domain.ids import validate_spec_id
from loom.service import catalog, overlaps

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}")
AccessDep = Annotated[Access, Depends(project_access)]


@router.get(
    "/changes/{change_id}/overlaps",
    summary="Changes touching the same requirements (strong) or capabilities (weak)",
    response_model=ChangeOverlapsOut,
    responses=ERROR_RESPONSES,
)
async def change_overlaps(request: Request, access: AccessDep, change_id: str) -> Any:
    """The other unarchived changes whose deltas touch a requirement this change touches
    (strong), or only one of its capabilities (weak): the shared requirements with each
    side's operations, the other change's work status and lease holder."""
    return await read(request, overlaps.change_overlaps, access.project, change_id)


@router.get(
    "/overlaps",
    summary="Every overlapping pair of unarchived changes",
    response_model=ProjectOverlapsOut,
    responses=ERROR_RESPONSES,
)
async def project_overlaps(
    request: Request,
    access: AccessDep,
    strength: Literal["strong", "weak"] | None = None,
) -> Any:
    """Pairs ``a``/``b`` in canonical order; ``strength`` filters."""
    return await read(request, overlaps.project_overlaps, access.project, strength=strength)


@router.get(
    "/specs/{spec_id}/history",
    summary="A spec's revisions: what produced each and when",
    response_model=SpecHistoryOut,
    responses=ERROR_RESPONSES,
)
async def spec_history(request: Request, access: AccessDep, spec_id: str) -> Any:
    """Oldest first. ``change_id`` names the archived change that produced a revision
    (null for an import or PUT); ``deleted`` marks a revision that removed the spec."""
    return await read(request, catalog.get_spec_history, access.project, validate_spec_id(spec_id))
