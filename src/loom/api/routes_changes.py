"""Routes for changes, bundle sync, archive and tasks (API.md §2.2–2.5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from loom.api.access import Access, bool_param, prepare, project_access, read_json, write
from loom.api.bodies import parse_body
from loom.api.contract import (
    LIFECYCLE,
    MODULE_FILTER,
    STATUS_LIST,
    any_case_enum,
    operation,
    operation_id,
    push_links,
)
from loom.api.models import AddTaskBody, CompleteBody, ShelveBody, SyncPush
from loom.domain.ids import validate_module_id
from loom.domain.statuses import WORK_STATUSES
from loom.errors import ValidationError
from loom.models import (
    ArchiveResult,
    ArtifactBundle,
    ChangeDetail,
    ChangeSummary,
    PushResult,
    RawTasks,
    TaskMutationResult,
    TasksInitResult,
    TasksView,
)
from loom.service import archive, changes, tasks

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{org}/{repo}", generate_unique_id_function=operation_id)
AccessDep = Annotated[Access, Depends(project_access)]
# Writes to a change name the lease they hold (API.md §0 "Leases on writes").
WRITE_HEADERS = ("X-Loom-Holder", "X-Loom-Fencing-Token")


def _lifecycle(value: str | None) -> str:
    text = (value or "active").strip().lower()
    if text not in changes.LIFECYCLES:
        raise ValidationError(
            f"Invalid lifecycle '{(value or '')[:40]}'. Expected active, archived, or all.",
            kind="invalid_lifecycle",
        )
    return text


@router.get(
    "/changes",
    summary="List change summaries (canonical id order, paged)",
    **operation(list[ChangeSummary], response_headers=["X-Next-Cursor"]),
)
async def list_changes(
    request: Request,
    access: AccessDep,
    lifecycle: Annotated[str | None, Query(json_schema_extra=LIFECYCLE)] = None,
    module: Annotated[str | None, Query(json_schema_extra=MODULE_FILTER)] = None,
    status: Annotated[str | None, Query(json_schema_extra=STATUS_LIST)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Response:
    statuses = None
    if status:
        statuses = [s.strip() for s in status.split(",") if s.strip()]
        bad = [s for s in statuses if s not in WORK_STATUSES]
        if bad:
            raise ValidationError(
                f"unknown work status '{bad[0][:40]}'",
                kind="invalid_status",
                allowed=list(WORK_STATUSES),
            )
    module_id = validate_module_id(module) if module else None
    return await read_json(
        request,
        changes.list_summaries,
        access.project,
        page_header="X-Next-Cursor",
        lifecycle=_lifecycle(lifecycle),
        module=module_id,
        statuses=statuses,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/changes/{change_id}",
    summary="One change with artifacts, progress and lease",
    **operation(ChangeDetail, errors=[404]),
)
async def get_change(
    request: Request,
    access: AccessDep,
    change_id: str,
    lifecycle: Annotated[str | None, Query(json_schema_extra=LIFECYCLE)] = None,
) -> Any:
    return await read_json(
        request, changes.change_detail, access.project, change_id, _lifecycle(lifecycle)
    )


@router.get(
    "/changes/{change_id}/sync",
    summary="Pull the artifact bundle (ETag = revision)",
    **operation(ArtifactBundle, errors=[404], response_headers=["ETag"]),
)
async def pull(request: Request, access: AccessDep, change_id: str) -> Response:
    return await read_json(
        request,
        changes.pull_bundle,
        access.project,
        change_id,
        headers=lambda body: {"ETag": f'"{body["revision"]}"'},
    )


@router.post(
    "/changes/{change_id}/sync",
    summary="Push the artifact bundle (full replace)",
    **operation(
        PushResult,
        errors=[404, 409, 412, 428],
        body=SyncPush,
        headers=["If-Match", *WRITE_HEADERS],
        links=push_links(),
    ),
)
async def push(
    request: Request,
    access: AccessDep,
    change_id: str,
    if_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    body = await parse_body(request, SyncPush)
    revision = changes.parse_revision(body.revision)
    if not revision:
        revision = changes.parse_revision(if_match)
    bundle = changes.Bundle(
        body.proposal,
        body.design,
        body.tasks,
        tuple((c, m) for c, m in body.specs),
        spec_bases=body.spec_bases,
    )
    await prepare(request, changes.prepare_push, bundle)
    return await write(
        request, access, changes.push_bundle, change_id, bundle, revision or None, access.actor
    )


@router.post(
    "/changes/{change_id}/archive",
    summary="Archive: merge deltas, mark archived (?force=true: even unfinished or stale)",
    **operation(
        ArchiveResult,
        errors=[404, 409],
        headers=WRITE_HEADERS,
        query={"force": any_case_enum(("true", "false", "1", "0"))},
    ),
)
async def archive_change(request: Request, access: AccessDep, change_id: str) -> Response:
    """409 ``change_unfinished`` with unfinished tasks, 409 ``stale_spec_base`` when a
    requirement the change touches changed since the change's spec base (nothing is
    written); ``?force=true`` (lease holder or admin) overrides both and is recorded in the
    archive event."""
    force = bool_param(request, "force")
    await prepare(request, archive.prepare_archive, access.project, change_id)
    return await write(
        request, access, archive.archive_change, change_id, access.actor, force=force
    )


@router.get(
    "/changes/{change_id}/tasks",
    summary="Parsed tasks, waves, readiness, diagnostics",
    **operation(TasksView, errors=[404]),
)
async def get_tasks(request: Request, access: AccessDep, change_id: str) -> Any:
    return await read_json(request, tasks.get_tasks, access.project, change_id)


@router.get(
    "/changes/{change_id}/tasks/raw",
    summary="The raw tasks.md",
    **operation(RawTasks, errors=[404]),
)
async def get_tasks_raw(request: Request, access: AccessDep, change_id: str) -> Any:
    return await read_json(request, tasks.get_tasks_raw, access.project, change_id)


@router.post(
    "/changes/{change_id}/tasks/init",
    summary="Write the enhanced template if absent",
    **operation(TasksInitResult, errors=[404], headers=WRITE_HEADERS),
)
async def init_tasks(request: Request, access: AccessDep, change_id: str) -> Response:
    return await write(request, access, tasks.init_tasks, change_id, access.actor)


_MAX_WAVE = 9999


async def _mutate(
    request: Request, access: Access, change_id: str, op: str, actor: Any, **kwargs: Any
) -> Response:
    """A task mutation: the rewrite is computed on a worker thread first (memoised), then
    the transaction runs."""
    await prepare(request, tasks.prepare_mutation, access.project, change_id, op, **kwargs)
    return await write(request, access, tasks.mutate_task, change_id, op, actor, **kwargs)


@router.post(
    "/changes/{change_id}/tasks/add",
    summary="Add a task to a wave",
    **operation(TaskMutationResult, errors=[404], body=AddTaskBody, headers=WRITE_HEADERS),
)
async def add_task(request: Request, access: AccessDep, change_id: str) -> Response:
    body = await parse_body(request, AddTaskBody)
    if body.wave is not None and not 1 <= body.wave <= _MAX_WAVE:
        # A rule violation (API.md §2.5: 400 with a kind), not a schema error.
        raise ValidationError(
            f"wave must be between 1 and {_MAX_WAVE}", kind="invalid_wave", field="wave"
        )
    return await _mutate(
        request,
        access,
        change_id,
        "add",
        access.actor,
        title=body.title,
        wave=body.wave,
    )


@router.post(
    "/changes/{change_id}/tasks/{task_id}/start",
    summary="Start a task",
    **operation(TaskMutationResult, errors=[404], headers=WRITE_HEADERS),
)
async def start_task(request: Request, access: AccessDep, change_id: str, task_id: str) -> Response:
    return await _mutate(request, access, change_id, "start", access.actor, task_id=task_id)


@router.post(
    "/changes/{change_id}/tasks/{task_id}/complete",
    summary="Complete a task",
    **operation(
        TaskMutationResult,
        errors=[404],
        body=CompleteBody,
        body_required=False,
        headers=WRITE_HEADERS,
    ),
)
async def complete_task(
    request: Request,
    access: AccessDep,
    change_id: str,
    task_id: str,
) -> Response:
    body = await parse_body(request, CompleteBody, optional=True)
    return await _mutate(
        request,
        access,
        change_id,
        "complete",
        access.actor,
        task_id=task_id,
        note=body.note if body else None,
    )


@router.post(
    "/changes/{change_id}/tasks/{task_id}/shelve",
    summary="Shelve a task",
    **operation(
        TaskMutationResult,
        errors=[404],
        body=ShelveBody,
        body_required=False,
        headers=WRITE_HEADERS,
    ),
)
async def shelve_task(
    request: Request,
    access: AccessDep,
    change_id: str,
    task_id: str,
) -> Response:
    body = await parse_body(request, ShelveBody, optional=True)
    return await _mutate(
        request,
        access,
        change_id,
        "shelve",
        access.actor,
        task_id=task_id,
        reason=body.reason if body else None,
    )


@router.post(
    "/changes/{change_id}/tasks/{task_id}/unshelve",
    summary="Unshelve a task",
    **operation(TaskMutationResult, errors=[404], headers=WRITE_HEADERS),
)
async def unshelve_task(
    request: Request, access: AccessDep, change_id: str, task_id: str
) -> Response:
    return await _mutate(request, access, change_id, "unshelve", access.actor, task_id=task_id)
