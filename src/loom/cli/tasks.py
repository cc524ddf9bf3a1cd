"""``loom tasks …``: task operations on the server (status, next, start, complete, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loom.cli._app import app
from loom.cli._common import ChangeArg, Ctx, TaskArg, agent_command, emit_json, err, out, table
from loom.errors import ValidationError

if TYPE_CHECKING:
    from loom.client import LocalCopy, TaskItem

__all__ = ["tasks_app"]

tasks_app = typer.Typer(
    name="tasks",
    help="Task operations on the server (each write bumps the change's revision).",
    no_args_is_help=True,
)
app.add_typer(tasks_app)


def _sync_local(
    cx: Ctx, result_change: str, revision: str | None, before: LocalCopy | None
) -> None:
    """Keep an in-step local copy (``loom pull``) in step after the server-side write, and
    say so when it is not (unpushed local edits are never replaced)."""
    if before is None:
        return
    if before.edited:
        err(
            f"note: {before.path}/tasks.md was not updated: it has unpushed local edits "
            f"({', '.join(before.edited)}); `loom push {result_change}` them, or "
            f"`loom pull {result_change}` to take the server's copy (yours is backed up)"
        )
        return
    if before.behind:
        err(
            f"note: {before.path} is at revision {before.local_revision}, the server was at "
            f"{before.server_revision} before this write: `loom pull {result_change}`"
        )
        return
    from loom.client import refresh_local_tasks

    refreshed = refresh_local_tasks(
        cx.client, result_change, cx.ito_dir(None), cx.state, revision, before
    )
    if refreshed is not None:
        err(f"updated {refreshed / 'tasks.md'} (revision {revision})")


def _before(cx: Ctx, change_id: str) -> LocalCopy | None:
    ito_dir = cx.ito_dir(None)
    if not (ito_dir / "changes" / change_id).is_dir():
        # No local copy (local_copy would say so too): the sync helpers and the models
        # they parse stay unimported, so a task write starts faster.
        return None
    from loom.client import local_copy

    return local_copy(cx.client, change_id, ito_dir)


def _print_mutation(cx: Ctx, result: dict[str, Any], verb: str, before: LocalCopy | None) -> None:
    """Print a task write's result, the API's ``TaskMutationResult`` body as JSON data.

    The text line reads the data as it is; only ``--json`` builds the model (pydantic), for
    its full shape (fields the server left out shown as null)."""
    change_id, revision, task = result["change_id"], result.get("revision"), result["task"]
    _sync_local(cx, change_id, revision, before)
    if cx.json:
        from loom.models import TaskMutationResult

        emit_json(TaskMutationResult.model_validate(result).to_json())
        return
    rev = f" (revision {revision})" if revision else ""
    status = task.get("status", "pending")
    out(f"{verb} {change_id} task {task['id']}: {task['name']} [{status}]{rev}")


def _mutate(
    cx: Ctx,
    change: str,
    task: str,
    verb: str,
    wanted: str,
    call: Callable[[str], dict[str, Any]],
) -> None:
    """Resolve the change, run the write, and treat "already <wanted>" as success."""
    change_id = cx.change(change)
    before = _before(cx, change_id)
    try:
        result = call(change_id)
    except ValidationError as error:
        if error.kind == "task_invalid_state" and error.details.get("status") == wanted:
            if cx.json:
                emit_json(
                    {"change_id": change_id, "task_id": task, "status": wanted, "changed": False}
                )
            else:
                out(f"{change_id} task {task} is already {wanted}: nothing to do")
            return
        raise
    _print_mutation(cx, result, verb, before)


@agent_command(tasks_app, "status")
def status(cx: Ctx, change: ChangeArg) -> None:
    """List the tasks of a change with their status, progress and diagnostics."""
    view = cx.client.get_tasks(change)
    if cx.json:
        emit_json(view.to_json())
        return
    p = view.progress
    rows = [(t.id, t.wave if t.wave is not None else "-", t.status, t.name) for t in view.tasks]
    if rows:
        table(["TASK", "WAVE", "STATUS", "NAME"], rows)
    out(
        f"{view.change_id} ({view.format}): {p.complete}/{p.total} complete, "
        f"{p.in_progress} in progress, {p.shelved} shelved, {p.pending} pending"
    )
    for task_id, reasons in view.blocked.items():
        err(f"blocked {task_id}: {'; '.join(reasons)}")
    for diag in view.diagnostics:
        where = f" (task {diag.task_id})" if diag.task_id else ""
        err(f"{diag.level}: {diag.message}{where}")


@agent_command(tasks_app, "next")
def next_task(cx: Ctx, change: ChangeArg) -> None:
    """Show the task to work on: the one in progress, else the first ready one."""
    view = cx.client.get_tasks(change)
    chosen: TaskItem | None = next((t for t in view.tasks if t.status == "in-progress"), None)
    reason = "in-progress"
    if chosen is None:
        by_id = {t.id: t for t in view.tasks}
        chosen = next((by_id[i] for i in view.ready if i in by_id), None)
        reason = "ready"
    if cx.json:
        emit_json(
            {
                "change_id": view.change_id,
                "task": chosen.to_json() if chosen else None,
                "reason": reason if chosen else "none",
            }
        )
        return
    if chosen is None:
        err(f"{view.change_id}: no task is ready")
        return
    out(f"{chosen.id} {chosen.name}")
    err(f"({reason})")


@agent_command(tasks_app, "start")
def start(cx: Ctx, change: ChangeArg, task: TaskArg) -> None:
    """Mark a task in progress (exit 3 when blocked or not pending; 0 if already started)."""
    _mutate(
        cx,
        change,
        task,
        "started",
        "in-progress",
        lambda c: cx.client.task_action_json(c, task, "start", fencing_token=cx.fencing_token(c)),
    )


@agent_command(tasks_app, "complete")
def complete(
    cx: Ctx,
    change: ChangeArg,
    task: TaskArg,
    note: Annotated[str | None, typer.Option("--note", help="Kept in the audit event.")] = None,
) -> None:
    """Mark a task complete (exit 3 when blocked or shelved; 0 if already complete)."""
    _mutate(
        cx,
        change,
        task,
        "completed",
        "complete",
        lambda c: cx.client.task_action_json(
            c,
            task,
            "complete",
            {} if note is None else {"note": note},
            fencing_token=cx.fencing_token(c),
        ),
    )


@agent_command(tasks_app, "shelve")
def shelve(
    cx: Ctx,
    change: ChangeArg,
    task: TaskArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Kept in the audit event.")] = None,
) -> None:
    """Shelve a task (enhanced format only; 0 if already shelved)."""
    _mutate(
        cx,
        change,
        task,
        "shelved",
        "shelved",
        lambda c: cx.client.task_action_json(
            c,
            task,
            "shelve",
            {} if reason is None else {"reason": reason},
            fencing_token=cx.fencing_token(c),
        ),
    )


@agent_command(tasks_app, "unshelve")
def unshelve(cx: Ctx, change: ChangeArg, task: TaskArg) -> None:
    """Return a shelved task to pending (0 if it is already pending)."""
    _mutate(
        cx,
        change,
        task,
        "unshelved",
        "pending",
        lambda c: cx.client.task_action_json(
            c, task, "unshelve", fencing_token=cx.fencing_token(c)
        ),
    )


@agent_command(tasks_app, "add")
def add(
    cx: Ctx,
    change: ChangeArg,
    title: Annotated[str, typer.Argument(help="Title of the new task.")],
    wave: Annotated[int | None, typer.Option("--wave", help="Wave (default 1).")] = None,
) -> None:
    """Append a task to a wave of an enhanced-format task list."""
    change_id = cx.change(change)
    before = _before(cx, change_id)
    result = cx.client.add_task(
        change_id, title, wave=wave, fencing_token=cx.fencing_token(change_id)
    )
    _print_mutation(cx, result.to_json(), "added", before)


@agent_command(tasks_app, "init")
def init(cx: Ctx, change: ChangeArg) -> None:
    """Write the enhanced tasks.md template when the change has no tasks yet."""
    change_id = cx.change(change)
    before = _before(cx, change_id)
    result = cx.client.init_tasks(change_id, fencing_token=cx.fencing_token(change_id))
    if not result.existed:
        _sync_local(cx, result.change_id, result.revision, before)
    if cx.json:
        emit_json(result.to_json())
        return
    out(
        f"{result.change_id}: tasks already existed"
        if result.existed
        else f"{result.change_id}: tasks template written"
    )


@agent_command(tasks_app, "raw")
def raw(cx: Ctx, change: ChangeArg) -> None:
    """Print the change's tasks.md as stored on the server."""
    result = cx.client.get_tasks_raw(change)
    if cx.json:
        emit_json(result.to_json())
        return
    if result.content is None:
        err(f"{result.change_id}: no tasks.md")
        return
    typer.echo(result.content, nl=False)
