"""``loom status``, ``loom changes``, ``loom show``: read-only views of the server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loom.cli._app import app
from loom.cli._common import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_OK,
    Ctx,
    ModuleOption,
    agent_command,
    check_change_id,
    emit_json,
    err,
    error_json,
    exit_code_for,
    out,
    split_statuses,
    table,
)
from loom.cli._format import format_lease as _lease_text
from loom.cli._format import format_time
from loom.cli.overlaps import describe_overlap, overlaps_of, strong_overlap_counts
from loom.client import ChangeSummary, LeaseInfo
from loom.errors import LoomError

__all__ = ["format_lease"]


def format_lease(lease: LeaseInfo | None) -> str:
    """``holder (expires in 14 min)`` or ``-``."""
    if lease is None:
        return "-"
    return _lease_text(lease.holder, lease.expires_at)


@agent_command(app, "status")
def status(cx: Ctx) -> int:
    """Check server health, readiness and the token's scope for the project.

    Exits 0 only when all are good (5 when unreachable, 6 on an auth failure).
    """
    config = cx.config
    report: dict[str, Any] = {
        "url": config.url.value,
        "project": config.project.value,
        "holder": config.holder.value,
        "health": None,
        "ready": None,
        "auth": None,
        "errors": [],
    }
    code = EXIT_OK
    client = cx.client
    failure: LoomError | None = None
    try:
        report["health"] = client.health().to_json()
        ready = client.ready()
        report["ready"] = ready.to_json()
        if not ready.ok:
            report["errors"].append(f"server not ready: {ready.reason or ready.status}")
            code = EXIT_ERROR
        report["auth"] = client.verify().to_json()
    except LoomError as error:
        report["errors"].append(error.message)
        code = exit_code_for(error)
        failure = error
    report["ok"] = code == EXIT_OK
    if cx.json:
        if failure is not None:  # the one --json error shape, with the report beside it
            emit_json(error_json(failure, code) | {"status": report})
        elif code:
            emit_json(
                {
                    "error": report["errors"][0],
                    "code": "service_unavailable",
                    "kind": "not_ready",
                    "exit_code": code,
                    "status": report,
                }
            )
        else:
            emit_json(report)
        return code
    out(f"server:  {report['url']}")
    health = report["health"]
    health_text = f"{health['status']} {health.get('version')}" if health else "unreachable"
    out(f"health:  {health_text}")
    ready_data = report["ready"]
    out(f"ready:   {ready_data['status'] if ready_data else '-'}")
    auth = report["auth"]
    if auth:
        auth_text = auth["scope"] + " token"
    elif code == EXIT_AUTH:
        auth_text = "failed"
    else:
        auth_text = "not checked"  # the token check was never answered
    out(f"auth:    {auth_text}")
    out(f"project: {report['project'] or '-'}")
    out(f"holder:  {report['holder']}")
    for problem in report["errors"]:
        err(f"error: {problem}")
    return code


def _progress(summary: ChangeSummary) -> str:
    if summary.total_tasks == 0:
        return "-"
    return f"{summary.completed_tasks}/{summary.total_tasks}"


@agent_command(app, "changes")
def changes(
    cx: Ctx,
    all_: Annotated[bool, typer.Option("--all", help="Active and archived changes.")] = False,
    archived: Annotated[bool, typer.Option("--archived", help="Archived changes only.")] = False,
    module: ModuleOption = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only these work statuses (draft, ready, in-progress, paused, complete); "
            "repeat or comma-separate.",
        ),
    ] = None,
) -> None:
    """List changes with progress, work status, revision and lease holder."""
    if all_ and archived:
        raise typer.BadParameter("use either --all or --archived")
    lifecycle = "all" if all_ else "archived" if archived else "active"
    statuses = split_statuses(status)
    items = list(
        cx.client.iter_changes(lifecycle=lifecycle, module=module, status=statuses or None)
    )
    if cx.json:
        emit_json([item.to_json() for item in items])
        return
    if not items:
        err("no changes")
        return
    # Marker: how many other changes share a requirement with this one (`loom overlaps ID`).
    counts = strong_overlap_counts(cx.client) if lifecycle != "archived" else {}
    rows = [
        (
            item.id,
            item.work_status + (" (archived)" if item.archived_at else ""),
            _progress(item),
            item.revision or "-",
            format_lease(item.lease),
            f"!{counts[item.id]}" if item.id in counts and not item.archived_at else "-",
        )
        for item in items
    ]
    table(["CHANGE", "STATUS", "TASKS", "REV", "LEASE", "OVERLAPS"], rows, keep=(0,))


_MARK = {"complete": "[x]", "in-progress": "[~]", "shelved": "[-]", "pending": "[ ]"}


@agent_command(app, "show")
def show(
    cx: Ctx,
    change: Annotated[
        str,
        typer.Argument(help="Change id (short forms like 1-2 work).", callback=check_change_id),
    ],
) -> None:
    """Show one change: artifacts, progress, tasks and lease."""
    detail = cx.client.get_change(change, lifecycle="all")
    tasks = cx.client.get_tasks(detail.id)
    overlapping = [] if detail.archived_at is not None else overlaps_of(cx.client, detail.id)
    if cx.json:
        emit_json(
            {
                "change": detail.to_json(),
                "tasks": tasks.to_json(),
                "overlaps": [o.to_json() for o in overlapping],
            }
        )
        return
    progress = detail.progress
    out(f"change:    {detail.id}")
    out(f"module:    {detail.sub_module_id or detail.module_id or '-'}")
    out(f"status:    {detail.work_status or '-'}")
    out(f"revision:  {detail.revision or '-'}")
    if detail.archived_at is not None:
        out(f"archived:  {format_time(detail.archived_at)}")
    lease = detail.lease
    lease_text = format_lease(lease)
    if lease is not None:
        lease_text += f", until {format_time(lease.expires_at)}"
    out(f"lease:     {lease_text}")
    artifacts = [
        name
        for name, present in (("proposal", detail.proposal), ("design", detail.design))
        if present
    ]
    out(f"artifacts: {', '.join(artifacts) or '-'}")
    out(f"specs:     {', '.join(s.name for s in detail.specs) or '-'}")
    out(f"overlaps:  {'; '.join(describe_overlap(o) for o in overlapping) or '-'}")
    out(
        f"progress:  {progress.complete}/{progress.total} complete, "
        f"{progress.in_progress} in progress, {progress.shelved} shelved, "
        f"{progress.pending} pending"
    )
    if tasks.tasks:
        out("tasks:")
        for task in tasks.tasks:
            out(f"  {_MARK.get(task.status, '[?]')} {task.id} {task.name}")
