"""Use cases for modules (and sub-modules) and promoted specs."""

from __future__ import annotations

from typing import Any

from loom.domain.ids import validate_module_id
from loom.domain.timefmt import format_us
from loom.errors import NotFound, ValidationError
from loom.service._common import audit, write_pid
from loom.service._context import Actor, Project, ServiceContext
from loom.service._limits import check_artifact, check_artifacts
from loom.store import catalog as store
from loom.store.projects import projects_after
from loom.store.spec_history import spec_at, spec_history, write_spec

__all__ = [
    "get_module",
    "get_spec",
    "get_spec_history",
    "known_projects",
    "list_modules",
    "list_specs",
    "put_module",
    "put_spec",
]


def known_projects(ctx: ServiceContext, after_id: int = 0) -> list[tuple[int, str, str]]:
    """Projects stored with a row id above ``after_id``, as ``(id, org, repo)`` (for the 403
    "valid token, wrong project")."""
    with ctx.db.read() as conn:
        return projects_after(conn, after_id)


def _spec_path(spec_id: str) -> str:
    return f".ito/specs/{spec_id}/spec.md"


def list_modules(ctx: ServiceContext, project: Project) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None:
            return []
        rows = store.list_modules(conn, pid)
        per_module, per_sub = store.change_counts(conn, pid)
    tops = [r for r in rows if r.parent_id is None]
    subs = [r for r in rows if r.parent_id is not None]
    return [
        {
            "id": m.module_id,
            "name": m.name,
            "change_count": per_module.get(m.module_id, 0),
            "sub_modules": [
                {"id": s.module_id, "name": s.name, "change_count": per_sub.get(s.module_id, 0)}
                for s in subs
                if s.parent_id == m.module_id
            ],
        }
        for m in tops
    ]


def get_module(ctx: ServiceContext, project: Project, module_ref: str) -> dict[str, Any]:
    module_id = validate_module_id(module_ref)
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        row = None if pid is None else store.get_module(conn, pid, module_id)
        if row is None or pid is None:
            raise NotFound(
                f"module not found: {module_ref}", kind="module_not_found", module_id=module_id
            )
        change_ids = store.list_module_change_ids(conn, pid, module_id)
        subs = [r for r in store.list_modules(conn, pid) if r.parent_id == module_id]
        _, per_sub = store.change_counts(conn, pid)
    return {
        "id": row.module_id,
        "name": row.name,
        "parent_id": row.parent_id,
        "description": row.description,
        "markdown": row.markdown,
        "changes": change_ids,
        "sub_modules": [
            {"id": s.module_id, "name": s.name, "change_count": per_sub.get(s.module_id, 0)}
            for s in subs
        ],
    }


def put_module(
    ctx: ServiceContext,
    project: Project,
    module_ref: str,
    *,
    name: str,
    description: str | None,
    markdown: str | None,
    actor: Actor | None = None,
) -> dict[str, Any]:
    module_id = validate_module_id(module_ref)
    if not name.strip() or len(name) > 200 or "\n" in name:
        raise ValidationError("module name must be 1-200 chars on one line", kind="invalid_name")
    check_artifacts(ctx.policy, [("module description", description), ("module.md", markdown)])
    parent = module_id.split(".")[0] if "." in module_id else None
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        if parent is not None and store.get_module(conn, pid, parent) is None:
            raise NotFound(
                f"parent module not found: {parent}", kind="module_not_found", module_id=parent
            )
        existing = store.get_module(conn, pid, module_id, for_update=True)
        store.upsert_module(
            conn,
            pid,
            module_id,
            parent_id=parent,
            name=name,
            description=description,
            markdown=markdown,
            now_us=now,
        )
        audit(
            conn,
            pid,
            now,
            entity="module",
            entity_id=module_id,
            op="create" if existing is None else "update",
            by=(actor or Actor()).by,
            meta={"name": name},
        )
    return get_module(ctx, project, module_id)


def list_specs(ctx: ServiceContext, project: Project) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        rows = [] if pid is None else store.list_specs(conn, pid)
    return [
        {"id": spec_id, "path": _spec_path(spec_id), "last_modified": format_us(updated)}
        for spec_id, updated in rows
    ]


def get_spec(
    ctx: ServiceContext, project: Project, spec_id: str, revision: int | None = None
) -> dict[str, Any]:
    """The current spec, or its text at ``revision`` (404 ``spec_revision_not_found`` when
    there is no such revision or it deleted the spec)."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        row = None if pid is None else store.get_spec(conn, pid, spec_id)
        old = None
        if revision is not None and pid is not None:
            old = spec_at(conn, pid, spec_id, revision)
    if revision is not None:
        if old is None or old.markdown is None:
            raise NotFound(
                f"spec '{spec_id}' has no revision {revision}",
                kind="spec_revision_not_found",
                spec_id=spec_id,
                revision=revision,
            )
        return {
            "id": spec_id,
            "path": _spec_path(spec_id),
            "markdown": old.markdown,
            "last_modified": format_us(old.created_us),
            "revision": old.revision,
            "change_id": old.change_id,
        }
    if row is None:
        raise NotFound(f"spec not found: {spec_id}", kind="spec_not_found", spec_id=spec_id)
    return {
        "id": row.spec_id,
        "path": _spec_path(row.spec_id),
        "markdown": row.markdown,
        "last_modified": format_us(row.updated_us),
        "revision": row.revision,
    }


def get_spec_history(ctx: ServiceContext, project: Project, spec_id: str) -> dict[str, Any]:
    """Every revision of a spec, oldest first: what produced it (an archived change, an
    import or a PUT) and when. 404 when the spec never existed."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        rows = [] if pid is None else spec_history(conn, pid, spec_id)
    if not rows:
        raise NotFound(f"spec not found: {spec_id}", kind="spec_not_found", spec_id=spec_id)
    return {
        "id": spec_id,
        "revisions": [
            {
                "revision": r.revision,
                "change_id": r.change_id,
                "source": r.source,
                "at": format_us(r.created_us),
                "deleted": r.markdown is None,
            }
            for r in rows
        ],
    }


def put_spec(
    ctx: ServiceContext,
    project: Project,
    spec_id: str,
    markdown: str,
    actor: Actor | None = None,
) -> dict[str, Any]:
    check_artifact(ctx.policy, f"spec {spec_id}", markdown)
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        existing = store.get_spec(conn, pid, spec_id, for_update=True)
        if existing is None or existing.markdown != markdown:
            write_spec(conn, pid, spec_id, markdown, now, source="put")
        audit(
            conn,
            pid,
            now,
            entity="spec",
            entity_id=spec_id,
            op="create" if existing is None else "update",
            by=(actor or Actor()).by,
        )
    return get_spec(ctx, project, spec_id)
