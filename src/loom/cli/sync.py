"""Local tree commands: ``pull``, ``push``, ``archive``, ``import``, ``export``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer

from loom.cli._app import app
from loom.cli._common import (
    EXIT_CONFLICT,
    ChangeArg,
    Ctx,
    agent_command,
    emit_json,
    err,
    out,
    stdout_is_tty,
    table,
)
from loom.cli._format import format_time
from loom.cli.overlaps import ItoDirOption, print_stale_base
from loom.client import (
    REVISION_FILE,
    archive_change,
    export_tree,
    import_tree,
    pull_change,
    push_change,
)
from loom.errors import NotFound, PreconditionRequired, RevisionConflict, StaleSpecBase

__all__: list[str] = []


@agent_command(app, "pull")
def pull(cx: Ctx, change: ChangeArg, ito_dir: ItoDirOption = None) -> None:
    """Write the server's copy of a change to .ito/changes/<id>/ (local files backed up first).

    An archived change is written to .ito/changes/archive/<date>-<id>/, never back among
    the active changes. Local files that differ are named on stderr with the backup.
    """
    change_id = cx.change(change)
    detail = cx.client.get_change(change_id, lifecycle="all")
    archived_on = None if detail.archived_at is None else detail.archived_at.astimezone(UTC).date()
    outcome = pull_change(
        cx.client, change_id, cx.ito_dir(ito_dir), cx.state, archived_on=archived_on
    )
    if cx.json:
        emit_json(
            {
                "change_id": outcome.change_id,
                "revision": outcome.revision,
                "path": str(outcome.path),
                "archived": archived_on is not None,
                "backup": str(outcome.backup) if outcome.backup else None,
                "overwritten": list(outcome.changed_files),
            }
        )
        return
    where = "archived copy " if archived_on is not None else ""
    out(f"pulled {where}{outcome.change_id} at revision {outcome.revision} into {outcome.path}")
    if outcome.changed_files:
        err(
            f"local edits replaced: {', '.join(outcome.changed_files)}; "
            f"the previous files are backed up in {outcome.backup}"
        )
    elif outcome.backup is not None:
        err(f"previous local files backed up to {outcome.backup}")


@agent_command(app, "push")
def push(cx: Ctx, change: ChangeArg, ito_dir: ItoDirOption = None) -> int:
    """Send .ito/changes/<id>/ to the server, based on its .backend-revision.

    On a revision conflict nothing changes; pull, re-apply your edits, and push again. A
    change that exists on the server must have been pulled first (it needs the revision).
    """
    ito = cx.ito_dir(ito_dir)
    if not (ito / "changes" / change).is_dir():
        try:
            change = cx.change(change)  # a short id names a change the server has
        except NotFound as error:
            if error.details.get("did_you_mean"):
                raise  # otherwise: no such local directory, said below
    try:
        outcome = push_change(cx.client, change, ito, fencing_token=cx.fencing_token(change))
    except (RevisionConflict, PreconditionRequired) as conflict:
        if cx.json:
            emit_json(conflict.to_envelope() | {"exit_code": EXIT_CONFLICT})
            return EXIT_CONFLICT
        server = conflict.details.get("server_revision", "?")
        if isinstance(conflict, RevisionConflict):
            local = conflict.details.get("local_revision", "?")
            err(f"error: revision conflict on {change}: local revision {local}, server {server}")
        else:
            err(
                f"error: {change} already exists on the server (revision {server}), but the "
                f"local copy was never pulled (its {REVISION_FILE} is missing or empty)"
            )
        err("nothing was changed. To recover:")
        err(f"  1. `loom pull {change}` (your local files are backed up first)")
        err(f"  2. re-apply your edits to .ito/changes/{change}/")
        err(f"  3. `loom push {change}`")
        return EXIT_CONFLICT
    if cx.json:
        report: dict[str, Any] = {
            "change_id": outcome.change_id,
            "base_revision": outcome.base_revision,
            "new_revision": outcome.result.new_revision,
            "changed": not outcome.unchanged,
        }
        if outcome.result.overlaps:  # as the server: only when the push created some
            report["overlaps"] = outcome.result.overlaps
        emit_json(report)
        return 0
    if outcome.unchanged:
        out(
            f"nothing to push: {outcome.change_id} is unchanged at revision {outcome.base_revision}"
        )
        return 0
    base = outcome.base_revision or "(new)"
    out(f"pushed {outcome.change_id}: revision {base} -> {outcome.result.new_revision}")
    for warning in outcome.result.overlaps:
        shared = ", ".join(
            f"{r.get('capability')}: {r.get('requirement')}"
            for r in warning.get("requirements", [])
        )
        err(f"warning: now overlaps {warning.get('change_id')} ({shared}); see `loom overlaps`")
    return 0


@agent_command(app, "archive")
def archive(
    cx: Ctx,
    change: ChangeArg,
    ito_dir: ItoDirOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Archive even with pending or in-progress tasks, or when a requirement the "
            "change touches changed since its spec base (lease holder or admin; recorded).",
        ),
    ] = False,
) -> int:
    """Archive a change on the server, then move it locally and write the merged specs.

    A change with pending or in-progress tasks is refused (exit 3, change_unfinished)
    unless --force; shelved tasks do not count. Refused too (exit 3, nothing changed) when
    another archive changed a requirement this change touches since its deltas were
    written: run `loom rebase`, merge, push, retry (or --force). The local module.md is
    ticked too.
    """
    ito = cx.ito_dir(ito_dir)
    change = cx.change(change)
    try:
        outcome = archive_change(
            cx.client, change, ito, cx.state, force=force, fencing_token=cx.fencing_token(change)
        )
    except StaleSpecBase as conflict:
        if cx.json:
            emit_json(conflict.to_envelope() | {"exit_code": EXIT_CONFLICT})
        else:
            print_stale_base(change, conflict)
        return EXIT_CONFLICT
    cx.leases().forget(outcome.result.change_id)
    if cx.json:
        emit_json(
            outcome.result.to_json() | {"path": str(outcome.path), "specs": list(outcome.specs)}
        )
        return 0
    out(f"archived {outcome.result.change_id} at {format_time(outcome.result.archived_at)}")
    out(f"  local copy: {outcome.path}")
    if outcome.specs:
        out(f"  specs updated: {', '.join(outcome.specs)}")
    if outcome.module_md is not None:
        out(f"  module ticked: {outcome.module_md}")
    return 0


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@agent_command(app, "import")
def import_(
    cx: Ctx,
    path: Annotated[
        Path | None,
        typer.Argument(help="The .ito directory to import (default ./.ito)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and report; send nothing.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace items that differ on the server.")
    ] = False,
) -> int:
    """Import an .ito/ tree: modules, specs, active and archived changes (idempotent).

    Exits 3 when items differ on the server and --overwrite was not given, and when an
    item cannot be replaced even with --overwrite (an import never un-archives a change).
    """
    ito = path if path is not None else Path.cwd() / ".ito"
    with _progress(stdout_is_tty() and not cx.json and not dry_run, "importing") as progress:
        report = import_tree(
            cx.client, ito, overwrite=overwrite, dry_run=dry_run, on_progress=progress
        )
    if cx.json:
        emit_json(report.to_json())
        return EXIT_CONFLICT if report.result.conflicts else 0
    found = (
        f"{report.modules} modules, {report.specs} specs, {report.active_changes} active and "
        f"{report.archived_changes} archived changes"
    )
    if dry_run:
        out(f"dry run: would send {found} in {report.requests} request(s)")
    else:
        result = report.result
        table(
            ["CREATED", "UPDATED", "UNCHANGED", "CONFLICTS", "SKIPPED FILES"],
            [
                (
                    result.created,
                    result.updated,
                    result.unchanged,
                    len(result.conflicts),
                    len(report.skipped),
                )
            ],
        )
        err(f"read {found}; sent {report.requests} request(s)")
        for conflict in result.conflicts:
            err(f"conflict: {conflict.kind} {conflict.id}: {conflict.reason}")
        if result.conflicts and not overwrite:
            err("re-run with --overwrite to replace the differing items")
    for skipped in report.skipped:
        err(f"skipped: {skipped}")
    return EXIT_CONFLICT if report.result.conflicts else 0


@agent_command(app, "export")
def export(
    cx: Ctx,
    path: Annotated[
        Path | None,
        typer.Argument(help="The .ito directory to write (default ./.ito)."),
    ] = None,
) -> None:
    """Write the project as an .ito/ tree that `loom import` reads back identically.

    Local files it overwrites or removes are backed up first (named on stderr), and the
    active copy of a change the server has archived is removed (backed up too).
    """
    ito = path if path is not None else Path.cwd() / ".ito"
    with _progress(stdout_is_tty() and not cx.json, "exporting") as progress:
        report = export_tree(cx.client, ito, state=cx.state, on_progress=progress)
    if cx.json:
        emit_json(report.to_json())
        return
    out(
        f"exported {report.modules} modules, {report.specs} specs, {report.active_changes} "
        f"active and {report.archived_changes} archived changes to {report.path}"
    )
    kept = report.protection
    if kept.backup is None:
        return
    for rel in kept.overwritten:
        err(f"local edit replaced by the server's copy: {rel}")
    for rel in kept.local_only:
        if not (ito / rel).exists():
            err(f"local file removed (the server does not have it): {rel}")
    for rel in kept.stale:
        err(f"stale active copy of an archived change removed: {rel}/")
    err(f"the previous local files are backed up in {kept.backup}")
