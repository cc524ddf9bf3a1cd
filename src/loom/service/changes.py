"""Use cases for changes: list, detail, pull and push of the artifact bundle."""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from loom.domain.ids import module_of, sub_module_of, validate_capability
from loom.domain.tasks import parse_tasks
from loom.domain.timefmt import format_us
from loom.errors import (
    LoomError,
    PreconditionFailed,
    PreconditionRequired,
    RevisionConflict,
    ValidationError,
)
from loom.service._common import (
    change_not_found,
    check_lease,
    record,
    require_change,
    resolve_read_target,
    server_event,
    write_pid,
)
from loom.service._context import Actor, Policy, Project, ServiceContext
from loom.service._derive import derive
from loom.service._limits import check_artifacts
from loom.service.overlaps import overlap_events, store_deltas
from loom.store.catalog import get_module, upsert_module
from loom.store.changes import (
    ChangeRow,
    get_change,
    get_spec_bases,
    get_specs,
    insert_change,
    list_summary_rows,
    update_change,
)
from loom.store.leases import ActiveLease, active_leases_for
from loom.store.requirements import shared_requirements
from loom.store.spec_history import current_revisions

__all__ = [
    "Bundle",
    "change_detail",
    "check_bundle",
    "ensure_module_row",
    "ensure_module_rows",
    "lease_json",
    "list_summaries",
    "parse_revision",
    "prepare_push",
    "pull_bundle",
    "push_bundle",
    "validate_bundle_specs",
]

LIFECYCLES = ("active", "archived", "all")


@dataclass(frozen=True)
class Bundle:
    proposal: str | None
    design: str | None
    tasks: str | None
    specs: tuple[tuple[str, str], ...]
    # Per capability: the spec revision the delta was written against (None: not sent).
    spec_bases: Mapping[str, int] | None = None


