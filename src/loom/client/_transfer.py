"""Bulk transfer of a whole ``.ito/`` tree: import (chunked ``POST /import``) and export.

Import sends modules first (parents before sub-modules), then truth specs, then changes, in
requests of at most ``chunk_bytes`` of JSON each, so large trees stay under the server's
body limit. Each request is one transaction and carries its own idempotency key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from loom.client._client import Client
from loom.client._protect import Protection, protect_local_edits, remove_stale_copies
from loom.domain.ids import archive_dir_name
from loom.errors import NotFound
from loom.models import (
    ImportChange,
    ImportModule,
    ImportResult,
    ImportSpec,
    ProjectSnapshot,
)
from loom.tree import ChangeFiles, ItoTree, ModuleFiles, SpecFiles, read_tree, write_tree

__all__ = [
    "CHUNK_BYTES",
    "ExportReport",
    "ImportReport",
    "export_tree",
    "import_tree",
    "snapshot_from_tree",
    "tree_from_snapshot",
]

CHUNK_BYTES = 4 * 1024 * 1024
_Item = ImportModule | ImportSpec | ImportChange


@dataclass
class ImportReport:
    """What an import found, sent and got back (``result`` is summed over the requests)."""

    modules: int = 0
    specs: int = 0
    active_changes: int = 0
    archived_changes: int = 0
    skipped: list[str] = field(default_factory=list)
    requests: int = 0
    dry_run: bool = False
    result: ImportResult = field(default_factory=ImportResult)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "found": {
                "modules": self.modules,
                "specs": self.specs,
                "active_changes": self.active_changes,
                "archived_changes": self.archived_changes,
            },
            "requests": self.requests,
            "created": self.result.created,
            "updated": self.result.updated,
            "unchanged": self.result.unchanged,
            "conflicts": [c.to_json() for c in self.result.conflicts],
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    modules: int
    specs: int
    active_changes: int
    archived_changes: int
    path: Path
    protection: Protection = field(default_factory=lambda: Protection(None))

    def to_json(self) -> dict[str, Any]:
        p = self.protection
        return {
            "path": str(self.path),
            "modules": self.modules,
            "specs": self.specs,
            "active_changes": self.active_changes,
            "archived_changes": self.archived_changes,
            "backup": None if p.backup is None else str(p.backup),
            "overwritten": list(p.overwritten),
            "removed": list(p.local_only),
            "stale_removed": list(p.stale),
        }


def _archived_at(change: ChangeFiles) -> datetime | None:
    if change.archived_on is None:
        return None
    return datetime.combine(change.archived_on, time(0, 0), tzinfo=UTC)


def snapshot_from_tree(tree: ItoTree) -> tuple[ProjectSnapshot, list[str]]:
    """The import body for a tree, and the change directories left out as duplicates.

    When an id is both active and archived locally, the active copy is sent (it is the
    work in progress) and the archived directory is reported as skipped.
    """
    chosen: dict[str, ChangeFiles] = {}
    dropped: list[str] = []
    for change in tree.changes:
        previous = chosen.get(change.id)
        if previous is None:
            chosen[change.id] = change
            continue
        keep, drop = (previous, change) if previous.archived_on is None else (change, previous)
        chosen[change.id] = keep
        name = drop.dir_name or drop.id
        dropped.append(f"changes/{'archive/' if drop.archived else ''}{name}")
    snapshot = ProjectSnapshot(
        modules=[
            ImportModule(id=m.id, name=m.name, markdown=m.markdown)
            for m in sorted(tree.modules, key=lambda m: ("." in m.id, m.id))
        ],
        specs=[ImportSpec(id=s.id, markdown=s.markdown) for s in tree.specs],
        changes=[
            ImportChange(
                id=c.id,
                proposal=c.proposal,
                design=c.design,
                tasks=c.tasks,
                specs=list(c.specs),
                metadata=c.metadata,
                archived_at=_archived_at(c),
            )
            for c in chosen.values()
        ],
    )
    return snapshot, dropped


def _chunks(snapshot: ProjectSnapshot, limit: int) -> list[ProjectSnapshot]:
    items: list[_Item] = [*snapshot.modules, *snapshot.specs, *snapshot.changes]
    chunks: list[ProjectSnapshot] = []
    current = ProjectSnapshot()
    size = 0
    for item in items:
        item_size = len(json.dumps(item.to_json(), ensure_ascii=False).encode()) + 2
        if size and size + item_size > limit:
            chunks.append(current)
            current, size = ProjectSnapshot(), 0
        if isinstance(item, ImportModule):
            current.modules.append(item)
        elif isinstance(item, ImportSpec):
            current.specs.append(item)
        else:
            current.changes.append(item)
        size += item_size
    if size:
        chunks.append(current)
    return chunks


def import_tree(
    client: Client,
    ito_dir: Path,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Read ``ito_dir`` and load it into the project (nothing is sent with ``dry_run``).

    Re-importing the same tree reports everything unchanged. ``on_progress(done, total)``
    is called after each request.
    """
    if not ito_dir.is_dir():
        raise NotFound(f"no .ito directory at {ito_dir}", kind="file_not_found")
    tree = read_tree(ito_dir)
    snapshot, dropped = snapshot_from_tree(tree)
    report = ImportReport(
        modules=len(snapshot.modules),
        specs=len(snapshot.specs),
        active_changes=sum(1 for c in snapshot.changes if c.archived_at is None),
        archived_changes=sum(1 for c in snapshot.changes if c.archived_at is not None),
        skipped=[*tree.skipped, *dropped],
        dry_run=dry_run,
    )
    chunks = _chunks(snapshot, chunk_bytes)
    if dry_run:
        report.requests = len(chunks)
        return report
    for index, chunk in enumerate(chunks, start=1):
        report.result = report.result + client.import_snapshot(chunk, overwrite=overwrite)
        report.requests += 1
        if on_progress is not None:
            on_progress(index, len(chunks))
    return report


