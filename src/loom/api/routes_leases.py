"""Routes for leases and allocation (API.md §2.7).

These are the hottest routes under load, so their handlers take the bare ``Request`` and do
the little FastAPI would do for them (access check, body parsing with the same pydantic
models and the same error envelope). Each is declared once, on the router (which puts it in
the OpenAPI document), and marked :func:`~loom.api.middleware.hot`: the app's
:class:`~loom.api.middleware.HotLane` then answers it ahead of the framework stack, whose
per-request cost was a quarter of a claim.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loom.api.access import bool_param, project_access, read_json, write
from loom.api.bodies import parse_body
from loom.api.contract import allocate_links, any_case_enum, operation, operation_id
from loom.api.middleware import hot
from loom.api.models import AllocateBody, ClaimBody, ReleaseBody
from loom.domain.ids import validate_change_id, validate_holder, validate_module_id
from loom.errors import Forbidden
from loom.models import AllocateResult, ClaimResult, ReleaseResult
from loom.service import leases

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}", generate_unique_id_function=operation_id)
# Lease bodies: a holder, TTL or id of the wrong type or missing is a plain 400 (API.md §2.7
# "400 bad ttl/holder"), with the kind the same value would get if it were merely invalid.
_LEASE_FIELDS: Final = {
    "holder": "invalid_id",
    "ttl_seconds": "invalid_ttl",
    "module": "invalid_id",
    "changes": "invalid_id",
    "avoid_overlap": "invalid_request",
}


@router.post(
    "/changes/{change_id}/claim",
    summary="Acquire or renew a lease",
    **operation(ClaimResult, errors=[404, 409], body=ClaimBody),
)
@hot
async def claim(request: Request) -> Response:
    access = await project_access(request)
    body = await parse_body(request, ClaimBody, _LEASE_FIELDS)
    holder = validate_holder(body.holder)
    change_id = request.path_params["change_id"]
    return await write(
        request,
        access,
        leases.claim,
        change_id,
        holder,
        body.ttl_seconds,
        token_name=access.actor.token_name,
    )


@router.post(
    "/changes/{change_id}/heartbeat",
    summary="Renew the holder's lease",
    **operation(ClaimResult, errors=[404, 409], body=ClaimBody),
)
@hot
async def heartbeat(request: Request) -> Response:
    access = await project_access(request)
    body = await parse_body(request, ClaimBody, _LEASE_FIELDS)
    holder = validate_holder(body.holder)
    change_id = request.path_params["change_id"]
    return await write(request, access, leases.heartbeat, change_id, holder, body.ttl_seconds)


@router.post(
    "/changes/{change_id}/release",
    summary="Release a lease (?force=true: admin only)",
    **operation(
        ReleaseResult,
        errors=[404, 409],
        body=ReleaseBody,
        query={"force": any_case_enum(("true", "false", "1", "0"))},
    ),
)
@hot
async def release(request: Request) -> Response:
    access = await project_access(request)
    body = await parse_body(request, ReleaseBody, _LEASE_FIELDS)
    holder = validate_holder(body.holder)
    force = bool_param(request, "force")
    if force and not access.scope.admin:
        raise Forbidden("force release needs an admin token", kind="admin_required")
    change_id = request.path_params["change_id"]
    return await write(
        request, access, leases.release, change_id, holder, force=force, actor=access.actor
    )


@router.get(
    "/changes/{change_id}/lease",
    summary="The active lease of a change",
    **operation(ClaimResult, errors=[404]),
)
async def get_lease(request: Request) -> Any:
    access = await project_access(request)
    return await read_json(
        request, leases.get_active_lease, access.project, request.path_params["change_id"]
    )


@router.get(
    "/leases", summary="Active leases, soonest expiry first", **operation(list[ClaimResult])
)
async def list_leases(request: Request) -> Any:
    access = await project_access(request)
    return await read_json(request, leases.list_leases, access.project)


@router.post(
    "/allocate",
    summary="Lease the next eligible change (atomic)",
    **operation(AllocateResult, errors=[404], body=AllocateBody, links=allocate_links()),
)
@hot
async def allocate(request: Request) -> Response:
    access = await project_access(request)
    body = await parse_body(request, AllocateBody, _LEASE_FIELDS)
    holder = validate_holder(body.holder)
    module = validate_module_id(body.module) if body.module else None
    wanted = [validate_change_id(c) for c in body.changes] if body.changes is not None else None
    return await write(
        request,
        access,
        leases.allocate,
        holder,
        body.ttl_seconds,
        module=module,
        changes=wanted,
        avoid_overlap=body.avoid_overlap,
        token_name=access.actor.token_name,
    )
