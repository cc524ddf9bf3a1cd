"""Use cases for a change's tasks: read, init, and the status mutations (each one transaction)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import date
from typing import Any

from loom.domain import tasks as t
from loom.domain.timefmt import date_of_us
from loom.errors import LoomError, NotFound
from loom.service._common import (
    audit,
    change_not_found,
    check_lease,
    record,
    require_change,
    resolve_read_target,
    server_event,
    write_pid,
)
from loom.service._context import Actor, Project, ServiceContext
from loom.service._derive import derive
from loom.service._limits import check_artifact
from loom.store.changes import get_change, get_specs, update_change

__all__ = ["get_tasks", "get_tasks_raw", "init_tasks", "mutate_task", "prepare_mutation"]


def _missing(change_id: str) -> NotFound:
    return NotFound(
        f'No backend tasks found for "{change_id}". Run "ito tasks init {change_id}" first.',
        kind="tasks_missing",
        change_id=change_id,
    )


def get_tasks(ctx: ServiceContext, project: Project, target: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        change_id = resolve_read_target(conn, pid, target, "all")
        assert pid is not None
        row = get_change(conn, pid, change_id)
        if row is None:
            raise change_not_found(target)
    result = t.parse_tasks(row.tasks)
    ready, blocked = t.compute_ready_blocked(result)
    return {
        "change_id": change_id,
        "format": result.format,
        "tasks": [task.to_dict() for task in result.tasks],
        "waves": [{"wave": w.wave, "depends_on": list(w.depends_on)} for w in result.waves],
        "progress": result.progress.to_dict(),
        "ready": ready,
        "blocked": blocked,
        "diagnostics": [d.to_dict() for d in result.diagnostics],
        "revision": str(row.revision),
    }


def get_tasks_raw(ctx: ServiceContext, project: Project, target: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        change_id = resolve_read_target(conn, pid, target, "all")
        assert pid is not None
        row = get_change(conn, pid, change_id)
        if row is None:
            raise change_not_found(target)
    body: dict[str, Any] = {"change_id": change_id}
    if row.tasks is not None:
        body["content"] = row.tasks
    return body


def init_tasks(
    ctx: ServiceContext, project: Project, change_id: str, actor: Actor
) -> dict[str, Any]:
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        row = require_change(conn, pid, change_id)
        check_lease(ctx, conn, pid, change_id, actor)
        if row.tasks is not None:
            return {"change_id": change_id, "existed": True, "revision": str(row.revision)}
        markdown = t.tasks_template(change_id, date_of_us(now))
        specs = get_specs(conn, pid, change_id)
        derived = derive(change_id, row.proposal, row.design, markdown, specs)
        update_change(
            conn,
            pid,
            change_id,
            tasks=markdown,
            revision=row.revision + 1,
            updated_us=now,
            **derived.values(),
        )
        audit(
            conn,
            pid,
            now,
            entity="change",
            entity_id=change_id,
            op="tasks_init",
            by=actor.by,
            meta={"old_revision": str(row.revision), "new_revision": str(row.revision + 1)},
        )
    return {"change_id": change_id, "existed": False, "revision": str(row.revision + 1)}


Mutation = Callable[[str, date], "t.TaskMutation"]


def _apply_op(
    markdown: str, op: str, today: date, task_id: str | None, title: str | None, wave: int | None
) -> t.TaskMutation:
    if op == "add":
        assert title is not None
        return t.add_task(markdown, title, wave, today)
    assert task_id is not None
    if op == "start":
        return t.start_task(markdown, task_id, today)
    if op == "complete":
        return t.complete_task(markdown, task_id, today)
    if op == "shelve":
        return t.shelve_task(markdown, task_id, today)
    if op == "unshelve":
        return t.unshelve_task(markdown, task_id, today)
    raise ValueError(op)  # pragma: no cover - routes only pass the ops above


def prepare_mutation(
    ctx: ServiceContext,
    project: Project,
    change_id: str,
    op: str,
    *,
    task_id: str | None = None,
    title: str | None = None,
    wave: int | None = None,
    **_: Any,
) -> None:
    """Compute :func:`mutate_task`'s rewrite of the stored tasks.md ahead of its transaction
    (on a worker thread): the transaction then finds it memoised (``loom.domain._memo``).
    Read-only; any error is left for the real call to raise."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        row = None if pid is None else get_change(conn, pid, change_id)
    if row is None or row.tasks is None:
        return
    with contextlib.suppress(LoomError):
        _apply_op(row.tasks, op, date_of_us(ctx.now_us()), task_id, title, wave)


def mutate_task(
    ctx: ServiceContext,
    project: Project,
    change_id: str,
    op: str,
    actor: Actor,
    *,
    task_id: str | None = None,
    note: str | None = None,
    reason: str | None = None,
    title: str | None = None,
    wave: int | None = None,
) -> dict[str, Any]:
    """Apply one task mutation (start, complete, shelve, unshelve, add), bump the revision."""
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    today = date_of_us(now)
    with ctx.db.write() as conn:
        row = require_change(conn, pid, change_id)
        check_lease(ctx, conn, pid, change_id, actor)
        if row.tasks is None:
            raise _missing(change_id)
        outcome = _apply_op(row.tasks, op, today, task_id, title, wave)
        check_artifact(ctx.policy, "tasks.md", outcome.markdown)
        specs = get_specs(conn, pid, change_id)
        derived = derive(
            change_id, row.proposal, row.design, outcome.markdown, specs, parsed=outcome.result
        )
        previous = outcome.previous
        new_revision = row.revision + 1
        update_change(
            conn,
            pid,
            change_id,
            tasks=outcome.markdown,
            revision=new_revision,
            updated_us=now,
            **derived.values(),
        )
        task = outcome.task
        meta: dict[str, Any] = {"revision": new_revision}
        if note is not None:
            meta["note"] = note
        if reason is not None:
            meta["reason"] = reason
        if op == "add":
            meta.update({"wave": task.wave, "name": task.name})
        record(
            conn,
            pid,
            now,
            server_event(
                now,
                entity="task",
                entity_id=task.id,
                scope=change_id,
                op="add" if op == "add" else "status_change",
                from_=None if previous is None else str(previous.status),
                to=str(task.status),
                by=actor.by,
                meta=meta,
            ),
        )
    return {"change_id": change_id, "task": task.to_dict(), "revision": str(new_revision)}
