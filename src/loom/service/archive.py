"""Archive a change: merge its deltas, tick its module checklist, mark it archived. Atomic."""

from __future__ import annotations

import contextlib
from typing import Any

from loom.domain.ids import archive_dir_name, module_of, sub_module_of
from loom.domain.modules import tick_change
from loom.domain.specs import apply_delta
from loom.domain.timefmt import date_of_us, format_us
from loom.errors import LoomError
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
from loom.store.catalog import delete_spec, get_module, get_spec, upsert_module, upsert_spec
from loom.store.changes import get_change, get_specs, update_change
from loom.store.projects import lock_project

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
    ctx: ServiceContext, project: Project, change_id: str, actor: Actor
) -> dict[str, Any]:
    """All or nothing: any invalid delta raises before anything is written."""
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        row = get_change(conn, pid, change_id, for_update=True)
        if row is None:
            raise change_not_found(change_id)
        if row.archived_us is not None:
            return {"change_id": change_id, "archived_at": format_us(row.archived_us)}
        lease = check_lease(ctx, conn, pid, change_id, actor)
        # Archives of different changes merge into the same specs: without this lock two
        # PostgreSQL transactions read the same base spec and the second merge overwrote the
        # first (lost requirements). Order: change row (above), then project row.
        lock_project(conn, pid)

        merged: list[tuple[str, str | None]] = []
        for capability, delta in get_specs(conn, pid, change_id):
            base = get_spec(conn, pid, capability, for_update=True)
            merged.append(
                (
                    capability,
                    apply_delta(None if base is None else base.markdown, delta, capability),
                )
            )
        for capability, markdown in merged:
            check_artifact(ctx.policy, f"merged spec {capability}", markdown)
        for capability, markdown in merged:
            if markdown is None:
                delete_spec(conn, pid, capability)
            else:
                upsert_spec(conn, pid, capability, markdown, now)

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
                meta={"archive_name": archive_name, "specs": [c for c, _ in merged]},
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