def lease_json(lease: ActiveLease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {
        "holder": lease.holder,
        "acquired_at": format_us(lease.acquired_us),
        "expires_at": format_us(lease.expires_us),
        "fencing_token": lease.fencing_token,
    }


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


_SORT_KEY = re.compile(r"[0-9a-z._-]{1,300}")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # validate=True: urlsafe_b64decode silently drops foreign characters, so garbage
        # such as "%%%" decoded to "" and restarted the listing instead of being refused.
        key = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("invalid cursor", kind="invalid_cursor") from exc
    # Only something sort_key() can produce goes to the database (a NUL was a 500 there).
    if _SORT_KEY.fullmatch(key) is None:
        raise ValidationError("invalid cursor", kind="invalid_cursor")
    return key


def list_summaries(
    ctx: ServiceContext,
    project: Project,
    *,
    lifecycle: str,
    module: str | None,
    statuses: Sequence[str] | None,
    limit: int | None,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Change summaries in canonical order, one page, and the next cursor (if any)."""
    after = decode_cursor(cursor) if cursor else None
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None:
            return [], None
        rows = list_summary_rows(
            conn,
            pid,
            ctx.now_us(),
            lifecycle=lifecycle,
            module=module,
            statuses=statuses,
            after_sort_key=after,
            limit=None if limit is None else limit + 1,
        )
    more = limit is not None and len(rows) > limit
    if more:
        rows = rows[:limit]
    items = [_summary_from_row(r) for r in rows]
    next_cursor = encode_cursor(rows[-1][15]) if more and rows else None
    return items, next_cursor


def _summary_from_row(r: tuple[Any, ...]) -> dict[str, Any]:
    (
        cid,
        module_id,
        sub_id,
        done,
        shelved,
        doing,
        pending,
        total,
        has_p,
        has_d,
        has_s,
        status,
        updated,
        revision,
        archived,
        _sort,
        holder,
        acquired,
        expires,
        token,
    ) = r
    return {
        "id": cid,
        "module_id": module_id,
        "sub_module_id": sub_id,
        "completed_tasks": done,
        "shelved_tasks": shelved,
        "in_progress_tasks": doing,
        "pending_tasks": pending,
        "total_tasks": total,
        "has_proposal": bool(has_p),
        "has_design": bool(has_d),
        "has_specs": bool(has_s),
        "has_tasks": total > 0,
        "work_status": status,
        "last_modified": format_us(updated),
        "revision": str(revision),
        "archived_at": format_us(archived),
        "lease": None
        if holder is None
        else {
            "holder": holder,
            "acquired_at": format_us(acquired),
            "expires_at": format_us(expires),
            "fencing_token": token,
        },
    }


def change_detail(
    ctx: ServiceContext, project: Project, target: str, lifecycle: str
) -> dict[str, Any]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        change_id = resolve_read_target(conn, pid, target, lifecycle)
        assert pid is not None
        row = get_change(conn, pid, change_id)
        if row is None:
            raise change_not_found(target)
        specs = get_specs(conn, pid, change_id)
        lease = active_leases_for(conn, pid, [change_id], ctx.now_us()).get(change_id)
    progress = parse_tasks(row.tasks).progress
    return {
        "id": row.change_id,
        "module_id": row.module_id,
        "sub_module_id": row.sub_module_id,
        "proposal": row.proposal,
        "design": row.design,
        "specs": [{"name": name, "content": content} for name, content in specs],
        "progress": progress.to_dict(),
        "last_modified": format_us(row.updated_us),
        "revision": str(row.revision),
        "work_status": row.work_status,
        "archived_at": format_us(row.archived_us),
        "lease": lease_json(lease),
    }


def pull_bundle(ctx: ServiceContext, project: Project, target: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        change_id = resolve_read_target(conn, pid, target, "all")
        assert pid is not None
        row = get_change(conn, pid, change_id)
        if row is None:
            raise change_not_found(target)
        specs = get_specs(conn, pid, change_id)
        bases = get_spec_bases(conn, pid, change_id)
        current = current_revisions(conn, pid, [name for name, _ in specs])
    return {
        "change_id": row.change_id,
        "proposal": row.proposal,
        "design": row.design,
        "tasks": row.tasks,
        "specs": [[name, content] for name, content in specs],
        "revision": str(row.revision),
        # The spec revision each delta was written against, and each spec's current one.
        "spec_bases": {cap: base for cap, base in bases.items() if base is not None},
        "spec_revisions": current,
    }


def parse_revision(value: str | None) -> str | None:
    """Normalise a revision from the body or ``If-Match`` (quotes stripped); '' means none."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        # RFC 9110 §13.1.1: If-Match uses the strong comparison, so a weak ETag never matches.
        raise PreconditionFailed(
            'a weak ETag (W/...) never matches for a write: send the strong one, e.g. "3"',
            kind="weak_etag",
        )
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text.strip()


def validate_bundle_specs(specs: Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for index, pair in enumerate(specs):
        if len(pair) != 2:
            raise ValidationError(
                f"specs[{index}] must be a [capability, markdown] pair", kind="invalid_request"
            )
        cap, markdown = pair[0], pair[1]
        validate_capability(cap)
        if cap in seen:
            raise ValidationError(
                f"duplicate capability '{cap}' in specs",
                kind="duplicate_capability",
                capability=cap,
            )
        seen.add(cap)
        out.append((cap, markdown))
    return tuple(sorted(out))


def check_bundle(
    policy: Policy,
    proposal: str | None,
    design: str | None,
    tasks: str | None,
    specs: Sequence[tuple[str, str]],
    metadata: str | None = None,
) -> None:
    """Every artifact of a change within the size limit (413 before anything is parsed)."""
    check_artifacts(
        policy,
        [
            ("proposal.md", proposal),
            ("design.md", design),
            ("tasks.md", tasks),
            (".ito.yaml", metadata),
            *((f"specs/{cap}/spec.md", md) for cap, md in specs),
        ],
    )


def ensure_module_rows(conn: Connection, pid: int, change_id: str, now_us: int) -> None:
    """A change's module (and sub-module) row, created with a placeholder name if missing
    (never overwriting a row another transaction created meanwhile)."""
    module_id = module_of(change_id)
    if module_id is None:
        return
    ensure_module_row(conn, pid, module_id, None, now_us)
    sub_id = sub_module_of(change_id)
    if sub_id is not None:
        ensure_module_row(conn, pid, sub_id, module_id, now_us)


def ensure_module_row(
    conn: Connection, pid: int, module_id: str, parent_id: str | None, now_us: int
) -> bool:
    """Create a missing module row with its id as a placeholder name; True if created."""
    if get_module(conn, pid, module_id) is not None:
        return False
    upsert_module(
        conn,
        pid,
        module_id,
        parent_id=parent_id,
        name=module_id,
        description=None,
        markdown=None,
        now_us=now_us,
        replace=False,
    )
    return True


def _record_change(
    conn: Connection,
    pid: int,
    now: int,
    change_id: str,
    op: str,
    actor: Actor,
    meta: dict[str, Any],
) -> None:
    """The audit event of a push (``create`` or ``update``)."""
    event = server_event(now, entity="change", entity_id=change_id, op=op, by=actor.by, meta=meta)
    record(conn, pid, now, event)


def _created(
    conn: Connection,
    pid: int,
    change_id: str,
    bundle: Bundle,
    now: int,
    actor: Actor,
) -> dict[str, Any]:
    """The rest of creating a change by push: its specs, module rows and audit event."""
    specs = validate_bundle_specs(bundle.specs)
    store_deltas(conn, pid, change_id, specs, spec_bases=bundle.spec_bases, archived=False)
    ensure_module_rows(conn, pid, change_id, now)
    overlaps, overlap_events_ = overlap_events(conn, pid, change_id, set(), now, actor.by)
    _record_change(conn, pid, now, change_id, "create", actor, {"source": "push"})
    if overlap_events_:
        record(conn, pid, now, *overlap_events_)
    return _with_warnings({"change_id": change_id, "new_revision": "1"}, overlaps)


def prepare_push(ctx: ServiceContext, bundle: Bundle) -> None:
    """Parse the pushed tasks.md ahead of :func:`push_bundle`'s transaction (on a worker
    thread), so the transaction finds the result memoised; oversized bundles are left for
    the real call to refuse, unparsed."""
    with contextlib.suppress(LoomError):
        check_bundle(ctx.policy, bundle.proposal, bundle.design, bundle.tasks, ())
        parse_tasks(bundle.tasks)


def push_bundle(
    ctx: ServiceContext,
    project: Project,
    change_id: str,
    bundle: Bundle,
    revision: str | None,
    actor: Actor,
) -> dict[str, Any]:
    """Full replace of a change's artifacts, checked against the base revision. Atomic."""
    specs = validate_bundle_specs(bundle.specs)
    check_bundle(ctx.policy, bundle.proposal, bundle.design, bundle.tasks, specs)
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        row = get_change(conn, pid, change_id, for_update=True)
        derived = derive(change_id, bundle.proposal, bundle.design, bundle.tasks, specs)
        if row is None:
            if revision:
                raise change_not_found(change_id)
            created = insert_change(
                conn,
                pid,
                change_id,
                proposal=bundle.proposal,
                design=bundle.design,
                tasks=bundle.tasks,
                metadata=None,
                derived=derived,
                revision=1,
                now_us=now,
            )
            if created:
                return _created(conn, pid, change_id, bundle, now, actor)
            # Another push created it meanwhile (PostgreSQL): answer as if this push came
            # second, i.e. as a push to an existing change (428, or a blind update).
        row = require_change(conn, pid, change_id)
        check_lease(ctx, conn, pid, change_id, actor)
        if not revision:
            if not ctx.policy.allow_blind_push:
                raise PreconditionRequired(
                    f"change '{change_id}' exists: name the revision the push is based on "
                    "(body 'revision' or If-Match)",
                    change_id=change_id,
                    server_revision=str(row.revision),
                )
        elif revision != str(row.revision):
            raise RevisionConflict(
                f"revision conflict for '{change_id}': local={revision}, server={row.revision}",
                change_id=change_id,
                local_revision=revision,
                server_revision=str(row.revision),
            )
        current = get_specs(conn, pid, change_id)
        changed = changed_artifacts(row, bundle, current, specs)
        changed += _moved_bases(get_spec_bases(conn, pid, change_id), bundle.spec_bases, specs)
        if not changed:
            # An identical push is a no-op: a new revision here would make every other
            # agent's next push a conflict although nothing changed.
            return {"change_id": change_id, "new_revision": str(row.revision)}
        new_revision = row.revision + 1
        done = update_change(
            conn,
            pid,
            change_id,
            expected_revision=row.revision,
            proposal=bundle.proposal,
            design=bundle.design,
            tasks=bundle.tasks,
            revision=new_revision,
            updated_us=now,
            **derived.values(),
        )
        if not done:  # only reachable if the row lock was not held; never silently lose it
            raise RevisionConflict(
                f"revision conflict for '{change_id}'",
                change_id=change_id,
                local_revision=revision or "",
                server_revision=str(row.revision),
            )
        before = shared_requirements(conn, pid, change_id)
        store_deltas(conn, pid, change_id, specs, spec_bases=bundle.spec_bases, archived=False)
        overlaps, events = overlap_events(conn, pid, change_id, before, now, actor.by)
        # Watchers (the event stream, `allocate --wait`, the dashboard) learn of the new
        # artifacts from this event: a draft a push made ready is work for a waiting agent.
        meta = {
            "source": "push",
            "revision": str(new_revision),
            "artifacts": changed,
            "old_revision": str(row.revision),
            "new_revision": str(new_revision),
        }
        _record_change(conn, pid, now, change_id, "update", actor, meta)
        if events:
            record(conn, pid, now, *events)
    return _with_warnings({"change_id": change_id, "new_revision": str(new_revision)}, overlaps)


def _with_warnings(answer: dict[str, Any], overlaps: list[dict[str, Any]]) -> dict[str, Any]:
    """A push answer names the strong overlaps it created (a warning, not a refusal)."""
    if overlaps:
        answer["overlaps"] = overlaps
    return answer


def _moved_bases(
    recorded: Mapping[str, int | None],
    named: Mapping[str, int] | None,
    specs: tuple[tuple[str, str], ...],
) -> list[str]:
    """``spec_base/<cap>`` for each delta whose named spec base differs from the recorded
    one: a push after ``loom rebase`` that kept the delta's text still moves its base."""
    if not named:
        return []
    return [
        f"spec_base/{cap}" for cap, _ in specs if cap in named and named[cap] != recorded.get(cap)
    ]


def changed_artifacts(
    row: ChangeRow,
    bundle: Bundle,
    current_specs: Sequence[tuple[str, str]],
    specs: tuple[tuple[str, str], ...],
) -> list[str]:
    """The artifacts a push would change: ``proposal``, ``design``, ``tasks``, ``specs/<cap>``."""
    changed = [
        name
        for name, old, new in (
            ("proposal", row.proposal, bundle.proposal),
            ("design", row.design, bundle.design),
            ("tasks", row.tasks, bundle.tasks),
        )
        if old != new
    ]
    before = dict(current_specs)
    after = dict(specs)
    caps = sorted(before.keys() | after.keys())
    changed.extend(f"specs/{cap}" for cap in caps if before.get(cap) != after.get(cap))
    return changed
