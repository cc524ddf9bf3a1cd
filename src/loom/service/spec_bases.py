"""The stale-base check of an archive: refuse to merge a delta written against an older text
of a requirement that another archive (or an import or PUT) has changed since.

Called by :func:`loom.service.archive.archive_change` inside its transaction, before
anything is written; see ``docs/overlaps.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from loom.domain.leases import LeaseState
from loom.domain.specs import requirement_texts, stale_requirements
from loom.errors import Forbidden, StaleSpecBase
from loom.service._context import Actor
from loom.store.changes import get_spec_bases
from loom.store.spec_history import current_revisions, spec_at

__all__ = ["check_spec_bases"]


def _text_at(conn: Connection, pid: int, capability: str, revision: int) -> str | None:
    if revision <= 0:
        return None
    row = spec_at(conn, pid, capability, revision)
    return None if row is None else row.markdown


def _changed_by(
    conn: Connection, pid: int, capability: str, requirement: str, base: int, current: int
) -> list[dict[str, Any]]:
    """The revisions after ``base`` that changed the requirement's text, with their source."""
    out: list[dict[str, Any]] = []
    before = (requirement_texts(_text_at(conn, pid, capability, base), capability) or {}).get(
        requirement
    )
    for revision in range(base + 1, current + 1):
        row = spec_at(conn, pid, capability, revision)
        if row is None:
            continue
        after = (requirement_texts(row.markdown, capability) or {}).get(requirement)
        if after != before:
            out.append({"revision": revision, "change_id": row.change_id, "source": row.source})
        before = after
    return out


def check_spec_bases(
    conn: Connection,
    pid: int,
    change_id: str,
    deltas: Sequence[tuple[str, str]],
    *,
    force: bool,
    actor: Actor,
    lease: LeaseState | None,
    now_us: int,
) -> list[dict[str, Any]]:
    """The requirements of ``deltas`` that changed since the change's base, or raise 409
    ``stale_spec_base`` naming them (with the base, current and this change's text).

    ``force`` merges anyway; only an admin or the change's active lease holder may force.
    Returns what was stale (for the archive event; empty when nothing was).
    """
    bases = get_spec_bases(conn, pid, change_id)
    current = current_revisions(conn, pid, [cap for cap, _ in deltas])
    stale: list[dict[str, Any]] = []
    for cap, delta in deltas:
        base = bases.get(cap)
        if base is None or base >= current[cap]:
            continue
        base_text = _text_at(conn, pid, cap, base)
        current_text = _text_at(conn, pid, cap, current[cap])
        for item in stale_requirements(cap, delta, base_text, current_text):
            stale.append(
                {
                    "capability": cap,
                    "requirement": item.requirement,
                    "op": item.op,
                    "base_revision": base,
                    "current_revision": current[cap],
                    "changed_by": _changed_by(conn, pid, cap, item.requirement, base, current[cap]),
                    "base": item.base,
                    "current": item.current,
                    "theirs": item.theirs,
                }
            )
    if not stale:
        return stale
    if not force:
        names = ", ".join(f"{s['capability']}: {s['requirement']}" for s in stale[:5])
        raise StaleSpecBase(
            f"change '{change_id}' was written against older specs; changed since: {names} "
            f"(run `loom rebase {change_id}`, or archive with force)",
            change_id=change_id,
            requirements=stale,
        )
    holder = lease.holder if lease is not None and lease.is_active(now_us) else None
    if not actor.admin and (holder is None or actor.holder != holder):
        raise Forbidden(
            "only the change's lease holder or an admin may force an archive over a stale "
            "spec base",
            kind="force_not_allowed",
            change_id=change_id,
        )
    return stale
