"""Routes for auth verify, modules, specs, bulk import/export and events (API.md §2.1, 2.6, 2.8)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from loom.api import _bigjson as bigjson
from loom.api._bigjson import LARGE_BODY
from loom.api._scope import BODY_KEY
from loom.api.access import Access, prepare, project_access, read_json, write
from loom.api.bodies import parse_body
from loom.api.contract import operation, operation_id
from loom.api.middleware import hot
from loom.api.models import EventsBody, ImportBody, ModulePut, SpecPut
from loom.domain.timefmt import parse_rfc3339_us
from loom.errors import ValidationError
from loom.models import (
    AuditEvent,
    AuthInfo,
    ImportResult,
    IngestResult,
    ModuleDetail,
    ModuleSummary,
    ProjectSnapshot,
    SpecDocument,
    SpecSummary,
)
from loom.service import catalog, events, imports

__all__ = ["router"]

# PostgreSQL refuses NUL in text parameters (a 500): such a filter is a 400 instead.
_NO_NUL = r"^[^\x00]*$"

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}", generate_unique_id_function=operation_id)
AccessDep = Annotated[Access, Depends(project_access)]


@router.get("/auth/verify", summary="Check the token and report its scope", **operation(AuthInfo))
async def verify(access: AccessDep) -> Any:
    body: dict[str, Any] = {"valid": True, "scope": access.scope.kind}
    if access.scope.kind == "project":
        body["org"] = access.project.org
        body["repo"] = access.project.repo
    body["project_id"] = access.project.name
    if access.scope.name is not None:
        body["token_name"] = access.scope.name
        body["access"] = (
            "read" if access.scope.read_only else ("admin" if access.scope.admin else "write")
        )
    return body


@router.get(
    "/modules",
    summary="Modules with sub-modules and active change counts",
    **operation(list[ModuleSummary]),
)
async def list_modules(request: Request, access: AccessDep) -> Any:
    return await read_json(request, catalog.list_modules, access.project)


@router.get(
    "/modules/{module_id}",
    summary="One module (or sub-module)",
    **operation(ModuleDetail, errors=[404]),
)
async def get_module(request: Request, access: AccessDep, module_id: str) -> Any:
    return await read_json(request, catalog.get_module, access.project, module_id)


@router.put(
    "/modules/{module_id}",
    summary="Create or replace a module or sub-module",
    **operation(ModuleDetail, errors=[404], body=ModulePut),
)
async def put_module(request: Request, access: AccessDep, module_id: str) -> Response:
    body = await parse_body(request, ModulePut)
    return await write(
        request,
        access,
        catalog.put_module,
        module_id,
        name=body.name,
        description=body.description,
        markdown=body.markdown,
        actor=access.actor,
    )


@router.get("/specs", summary="Promoted specs, sorted by id", **operation(list[SpecSummary]))
async def list_specs(request: Request, access: AccessDep) -> Any:
    return await read_json(request, catalog.list_specs, access.project)


@router.get(
    "/specs/{spec_id}",
    summary="One promoted spec (?revision=N: its text at that revision)",
    **operation(SpecDocument, errors=[404]),
)
async def get_spec(
    request: Request,
    access: AccessDep,
    spec_id: str,
    revision: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Any:
    return await read_json(request, catalog.get_spec, access.project, spec_id, revision)


@router.put(
    "/specs/{spec_id}",
    summary="Create or replace a promoted spec",
    **operation(SpecDocument, body=SpecPut),
)
async def put_spec(request: Request, access: AccessDep, spec_id: str) -> Response:
    body = await parse_body(request, SpecPut)
    return await write(
        request, access, catalog.put_spec, spec_id, body.markdown, actor=access.actor
    )


def _archived_us(value: str | None, change_id: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_rfc3339_us(value)
    except ValueError as exc:
        raise ValidationError(
            f"change '{change_id[:130]}': archived_at is not an RFC 3339 timestamp",
            kind="invalid_timestamp",
        ) from exc


@router.post(
    "/import",
    summary="Bulk-load a whole .ito/ tree's state (one transaction)",
    **operation(ImportResult, body=ImportBody),
)
async def import_tree(request: Request, access: AccessDep) -> Response:
    body = await parse_body(request, ImportBody)
    from loom.domain.ids import validate_change_id, validate_spec_id

    changes = [
        imports.ImportChange(
            id=validate_change_id(c.id),
            proposal=c.proposal,
            design=c.design,
            tasks=c.tasks,
            specs=tuple((cap, md) for cap, md in c.specs),
            metadata=c.metadata,
            archived_us=_archived_us(c.archived_at, c.id),
        )
        for c in body.changes
    ]
    specs = [imports.ImportSpec(validate_spec_id(s.id), s.markdown) for s in body.specs]
    modules = [imports.ImportModule(m.id, m.name, m.markdown, m.description) for m in body.modules]
    await prepare(request, imports.prepare_import, modules, changes)
    return await write(
        request,
        access,
        imports.import_tree,
        mode=body.mode,
        modules=modules,
        specs=specs,
        changes=changes,
        actor=access.actor,
    )


@router.get(
    "/export",
    summary="The whole project in the POST /import body shape",
    **operation(ProjectSnapshot),
)
async def export(request: Request, access: AccessDep) -> Any:
    return await read_json(request, imports.export_project, access.project)


def _events_body(raw: bytes) -> tuple[list[Any], str, bool] | None:
    """(events, idempotency_key, decoded by orjson) when the body has the right shape.

    ``orjson`` first (it refuses NaN, Infinity and lone surrogates); then the standard
    decoder, which accepts those and leaves them to the per-event checks that name the field,
    as for any other route. None: let the model produce the exact error."""
    try:
        if len(raw) > LARGE_BODY:  # the standard decoder's reading, in steps
            data, strict = bigjson.loads(raw), False
        else:
            data, strict = orjson.loads(raw), True
    except orjson.JSONDecodeError:
        try:
            data, strict = json.loads(raw), False
        except (ValueError, RecursionError):
            return None
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    items, key = data.get("events"), data.get("idempotency_key", "")
    if not isinstance(items, list) or not isinstance(key, str):
        return None
    return items, key, strict


@router.post(
    "/events",
    summary="Ingest a batch of audit events (idempotent per key)",
    **operation(IngestResult, body=EventsBody),
)
@hot
async def ingest(request: Request) -> Response:
    """Served by the hot lane: batches of hundreds of events skip the framework's generic
    body handling (decode, model validation of every element as ``Any``)."""
    access = await project_access(request)
    raw = request.scope.get(BODY_KEY)
    if raw is None:
        raw = await request.body()
    # A large batch is decoded on a worker thread, in small steps (loom.api._bigjson).
    parsed = (
        await run_in_threadpool(_events_body, raw) if len(raw) > LARGE_BODY else _events_body(raw)
    )
    if parsed is None:
        body = await parse_body(request, EventsBody)  # raises the exact 400/422
        parsed = (body.events, body.idempotency_key, False)
    items, key, strict = parsed
    return await write(
        request,
        access,
        events.ingest_events,
        items,
        key,
        strict_json=strict,
        token_name=access.actor.token_name,
    )


@router.get(
    "/events",
    summary="Audit events in append order, with seq",
    **operation(list[AuditEvent], response_headers=["X-Next-Since"]),
)
async def list_events(
    request: Request,
    access: AccessDep,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int | None, Query(ge=1, le=5000)] = None,
    entity: Annotated[str | None, Query(max_length=100, pattern=_NO_NUL)] = None,
    scope: Annotated[str | None, Query(max_length=200, pattern=_NO_NUL)] = None,
    op: Annotated[str | None, Query(max_length=100, pattern=_NO_NUL)] = None,
) -> Response:
    return await read_json(
        request,
        events.read_events,
        access.project,
        page_header="X-Next-Since",
        since=since,
        limit=limit,
        entity=entity,
        scope=scope,
        op=op,
    )
