"""``loom overlaps`` and ``loom rebase``: changes touching the same requirements, and
bringing a change's deltas onto specs that moved on (docs/overlaps.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loom.cli._app import app
from loom.cli._common import ChangeArg, Ctx, agent_command, check_change_id, emit_json, err, out
from loom.cli._common import table as print_table
from loom.client import ChangeOverlap, Client, SharedRequirement, rebase_change
from loom.errors import LoomError, NotFound, StaleSpecBase

__all__ = ["ItoDirOption", "describe_overlap", "print_stale_base", "strong_overlap_counts"]


def _shared(items: list[SharedRequirement]) -> str:
    return ", ".join(f"{s.capability}: {s.requirement}" for s in items)


def describe_overlap(o: ChangeOverlap) -> str:
    """``001-02_x (strong: auth: Login; held by bee)``."""
    what = _shared(o.requirements) if o.strength == "strong" else ", ".join(o.capabilities)
    held = f"; held by {o.lease['holder']}" if o.lease else ""
    return f"{o.change_id} ({o.strength}: {what}{held})"


def strong_overlap_counts(client: Client) -> dict[str, int]:
    """Per change, how many changes share a requirement with it ({} from a server without
    the route)."""
    try:
        pairs = client.overlaps(strength="strong").overlaps
    except NotFound:
        return {}
    counts: dict[str, int] = {}
    for p in pairs:
        counts[p.a] = counts.get(p.a, 0) + 1
        counts[p.b] = counts.get(p.b, 0) + 1
    return counts


def print_stale_base(change: str, conflict: StaleSpecBase) -> None:
    """The requirements an archive found stale, and what to do about it (stderr)."""
    err(f"error: {conflict.message}")
    for item in conflict.details.get("requirements", []):
        by = ", ".join(
            str(c.get("change_id") or c.get("source")) for c in item.get("changed_by", [])
        )
        err(
            f"  {item.get('capability')}: {item.get('op')} '{item.get('requirement')}' "
            f"(base revision {item.get('base_revision')}, now {item.get('current_revision')}"
            f"{', changed by ' + by if by else ''})"
        )
    err("nothing was changed. To recover:")
    err(f"  1. `loom rebase {change}` writes the base, current and your texts next to each delta")
    err(
        f"  2. merge them into .ito/changes/{change}/specs/<cap>/spec.md, then `loom push {change}`"
    )
    err(f"  3. `loom archive {change}` (or `loom archive --force {change}` to overwrite)")


def _optional_change_id(value: str | None) -> str | None:
    return None if value is None else check_change_id(value)


@agent_command(app, "overlaps")
def overlaps(
    cx: Ctx,
    change: Annotated[
        str | None,
        typer.Argument(help="Only this change's overlaps.", callback=_optional_change_id),
    ] = None,
    strong: Annotated[
        bool, typer.Option("--strong", help="Only strong overlaps (a shared requirement).")
    ] = False,
) -> None:
    """Unarchived changes that touch the same requirements (strong) or capabilities (weak)."""
    if change is not None:
        view = cx.client.change_overlaps(cx.change(change))
        items = [o for o in view.overlaps if not strong or o.strength == "strong"]
        if cx.json:
            emit_json({"change_id": view.change_id, "overlaps": [o.to_json() for o in items]})
            return
        if not items:
            err(f"{view.change_id} overlaps no other change")
            return
        rows: list[tuple[Any, ...]] = [
            (
                o.change_id,
                o.strength,
                _shared(o.requirements) or ", ".join(o.capabilities),
                o.work_status or "-",
                o.lease["holder"] if o.lease else "-",
            )
            for o in items
        ]
        print_table(["CHANGE", "OVERLAP", "SHARED", "STATUS", "LEASE"], rows)
        return
    pairs = cx.client.overlaps(strength="strong" if strong else None).overlaps
    if cx.json:
        emit_json({"overlaps": [p.to_json() for p in pairs]})
        return
    if not pairs:
        err("no overlapping changes")
        return
    rows = [
        (
            p.a,
            p.b,
            p.strength,
            ", ".join(f"{s.capability}: {s.requirement}" for s in p.requirements)
            or ", ".join(p.capabilities),
        )
        for p in pairs
    ]
    print_table(["CHANGE", "OTHER", "OVERLAP", "SHARED"], rows)


ItoDirOption = Annotated[
    Path | None,
    typer.Option(
        "--ito-dir",
        envvar="LOOM_ITO_DIR",
        help="The .ito directory (default: .ito in the repository root).",
    ),
]


@agent_command(app, "rebase")
def rebase(cx: Ctx, change: ChangeArg, ito_dir: ItoDirOption = None) -> None:
    """Write base, current and this change's texts next to each delta whose spec moved on.

    For every capability whose spec changed since the delta's base revision, writes
    spec.md.base, spec.md.current and REBASE.md into .ito/changes/<id>/specs/<cap>/ and
    moves the local base to the current revision: merge, then `loom push`.
    """
    outcome = rebase_change(cx.client, cx.change(change), cx.ito_dir(ito_dir))
    if cx.json:
        emit_json(
            {
                "change_id": outcome.change_id,
                "specs": [
                    {
                        "capability": s.capability,
                        "base_revision": s.base_revision,
                        "current_revision": s.current_revision,
                        "stale": list(s.stale),
                        "files": [str(f) for f in s.files],
                    }
                    for s in outcome.specs
                ],
            }
        )
        return
    if not outcome.specs:
        out(f"{outcome.change_id}: every delta is based on the current spec; nothing to do")
        return
    for s in outcome.specs:
        stale = ", ".join(s.stale) or "none changed"
        out(f"{s.capability}: revision {s.base_revision} -> {s.current_revision} ({stale})")
        for f in s.files:
            out(f"  wrote {f}")
    out(f"merge into the deltas, then `loom push {outcome.change_id}`")


def overlaps_of(client: Client, change_id: str) -> list[ChangeOverlap]:
    """A change's overlaps for ``loom show`` ([] from a server without the route)."""
    try:
        return client.change_overlaps(change_id).overlaps
    except LoomError:
        return []
