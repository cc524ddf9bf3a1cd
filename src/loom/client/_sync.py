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
from loom.client._state import (
    backup_change,
    read_revision,
    read_spec_bases,
    write_revision,
    write_spec_bases,
)
from loom.domain.ids import archive_dir_name, module_of, sub_module_of
from loom.domain.modules import tick_change
from loom.errors import NotFound
from loom.models import ArchiveResult, ArtifactBundle, PushResult
from loom.tree import ChangeFiles, SpecFiles, read_change, write_change, write_spec

__all__ = [
    "ArchiveOutcome",
    "LocalCopy",
    "PullOutcome",
    "PushOutcome",
    "archive_change",
    "change_dir",
    "local_copy",
    "pull_change",
    "push_change",
    "refresh_local_tasks",
    "tick_local_module",
]


@dataclass(frozen=True)
class PullOutcome:
    """A pulled change: where it was written, its revision, and the backup made first.

    ``archived_on`` is the archive date when the change is archived on the server (it was
    written under ``changes/archive/<date>-<id>/``, never as an active change).
    """

    change_id: str
    revision: str
    path: Path
    backup: Path | None
    archived_on: date | None = None
    changed_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushOutcome:
    """A pushed change: the revision it was based on and the new one."""

    change_id: str
    base_revision: str
    result: PushResult

    @property
    def unchanged(self) -> bool:
        """True when nothing differed from the server (the revision did not move)."""
        return bool(self.base_revision) and self.result.new_revision == self.base_revision


@dataclass(frozen=True)
class ArchiveOutcome:
    """An archived change: the server's answer, the local archive dir and specs written."""

    result: ArchiveResult
    path: Path
    specs: tuple[str, ...]
    backup: Path | None
    module_md: Path | None = None


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


def _differing(path: Path, files: ChangeFiles) -> tuple[str, ...]:
    """The artifacts of the local ``path`` that writing ``files`` would change or remove."""
    if not path.is_dir():
        return ()
    local = read_change(path, files.archived_on)
    out = [
        name
        for name, old, new in (
            ("proposal.md", local.proposal, files.proposal),
            ("design.md", local.design, files.design),
            ("tasks.md", local.tasks, files.tasks),
        )
        if old is not None and old != new
    ]
    new_specs = dict(files.specs)
    out += [f"specs/{c}/spec.md" for c, md in local.specs if new_specs.get(c) != md]
    return tuple(out)


def pull_change(
    client: Client,
    change_id: str,
    ito_dir: Path,
    state: Path,
    *,
    archived_on: date | None = None,
) -> PullOutcome:
    """Fetch a change's bundle and write it to ``.ito/changes/<id>/``.

    An archived change (``archived_on`` given) goes to ``changes/archive/<date>-<id>/``
    instead, never back among the active changes. Existing local files are backed up to
    ``<state>/backups/<id>/<timestamp>/`` first, and ``changed_files`` names the local
    artifacts that were overwritten or removed. Artifacts the server no longer has are
    removed; other files (and ``.ito.yaml``, which the bundle does not carry) are kept.
    The revision goes to ``.backend-revision``.
    """
    bundle = client.pull(change_id)
    if archived_on is None:
        target = change_dir(ito_dir, bundle.change_id)
    else:
        target = ito_dir / "changes" / "archive" / archive_dir_name(archived_on, bundle.change_id)
    files = _files(bundle, _local_metadata(target), archived_on)
    changed = _differing(target, files)
    backup = backup_change(target, bundle.change_id, state)
    written = write_change(files, ito_dir, prune=True)
    write_revision(written, bundle.revision)
    write_spec_bases(written, bundle.spec_bases)
    return PullOutcome(bundle.change_id, bundle.revision, written, backup, archived_on, changed)


