"""Keep a local ``.ito/`` tree in step with the server: pull, push and archive one change.

Local writes go through :mod:`loom.tree` (atomic per file, ids validated before they become
paths). A pull backs the change directory up first; a push sends the revision it was based
on, so a concurrent change on the server is a :class:`RevisionConflict`, never an overwrite.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from loom.client._base import check_path_id
from loom.client._client import Client
from loom.client._state import backup_change, read_revision, write_revision
from loom.domain.ids import archive_dir_name
from loom.errors import NotFound
from loom.models import ArchiveResult, ArtifactBundle, PushResult
from loom.tree import ChangeFiles, SpecFiles, read_change, write_change, write_spec

__all__ = [
    "ArchiveOutcome",
    "PullOutcome",
    "PushOutcome",
    "archive_change",
    "change_dir",
    "pull_change",
    "push_change",
    "refresh_local_tasks",
]


@dataclass(frozen=True)
class PullOutcome:
    """A pulled change: where it was written, its revision, and the backup made first."""

    change_id: str
    revision: str
    path: Path
    backup: Path | None


@dataclass(frozen=True)
class PushOutcome:
    """A pushed change: the revision it was based on and the new one."""

    change_id: str
    base_revision: str
    result: PushResult


@dataclass(frozen=True)
class ArchiveOutcome:
    """An archived change: the server's answer, the local archive dir and specs written."""

    result: ArchiveResult
    path: Path
    specs: tuple[str, ...]
    backup: Path | None


def change_dir(ito_dir: Path, change_id: str) -> Path:
    """``<ito_dir>/changes/<id>`` (the id must be a single safe path segment)."""
    return ito_dir / "changes" / check_path_id(change_id, "change id")


def _local_metadata(path: Path) -> str | None:
    meta = path / ".ito.yaml"
    try:
        return meta.read_text(encoding="utf-8") if meta.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _files(bundle: ArtifactBundle, metadata: str | None, archived_on: date | None) -> ChangeFiles:
    return ChangeFiles(
        id=bundle.change_id,
        proposal=bundle.proposal,
        design=bundle.design,
        tasks=bundle.tasks,
        specs=tuple(sorted((cap, md) for cap, md in bundle.specs)),
        metadata=metadata,
        archived_on=archived_on,
        dir_name="" if archived_on is None else archive_dir_name(archived_on, bundle.change_id),
    )


def pull_change(client: Client, change_id: str, ito_dir: Path, state: Path) -> PullOutcome:
    """Fetch a change's bundle and write it to ``.ito/changes/<id>/``.

    Existing local files are backed up to ``<state>/backups/<id>/<timestamp>/`` first.
    Artifacts the server no longer has are removed; other files (and ``.ito.yaml``, which
    the bundle does not carry) are kept. The revision goes to ``.backend-revision``.
    """
    bundle = client.pull(change_id)
    target = change_dir(ito_dir, bundle.change_id)
    backup = backup_change(target, bundle.change_id, state)
    written = write_change(_files(bundle, _local_metadata(target), None), ito_dir, prune=True)
    write_revision(written, bundle.revision)
    return PullOutcome(bundle.change_id, bundle.revision, written, backup)


def refresh_local_tasks(
    client: Client, change_id: str, ito_dir: Path, state: Path, new_revision: str | None
) -> Path | None:
    """Bring a pulled change's ``tasks.md`` up to date after a task write on the server.

    Only when the local copy was in step with the server just before that write (its
    ``.backend-revision`` is ``new_revision - 1``) and the server is still at ``new_revision``:
    then nothing else changed in between, so the server's ``tasks.md`` and revision can be
    written locally (after a backup) and a later ``loom push`` of local edits to the other
    artifacts is based on the right revision. Returns the change directory if refreshed.
    """
    path = change_dir(ito_dir, change_id)
    if new_revision is None or not path.is_dir():
        return None
    local = read_revision(path)
    if not (local.isdigit() and new_revision.isdigit() and int(local) + 1 == int(new_revision)):
        return None
    bundle = client.pull(change_id)
    if bundle.revision != new_revision:
        return None
    backup_change(path, change_id, state)
    current = read_change(path)
    write_change(
        ChangeFiles(
            id=current.id,
            proposal=current.proposal,
            design=current.design,
            tasks=bundle.tasks,
            specs=current.specs,
            metadata=current.metadata,
            archived_on=None,
            dir_name="",
        ),
        ito_dir,
        prune=True,
    )
    write_revision(path, new_revision)
    return path


def read_local_bundle(ito_dir: Path, change_id: str) -> ArtifactBundle:
    """The local change as a bundle, with the revision it was last synced at."""
    path = change_dir(ito_dir, change_id)
    if not path.is_dir():
        raise NotFound(
            f"no local change directory {path} (run `loom pull {change_id}` first)",
            kind="change_not_found",
        )
    files = read_change(path)
    return ArtifactBundle(
        change_id=files.id,
        proposal=files.proposal,
        design=files.design,
        tasks=files.tasks,
        specs=list(files.specs),
        revision=read_revision(path),
    )


def push_change(
    client: Client,
    change_id: str,
    ito_dir: Path,
    *,
    fencing_token: int | None = None,
) -> PushOutcome:
    """Send the local change, based on its ``.backend-revision``; record the new revision.

    Raises :class:`RevisionConflict` (nothing changed anywhere) when the server moved on,
    and :class:`PreconditionRequired` when a never-pulled change already exists there.
    """
    bundle = read_local_bundle(ito_dir, change_id)
    result = client.push_bundle(bundle, fencing_token=fencing_token)
    write_revision(change_dir(ito_dir, change_id), result.new_revision)
    return PushOutcome(bundle.change_id, bundle.revision, result)


def archive_change(
    client: Client,
    change_id: str,
    ito_dir: Path,
    state: Path,
    *,
    fencing_token: int | None = None,
) -> ArchiveOutcome:
    """Archive on the server, then mirror it locally.

    The active directory moves to ``changes/archive/<date>-<id>/`` (keeping any extra files),
    the archived bundle is written over it, and the merged truth specs of the change's
    capabilities are written to ``specs/<cap>/spec.md``.
    """
    result = client.archive(change_id, fencing_token=fencing_token)
    bundle = client.pull(result.change_id)
    day = result.archived_at.date()
    active = change_dir(ito_dir, bundle.change_id)
    backup = backup_change(active, bundle.change_id, state)
    metadata = _local_metadata(active)
    archived_dir = ito_dir / "changes" / "archive" / archive_dir_name(day, bundle.change_id)
    if active.is_dir() and not active.is_symlink() and not archived_dir.exists():
        archived_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(active), str(archived_dir))
    written = write_change(_files(bundle, metadata, day), ito_dir, prune=True)
    write_revision(written, bundle.revision)
    if active.is_dir() and not active.is_symlink():
        shutil.rmtree(active)
    specs: list[str] = []
    for cap, _ in bundle.specs:
        try:
            doc = client.get_spec(cap)
        except NotFound:
            continue  # a delta that only removed requirements may leave no spec behind
        write_spec(SpecFiles(id=doc.id, markdown=doc.markdown), ito_dir)
        specs.append(doc.id)
    return ArchiveOutcome(result, written, tuple(specs), backup)
