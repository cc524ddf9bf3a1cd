"""Routes for leases and allocation (API.md §2.7)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from loom.api.access import Access, project_access, read, write
from loom.api.models import AllocateBody, ClaimBody, ReleaseBody
from loom.domain.ids import validate_change_id, validate_holder, validate_module_id
from loom.errors import Forbidden
from loom.service import leases

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}")
AccessDep = Annotated[Access, Depends(project_access)]


@router.post("/changes/{change_id}/claim", summary="Acquire or renew a lease")
async def claim(request: Request, access: AccessDep, change_id: str, body: ClaimBody) -> Response:
    holder = validate_holder(body.holder)
    return await write(request, access, leases.claim, change_id, holder, body.ttl_seconds)


@router.post("/changes/{change_id}/heartbeat", summary="Renew the holder's lease")
async def heartbeat(
    request: Request, access: AccessDep, change_id: str, body: ClaimBody
) -> Response:
    holder = validate_holder(body.holder)
    return await write(request, access, leases.heartbeat, change_id, holder, body.ttl_seconds)


@router.post("/changes/{change_id}/release", summary="Release a lease (force: admin only)")
async def release(
    request: Request, access: AccessDep, change_id: str, body: ReleaseBody, force: bool = False
) -> Response:
    holder = validate_holder(body.holder)
    if force and not access.scope.admin:
        raise Forbidden("force release needs an admin token", kind="admin_required")
    return await write(
        request, access, leases.release, change_id, holder, force=force, actor=access.actor
    )


@router.get("/changes/{change_id}/lease", summary="The active lease of a change")
async def get_lease(request: Request, access: AccessDep, change_id: str) -> Any:
    return await read(request, leases.get_active_lease, access.project, change_id)


@router.get("/leases", summary="Active leases, soonest expiry first")
async def list_leases(request: Request, access: AccessDep) -> Any:
    return await read(request, leases.list_leases, access.project)


@router.post("/allocate", summary="Lease the next eligible change (atomic)")
async def allocate(request: Request, access: AccessDep, body: AllocateBody) -> Response:
    holder = validate_holder(body.holder)
    module = validate_module_id(body.module) if body.module else None
    wanted = [validate_change_id(c) for c in body.changes] if body.changes is not None else None
    return await write(
        request, access, leases.allocate, holder, body.ttl_seconds, module=module, changes=wanted
    )