@dataclass(frozen=True)
class LocalCopy:
    """How a local change directory stands against the server, before a task write.

    ``edited`` lists local artifacts that differ from the server's copy at the same
    revision (unpushed edits); ``behind`` is True when the server has moved on.
    """

    path: Path
    local_revision: str
    server_revision: str
    edited: tuple[str, ...]

    @property
    def behind(self) -> bool:
        return self.local_revision != self.server_revision

    @property
    def in_step(self) -> bool:
        return not self.behind and not self.edited


def local_copy(client: Client, change_id: str, ito_dir: Path) -> LocalCopy | None:
    """The state of ``.ito/changes/<id>/`` against the server (None when there is none)."""
    path = change_dir(ito_dir, change_id)
    if not path.is_dir():
        return None
    bundle = client.pull(change_id)
    local = read_revision(path)
    edited = _differing(path, _files(bundle, None, None)) if local == bundle.revision else ()
    return LocalCopy(path, local, bundle.revision, edited)


def refresh_local_tasks(
    client: Client,
    change_id: str,
    ito_dir: Path,
    state: Path,
    new_revision: str | None,
    before: LocalCopy | None = None,
) -> Path | None:
    """Bring a pulled change's ``tasks.md`` up to date after a task write on the server.

    Only when the local copy was in step with the server just before that write (its
    ``.backend-revision`` is ``new_revision - 1``, and, when ``before`` is given, it had no
    unpushed edits) and the server is still at ``new_revision``: then nothing else changed
    in between, so the server's ``tasks.md`` and revision can be written locally (after a
    backup) and a later ``loom push`` of local edits to the other artifacts is based on the
    right revision. Returns the change directory if refreshed.
    """
    path = change_dir(ito_dir, change_id)
    if new_revision is None or not path.is_dir():
        return None
    if before is not None and not before.in_step:
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
        spec_bases=read_spec_bases(path),
    )


def push_change(
    client: Client,
    change_id: str,
    ito_dir: Path,
    *,
    fencing_token: int | None = None,
) -> PushOutcome:
    """Send the local change, based on its ``.backend-revision`` and the spec revisions in
    ``.backend-spec-bases``; record the new revision.

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
    force: bool = False,
    fencing_token: int | None = None,
) -> ArchiveOutcome:
    """Archive on the server, then mirror it locally.

    The active directory moves to ``changes/archive/<date>-<id>/`` (keeping any extra files),
    the archived bundle is written over it, the merged truth specs of the change's
    capabilities are written to ``specs/<cap>/spec.md``, and the change is ticked in the
    local ``module.md`` as on the server (local edits to it are kept). ``force`` archives a
    change with unfinished tasks, or over a stale spec base (see
    :func:`loom.client.rebase_change`); the server refuses both otherwise.
    """
    result = client.archive(change_id, force=force, fencing_token=fencing_token)
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
    module_md = tick_local_module(ito_dir, bundle.change_id)
    return ArchiveOutcome(result, written, tuple(specs), backup, module_md)


def _local_module_md(ito_dir: Path, change_id: str) -> Path | None:
    """The local ``module.md`` of the change's sub-module (else module), if there is one."""
    module_id = module_of(change_id)
    if module_id is None:
        return None
    tops = sorted((ito_dir / "modules").glob(f"{module_id}_*/module.md"))
    sub_id = sub_module_of(change_id)
    if sub_id is not None and tops:
        sub = sub_id.split(".")[1]
        subs = sorted(tops[0].parent.glob(f"sub/{sub}_*/module.md"))
        if subs:
            return subs[0]
    return tops[0] if tops else None


def tick_local_module(ito_dir: Path, change_id: str) -> Path | None:
    """Tick ``- [ ] <change_id>`` in the local ``module.md``, as the server's archive does.

    Returns the file when it changed. Only that checkbox changes; every other byte is kept.
    """
    path = _local_module_md(ito_dir, change_id)
    if path is None or path.is_symlink():
        return None
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    ticked = tick_change(text, change_id)
    if ticked == text:
        return None
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(ticked.encode("utf-8", errors="surrogateescape"))
    tmp.replace(path)
    return path
