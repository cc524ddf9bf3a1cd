"""Routes for overlaps between changes and spec history (docs/overlaps.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request

from loom.api.access import Access, project_access, read_json
from loom.api.contract import operation, operation_id
from loom.domain.ids import validate_spec_id
from loom.models import ChangeOverlaps, ProjectOverlaps, SpecHistory
from loom.service import catalog, overlaps

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}", generate_unique_id_function=operation_id)
AccessDep = Annotated[Access, Depends(project_access)]


@router.get(
    "/changes/{change_id}/overlaps",
    summary="Changes touching the same requirements (strong) or capabilities (weak)",
    **operation(ChangeOverlaps, errors=[404]),
)
async def change_overlaps(request: Request, access: AccessDep, change_id: str) -> Any:
    """The other unarchived changes whose deltas touch a requirement this change touches
    (strong), or only one of its capabilities (weak): the shared requirements with each
    side's operations, the other change's work status and lease holder."""
    return await read_json(request, overlaps.change_overlaps, access.project, change_id)


@router.get(
    "/overlaps",
    summary="Every overlapping pair of unarchived changes",
    **operation(ProjectOverlaps),
)
async def project_overlaps(
    request: Request,
    access: AccessDep,
    strength: Literal["strong", "weak"] | None = None,
) -> Any:
    """Pairs ``a``/``b`` in canonical order; ``strength`` filters."""
    return await read_json(request, overlaps.project_overlaps, access.project, strength=strength)


@router.get(
    "/specs/{spec_id}/history",
    summary="A spec's revisions: what produced each and when",
    **operation(SpecHistory, errors=[404]),
)
async def spec_history(request: Request, access: AccessDep, spec_id: str) -> Any:
    """Oldest first. ``change_id`` names the archived change that produced a revision
    (null for an import or PUT); ``deleted`` marks a revision that removed the spec."""
    return await read_json(
        request, catalog.get_spec_history, access.project, validate_spec_id(spec_id)
    )