def tree_from_snapshot(snapshot: ProjectSnapshot) -> ItoTree:
    """The ``.ito/`` tree of an export (archived changes dated by their ``archived_at``)."""
    changes = []
    for c in snapshot.changes:
        day = c.archived_at.astimezone(UTC).date() if c.archived_at is not None else None
        changes.append(
            ChangeFiles(
                id=c.id,
                proposal=c.proposal,
                design=c.design,
                tasks=c.tasks,
                specs=tuple(sorted(c.specs)),
                metadata=c.metadata,
                archived_on=day,
                dir_name="" if day is None else archive_dir_name(day, c.id),
            )
        )
    return ItoTree(
        changes=tuple(changes),
        modules=tuple(
            ModuleFiles(id=m.id, name=m.name, markdown=m.markdown or "") for m in snapshot.modules
        ),
        specs=tuple(SpecFiles(id=s.id, markdown=s.markdown) for s in snapshot.specs),
    )


def export_tree(
    client: Client,
    ito_dir: Path,
    *,
    state: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write the whole project to ``ito_dir`` (the ``.ito`` directory itself).

    With ``state`` (the client state directory), local files the export would overwrite or
    remove are backed up there first (:mod:`loom.client._protect`), and the active copy of
    a change the server has archived is removed after the export (it is backed up too).
    ``on_progress(done, total)`` is called once the project is fetched (``done`` 0) and
    after each step is written: the modules and specs, then each change.
    """
    snapshot = client.export_snapshot()
    tree = tree_from_snapshot(snapshot)
    protection = Protection(None)
    if state is not None:
        protection = protect_local_edits(tree, ito_dir, state)
    steps = [ItoTree(modules=tree.modules, specs=tree.specs)]
    steps += [ItoTree(changes=(change,)) for change in tree.changes]
    if on_progress is not None:
        on_progress(0, len(steps))
    for done, step in enumerate(steps, start=1):
        write_tree(step, ito_dir)  # the same writes, in the same order, as the whole tree
        if on_progress is not None:
            on_progress(done, len(steps))
    remove_stale_copies(ito_dir, protection)
    archived = sum(1 for c in tree.changes if c.archived)
    return ExportReport(
        modules=len(tree.modules),
        specs=len(tree.specs),
        active_changes=len(tree.changes) - archived,
        archived_changes=archived,
        path=ito_dir,
        protection=protection,
    )
