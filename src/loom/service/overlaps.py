"""Overlaps between changes, and the requirement index and spec bases kept with the deltas.

Every write of a change's deltas (push, import) goes through :func:`store_deltas`, in the
write's transaction: the deltas, the spec revision each was written against, and the
requirement index move together. Reads of overlaps use the index, never the deltas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from loom.domain.overlaps import Overlap, find_overlaps
from loom.domain.specs import requirement_refs
from loom.errors import ValidationError
from loom.service._common import resolve_read_target, server_event
from loom.service._context import Project, ServiceContext
from loom.store.changes import get_spec_bases, insert_new_specs, replace_specs
from loom.store.requirements import (
    ActiveIndex,
    active_index,
    delete_requirements,
    insert_requirements,
    replace_requirements,
    shared_requirements,
)
from loom.store.spec_history import current_revisions

__all__ = [
    "change_overlaps",
    "overlap_events",
    "project_overlaps",
    "store_deltas",
    "store_new_deltas",
]


def store_deltas(
    conn: Connection,
    pid: int,
    change_id: str,
    specs: Sequence[tuple[str, str]],
    *,
    spec_bases: Mapping[str, int] | None,
    archived: bool,
) -> None:
    """Replace a change's deltas with their spec bases, and its requirement index.

    A capability's base is the one the writer named (``spec_bases``), else the one already
    recorded for it, else the spec revision current now. A named base above the current
    revision is refused (400 ``invalid_spec_base``). Archived changes have no index rows.
    """
    caps = [cap for cap, _ in specs]
    current = current_revisions(conn, pid, caps)
    recorded = get_spec_bases(conn, pid, change_id)
    bases: dict[str, int] = {}
    for cap in caps:
        named = None if spec_bases is None else spec_bases.get(cap)
        if named is not None:
            if not 0 <= named <= current[cap]:
                raise ValidationError(
                    f"spec_bases['{cap}'] = {named} is not a revision of spec '{cap}' "
                    f"(current: {current[cap]})",
                    kind="invalid_spec_base",
                    capability=cap,
                    current_revision=current[cap],
                )
            bases[cap] = named
        else:
            kept = recorded.get(cap)
            bases[cap] = current[cap] if kept is None else kept
    replace_specs(conn, pid, change_id, specs, bases)
    if archived:
        delete_requirements(conn, pid, change_id)
        return
    refs = [ref for cap, delta in specs for ref in requirement_refs(delta, cap)]
    replace_requirements(conn, pid, change_id, refs)


def store_new_deltas(
    conn: Connection,
    pid: int,
    items: Sequence[tuple[str, Sequence[tuple[str, str]], bool]],
) -> None:
    """:func:`store_deltas` for changes just inserted (a bulk import), in a few statements
    for all of them: ``items`` are (change id, deltas, archived). A new change has no
    recorded bases, so each delta's base is its spec's current revision."""
    caps = list(dict.fromkeys(cap for _, specs, _ in items for cap, _ in specs))
    current: dict[str, int] = {}
    for start in range(0, len(caps), 500):
        current.update(current_revisions(conn, pid, caps[start : start + 500]))
    insert_new_specs(
        conn,
        pid,
        [(cid, cap, delta, current[cap]) for cid, specs, _ in items for cap, delta in specs],
    )
    insert_requirements(
        conn,
        pid,
        [
            (cid, ref)
            for cid, specs, archived in items
            if not archived
            for cap, delta in specs
            for ref in requirement_refs(delta, cap)
        ],
    )


def overlap_events(
    conn: Connection,
    pid: int,
    change_id: str,
    before: set[tuple[str, str, str]],
    now_us: int,
    by: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The strong overlaps a write created (shared requirements that were not shared before
    it), as the push answer's ``overlaps`` and as ``overlap`` audit events (one per other
    change)."""
    after = shared_requirements(conn, pid, change_id)
    new: dict[str, list[dict[str, str]]] = {}
    for other, cap, name in sorted(after - before):
        new.setdefault(other, []).append({"capability": cap, "requirement": name})
    warnings = [{"change_id": other, "requirements": reqs} for other, reqs in new.items()]
    events = [
        server_event(
            now_us,
            entity="change",
            entity_id=change_id,
            op="overlap",
            by=by,
            meta={"with": w["change_id"], "requirements": w["requirements"]},
        )
        for w in warnings
    ]
    return warnings, events


def _lease(index: ActiveIndex, change_id: str) -> dict[str, str] | None:
    holder = index.holders.get(change_id)
    return None if holder is None else {"holder": holder}


def _pair_json(o: Overlap, index: ActiveIndex) -> dict[str, Any]:
    return {
        "a": o.a,
        "b": o.b,
        "strength": o.strength,
        "requirements": [s.to_json() for s in o.requirements],
        "capabilities": list(o.capabilities),
        "a_status": index.statuses.get(o.a),
        "b_status": index.statuses.get(o.b),
        "a_lease": _lease(index, o.a),
        "b_lease": _lease(index, o.b),
    }


def _overlaps(index: ActiveIndex) -> list[Overlap]:
    return find_overlaps(index.refs, index.capabilities, index.sort_keys)


def project_overlaps(
    ctx: ServiceContext, project: Project, *, strength: str | None = None
) -> dict[str, Any]:
    """Every overlapping pair of unarchived changes (``a`` before ``b`` in canonical order)."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None:
            return {"overlaps": []}
        index = active_index(conn, pid, ctx.now_us())
    pairs = [o for o in _overlaps(index) if strength is None or o.strength == strength]
    return {"overlaps": [_pair_json(o, index) for o in pairs]}


def change_overlaps(ctx: ServiceContext, project: Project, target: str) -> dict[str, Any]:
    """The unarchived changes that overlap one change, strong ones first."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        change_id = resolve_read_target(conn, pid, target, "all")
        assert pid is not None
        index = active_index(conn, pid, ctx.now_us())
    items: list[dict[str, Any]] = []
    for o in _overlaps(index):
        if change_id not in (o.a, o.b):
            continue
        mine_first = o.a == change_id
        other = o.b if mine_first else o.a
        items.append(
            {
                "change_id": other,
                "strength": o.strength,
                "requirements": [
                    {
                        "capability": s.capability,
                        "requirement": s.requirement,
                        "ops": list(s.a_ops if mine_first else s.b_ops),
                        "other_ops": list(s.b_ops if mine_first else s.a_ops),
                    }
                    for s in o.requirements
                ],
                "capabilities": list(o.capabilities),
                "work_status": index.statuses.get(other),
                "lease": _lease(index, other),
            }
        )
    items.sort(key=lambda i: (i["strength"] != "strong", index.sort_keys.get(i["change_id"], "")))
    return {"change_id": change_id, "overlaps": items}
