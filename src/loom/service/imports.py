"""Bulk import of a whole `.ito/` tree's state (one transaction) and export of a project."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from loom.domain.ids import module_of, sub_module_of, validate_module_id
from loom.domain.modules import parse_module_md
from loom.domain.tasks import parse_tasks
from loom.domain.timefmt import format_us
from loom.errors import LoomError
from loom.service._common import audit, record, release_on_archive, write_pid
from loom.service._context import Actor, Project, ServiceContext
from loom.service._derive import derive
from loom.service._limits import check_artifact, check_artifacts
from loom.service.changes import (
    check_bundle,
    ensure_module_row,
    ensure_module_rows,
    validate_bundle_specs,
)
from loom.service.overlaps import store_deltas, store_new_deltas
from loom.store import catalog
from loom.store.changes import (
    existing_change_ids,
    get_change,
    get_specs,
    insert_change,
    insert_changes,
    list_changes,
    update_change,
)
from loom.store.leases import get_lease
from loom.store.spec_history import write_spec
from loom.store.stats import analyze_stale

__all__ = [
    "ImportChange",
    "ImportModule",
    "ImportSpec",
    "export_project",
    "import_tree",
    "prepare_import",
]


@dataclass(frozen=True)
class ImportModule:
    id: str
    name: str
    markdown: str | None
    description: str | None = None


@dataclass(frozen=True)
class ImportSpec:
    id: str
    markdown: str


@dataclass(frozen=True)
class ImportChange:
    id: str
    proposal: str | None
    design: str | None
    tasks: str | None
    specs: tuple[tuple[str, str], ...]
    metadata: str | None
    archived_us: int | None


class _Tally:
    def __init__(self) -> None:
        self.created = 0
        self.updated = 0
        self.unchanged = 0
        self.conflicts: list[dict[str, str]] = []
        self.changes_created: list[str] = []
        self.changes_updated: list[str] = []

    def conflict(self, kind: str, item_id: str, reason: str) -> None:
        self.conflicts.append({"kind": kind, "id": item_id, "reason": reason})

    def json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "conflicts": self.conflicts,
        }


def _module_description(markdown: str | None) -> str | None:
    if not markdown:
        return None
    return parse_module_md(markdown).description


def prepare_import(
    ctx: ServiceContext, modules: Sequence[ImportModule], changes: Sequence[ImportChange]
) -> None:
    """Parse the imported tasks.md files and module.md files ahead of :func:`import_tree`'s
    transaction (on a worker thread), so the transaction finds them memoised."""
    try:
        for c in changes:
            check_bundle(ctx.policy, c.proposal, c.design, c.tasks, (), c.metadata)
        for m in modules:
            check_artifact(ctx.policy, "module", m.markdown)
    except LoomError:
        return  # refused by the real call, unparsed
    for c in changes:
        parse_tasks(c.tasks)
    for m in modules:
        if m.markdown and m.description is None:
            parse_module_md(m.markdown)


def import_tree(
    ctx: ServiceContext,
    project: Project,
    *,
    mode: Literal["create-only", "overwrite"],
    modules: Sequence[ImportModule],
    specs: Sequence[ImportSpec],
    changes: Sequence[ImportChange],
    actor: Actor,
) -> dict[str, Any]:
    """Load state as it is (no delta merge, no checklist ticking, no lease checks)."""
    checked = [(c, validate_bundle_specs(c.specs)) for c in changes]
    module_ids = [(validate_module_id(m.id), m) for m in modules]
    for module_id, m in module_ids:
        check_artifacts(
            ctx.policy,
            [
                (f"module {module_id} description", m.description),
                (f"module {module_id}", m.markdown),
            ],
        )
    for s in specs:
        check_artifact(ctx.policy, f"spec {s.id}", s.markdown)
    for c, c_specs in checked:
        check_bundle(ctx.policy, c.proposal, c.design, c.tasks, c_specs, c.metadata)
    tally = _Tally()
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    overwrite = mode == "overwrite"
    with ctx.db.write() as conn:
        # Parents first, so sub-modules always find theirs.
        for module_id, m in sorted(module_ids, key=lambda x: x[0]):
            parent = module_id.split(".")[0] if "." in module_id else None
            description = (
                m.description if m.description is not None else _module_description(m.markdown)
            )
            existing = catalog.get_module(conn, pid, module_id, for_update=True)
            # An empty module.md is what an export writes for a module without markdown.
            if existing is not None and (existing.name, existing.markdown or "") == (
                m.name,
                m.markdown or "",
            ):
                tally.unchanged += 1
                continue
            if existing is not None and not overwrite and existing.markdown is not None:
                tally.conflict("module", module_id, "exists with different content")
                continue
            # A sub-module whose parent is neither stored nor imported gets a placeholder
            # parent row, as a push does for a change's module, so it is listed under it.
            if parent is not None and ensure_module_row(conn, pid, parent, None, now):
                tally.created += 1
            catalog.upsert_module(
                conn,
                pid,
                module_id,
                parent_id=parent,
                name=m.name,
                description=description,
                markdown=m.markdown,
                now_us=now,
            )
            if existing is None:
                tally.created += 1
            else:
                tally.updated += 1
        for s in specs:
            spec_row = catalog.get_spec(conn, pid, s.id)
            if spec_row is not None and spec_row.markdown == s.markdown:
                tally.unchanged += 1
            elif spec_row is not None and not overwrite:
                tally.conflict("spec", s.id, "exists with different content")
            else:
                write_spec(conn, pid, s.id, s.markdown, now, source="import")
                if spec_row is None:
                    tally.created += 1
                else:
                    tally.updated += 1
        fresh = _insert_new_changes(conn, pid, checked, tally, now)
        for c, c_specs in checked:
            if fresh.pop(c.id, None) is None:  # a change that existed, or a repeated id
                _import_change(ctx, conn, pid, c, c_specs, overwrite, tally, now, actor)
        if tally.created or tally.updated:
            # One summary event for the whole import (not one per change: a corpus is
            # hundreds), naming the changes it created or replaced.
            audit(
                conn,
                pid,
                now,
                entity="project",
                entity_id=project.name,
                op="import",
                by=actor.by,
                meta={
                    "mode": mode,
                    "created": tally.created,
                    "updated": tally.updated,
                    "unchanged": tally.unchanged,
                    "conflicts": len(tally.conflicts),
                    "changes_created": tally.changes_created,
                    "changes_updated": tally.changes_updated,
                },
            )
    if tally.created or tally.updated:
        with ctx.db.write() as conn:
            analyze_stale(conn, IMPORTED_TABLES, tally.created + tally.updated)
    return tally.json()


# What an import writes, for :func:`analyze_stale` after it.
IMPORTED_TABLES = (
    "changes",
    "change_specs",
    "change_requirements",
    "modules",
    "specs",
    "spec_revisions",
)


def _insert_new_changes(
    conn: Any,
    pid: int,
    checked: Sequence[tuple[ImportChange, tuple[tuple[str, str], ...]]],
    tally: _Tally,
    now: int,
) -> dict[str, bool]:
    """Insert the changes the project does not have yet in a few statements for all of them
    (a corpus or a large project is thousands: one change at a time cost about ten round
    trips each). Tallies them in input order; returns the ids handled here (the first
    occurrence of each absent id), which the caller skips."""
    present = existing_change_ids(conn, pid, [c.id for c, _ in checked])
    new: dict[str, tuple[ImportChange, tuple[tuple[str, str], ...]]] = {}
    for c, c_specs in checked:
        if c.id not in present and c.id not in new:
            new[c.id] = (c, c_specs)
    created = insert_changes(
        conn,
        pid,
        [
            (
                cid,
                {
                    "proposal": c.proposal,
                    "design": c.design,
                    "tasks": c.tasks,
                    "metadata": c.metadata,
                    "archived_us": c.archived_us,
                    **derive(cid, c.proposal, c.design, c.tasks, c_specs).values(),
                },
            )
            for cid, (c, c_specs) in new.items()
        ],
        now,
    )
    store_new_deltas(
        conn,
        pid,
        [
            (cid, c_specs, c.archived_us is not None)
            for cid, (c, c_specs) in new.items()
            if cid in created
        ],
    )
    modules_done: set[str] = set()
    for cid in new:
        if cid in created:
            key = sub_module_of(cid) or module_of(cid)
            if key is not None and key not in modules_done:
                modules_done.add(key)
                ensure_module_rows(conn, pid, cid, now)
            tally.created += 1
            tally.changes_created.append(cid)
        else:  # created by a concurrent request since the lookup (PostgreSQL)
            tally.conflict("change", cid, "created concurrently; import again")
    return dict.fromkeys(new, True)


def _import_change(
    ctx: ServiceContext,
    conn: Any,
    pid: int,
    c: ImportChange,
    specs: tuple[tuple[str, str], ...],
    overwrite: bool,
    tally: _Tally,
    now: int,
    actor: Actor,
) -> None:
    row = get_change(conn, pid, c.id, for_update=True)
    derived = derive(c.id, c.proposal, c.design, c.tasks, specs)
    if row is None:
        created = insert_change(
            conn,
            pid,
            c.id,
            proposal=c.proposal,
            design=c.design,
            tasks=c.tasks,
            metadata=c.metadata,
            derived=derived,
            revision=1,
            now_us=now,
            archived_us=c.archived_us,
        )
        if not created:  # created by a concurrent request since the lookup (PostgreSQL)
            tally.conflict("change", c.id, "created concurrently; import again")
            return
        store_deltas(conn, pid, c.id, specs, spec_bases=None, archived=c.archived_us is not None)
        ensure_module_rows(conn, pid, c.id, now)
        tally.created += 1
        tally.changes_created.append(c.id)
        return
    same = (
        (row.proposal, row.design, row.tasks, row.metadata)
        == (c.proposal, c.design, c.tasks, c.metadata)
        and _same_archive(row.archived_us, c.archived_us)
        and tuple(get_specs(conn, pid, c.id)) == specs
    )
    if same:
        tally.unchanged += 1
        return
    if not overwrite:
        tally.conflict("change", c.id, "exists with different content")
        return
    if row.archived_us is not None and c.archived_us is None:
        # An archive cannot be undone by an import (its specs are already merged).
        tally.conflict("change", c.id, "archived on the server; an import does not un-archive")
        return
    update_change(
        conn,
        pid,
        c.id,
        proposal=c.proposal,
        design=c.design,
        tasks=c.tasks,
        metadata=c.metadata,
        archived_us=c.archived_us,
        revision=row.revision + 1,
        updated_us=now,
        **derived.values(),
    )
    store_deltas(conn, pid, c.id, specs, spec_bases=None, archived=c.archived_us is not None)
    if c.archived_us is not None:
        # Imported as archived: like an archive, it drops the change's lease.
        events = release_on_archive(conn, pid, c.id, get_lease(conn, pid, c.id), now, actor.by)
        if events:
            record(conn, pid, now, *events)
    tally.updated += 1
    tally.changes_updated.append(c.id)


def _same_archive(stored_us: int | None, imported_us: int | None) -> bool:
    """Whether an imported archive time says the same as the stored one.

    A tree records only the archive *date* (``archive/YYYY-MM-DD-<id>``), read back as
    midnight UTC; a change archived by the server at 14:03 that day is the same archive.
    """
    if stored_us is None or imported_us is None:
        return stored_us is imported_us
    if stored_us == imported_us:
        return True
    return imported_us % _DAY_US == 0 and imported_us == stored_us - stored_us % _DAY_US


_DAY_US = 86_400_000_000


def export_project(ctx: ServiceContext, project: Project) -> dict[str, Any]:
    """The project's whole state, in the ``POST /import`` body shape."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None:
            return {"modules": [], "specs": [], "changes": []}
        modules = catalog.list_modules(conn, pid)
        spec_rows = [catalog.get_spec(conn, pid, sid) for sid, _ in catalog.list_specs(conn, pid)]
        rows = list_changes(conn, pid, lifecycle="all", with_artifacts=True)
        change_specs = {r.change_id: get_specs(conn, pid, r.change_id) for r in rows}
    return {
        "modules": [
            {
                "id": m.module_id,
                "name": m.name,
                "description": m.description,
                "markdown": m.markdown,
            }
            for m in modules
        ],
        "specs": [{"id": s.spec_id, "markdown": s.markdown} for s in spec_rows if s is not None],
        "changes": [
            {
                "id": r.change_id,
                "proposal": r.proposal,
                "design": r.design,
                "tasks": r.tasks,
                "specs": [[cap, md] for cap, md in change_specs[r.change_id]],
                "metadata": r.metadata,
                "archived_at": format_us(r.archived_us),
                "revision": str(r.revision),
            }
            for r in rows
        ],
    }
