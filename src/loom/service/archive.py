"""Archive a change: merge its deltas, tick its module checklist, mark it archived. Atomic."""

from __future__ import annotations

import contextlib
from typing import Any

from loom.domain.ids import archive_dir_name, module_of, sub_module_of
from loom.domain.modules import tick_change
from loom.domain.specs import apply_delta
from loom.domain.tasks import parse_tasks
from loom.domain.timefmt import date_of_us, format_us
from loom.errors import Conflict, LoomError
from loom.service._common import (
    change_not_found,
    check_lease,
    record,
    release_on_archive,
    server_event,
    write_pid,
)
from loom.service._context import Actor, Project, ServiceContext
from loom.service._limits import check_artifact
from loom.service.spec_bases import check_spec_bases
from loom.store.catalog import get_module, get_spec, upsert_module
from loom.store.changes import get_change, get_specs, update_change
from loom.store.projects import lock_project
from loom.store.requirements import delete_requirements
from loom.store.spec_history import write_spec

__all__ = ["archive_change", "prepare_archive"]


def prepare_archive(ctx: ServiceContext, project: Project, change_id: str) -> None:
    """Run :func:`archive_change`'s merges and checklist tick on the stored texts ahead of its
    transaction (on a worker thread), so the transaction finds them memoised. Read-only;
    errors are left for the real call."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None:
            return
        row = get_change(conn, pid, change_id)
        if row is None or row.archived_us is not None:
            return
        work = [
            (capability, delta, get_spec(conn, pid, capability))
            for capability, delta in get_specs(conn, pid, change_id)
        ]
        module_id = sub_module_of(change_id) or module_of(change_id)
        module = None if module_id is None else get_module(conn, pid, module_id)
    for capability, delta, base in work:
        with contextlib.suppress(LoomError):
            apply_delta(None if base is None else base.markdown, delta, capability)
    if module is not None and module.markdown:
        tick_change(module.markdown, change_id)


def archive_change(
    ctx: ServiceContext, project: Project, change_id: str, actor: Actor, *, force: bool = False
) -> dict[str, Any]:
    """All or nothing: any invalid delta or stale spec base raises before anything is
    written.

    A change with pending or in-progress tasks is refused (409 ``change_unfinished``) unless
    ``force``; shelved tasks do not count. So is one whose deltas were written against a
    requirement another archive changed since (409 ``stale_spec_base``): ``force`` merges
    anyway (lease holder or admin). A forced archive says what it overrode in its event.
    """
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        row = get_change(conn, pid, change_id, for_update=True)
        if row is None:
            raise change_not_found(change_id)
        if row.archived_us is not None:
            return {"change_id": change_id, "archived_at": format_us(row.archived_us)}
        lease = check_lease(ctx, conn, pid, change_id, actor)
        progress = parse_tasks(row.tasks).progress
        unfinished = progress.pending + progress.in_progress
        if unfinished and not force:
            raise Conflict(
                f"change '{change_id}' is unfinished: {progress.complete}/{progress.total} "
                f"tasks complete ({progress.in_progress} in progress, {progress.pending} "
                "pending); complete or shelve them, or archive with force",
                kind="change_unfinished",
                change_id=change_id,
                complete=progress.complete,
                in_progress=progress.in_progress,
                pending=progress.pending,
                shelved=progress.shelved,
                total=progress.total,
            )
        # Archives of different changes merge into the same specs: without this lock two
        # PostgreSQL transactions read the same base spec and the second merge overwrote the
        # first (lost requirements). Order: change row (above), then project row.
        lock_project(conn, pid)

        deltas = get_specs(conn, pid, change_id)
        stale = check_spec_bases(
            conn, pid, change_id, deltas, force=force, actor=actor, lease=lease, now_us=now
        )
        merged: list[tuple[str, str | None, str | None]] = []
        for capability, delta in deltas:
            base = get_spec(conn, pid, capability, for_update=True)
            before = None if base is None else base.markdown
            merged.append((capability, before, apply_delta(before, delta, capability)))
        for capability, _, markdown in merged:
            check_artifact(ctx.policy, f"merged spec {capability}", markdown)
        for capability, before, markdown in merged:
            if markdown != before:
                write_spec(
                    conn, pid, capability, markdown, now, source="archive", change_id=change_id
                )
        delete_requirements(conn, pid, change_id)

        module_id = sub_module_of(change_id) or module_of(change_id)
        if module_id is not None:
            module = get_module(conn, pid, module_id, for_update=True)
            if module is not None and module.markdown:
                ticked = tick_change(module.markdown, change_id)
                if ticked != module.markdown:
                    upsert_module(
                        conn,
                        pid,
                        module_id,
                        parent_id=module.parent_id,
                        name=module.name,
                        description=module.description,
                        markdown=ticked,
                        now_us=now,
                    )

        events = release_on_archive(conn, pid, change_id, lease, now, actor.by)
        update_change(
            conn, pid, change_id, archived_us=now, revision=row.revision + 1, updated_us=now
        )
        archive_name = archive_dir_name(date_of_us(now), change_id)
        events.append(
            server_event(
                now,
                entity="change",
                entity_id=change_id,
                op="archive",
                by=actor.by,
                meta=_archive_meta(archive_name, [c for c, _, _ in merged], unfinished, stale),
            )
        )
        if module_id is not None:
            events.append(
                server_event(
                    now,
                    entity="module",
                    entity_id=module_id,
                    op="change_completed",
                    by=actor.by,
                    meta={"change_id": change_id},
                )
            )
        record(conn, pid, now, *events)
    return {"change_id": change_id, "archived_at": format_us(now)}


def _archive_meta(
    archive_name: str, specs: list[str], unfinished: int, stale: list[dict[str, Any]]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"archive_name": archive_name, "specs": specs}
    if unfinished or stale:
        meta["forced"] = True
    if unfinished:
        meta["unfinished_tasks"] = unfinished
    if stale:
        # What the forced archive overrode (the names; the texts are in the spec history).
        meta["stale_spec_base"] = [
            {k: s[k] for k in ("capability", "requirement", "op", "base_revision")} for s in stale
        ]
    return meta
