"""No local edit is lost: what an export would overwrite or remove is backed up first.

Before ``loom export`` writes the server's tree over a local ``.ito/``, the tree is written
to a scratch directory and compared file by file with the local one. Every local file that
differs, every file in a change directory that the new tree does not have (an export prunes
artifacts the server lacks), and every active ``changes/<id>/`` of a change the server has
archived (a stale copy, removed after the export) is copied to
``<state>/backups/export/<UTC timestamp>/`` with its path relative to ``.ito/``.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loom.client._state import REVISION_FILE
from loom.tree import ItoTree, write_tree

__all__ = ["Protection", "protect_local_edits", "remove_stale_copies"]


@dataclass(frozen=True)
class Protection:
    """What was backed up before an export, relative to the ``.ito`` directory."""

    backup: Path | None
    overwritten: tuple[str, ...] = ()
    local_only: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()


def _files(root: Path) -> list[Path]:
    if not root.is_dir() or root.is_symlink():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def protect_local_edits(tree: ItoTree, ito_dir: Path, state: Path) -> Protection:
    """Back up what writing ``tree`` over ``ito_dir`` would overwrite or remove."""
    if not ito_dir.is_dir():
        return Protection(None)
    overwritten: list[str] = []
    local_only: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loom-export-") as scratch:
        fresh = Path(scratch)
        write_tree(tree, fresh)
        for new in _files(fresh):
            rel = new.relative_to(fresh)
            old = ito_dir / rel
            if old.is_file() and not filecmp.cmp(old, new, shallow=False):
                overwritten.append(rel.as_posix())
        for change in tree.changes:
            rel_dir = _change_rel(fresh, change.id, archived=change.archived)
            if rel_dir is None:
                continue
            for old in _files(ito_dir / rel_dir):
                rel = old.relative_to(ito_dir)
                if old.name != REVISION_FILE and not (fresh / rel).exists():
                    local_only.append(rel.as_posix())
    stale = [
        f"changes/{c.id}"
        for c in tree.changes
        if c.archived and (ito_dir / "changes" / c.id).is_dir()
    ]
    if not (overwritten or local_only or stale):
        return Protection(None)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = state / "backups" / "export" / stamp
    for name in [*overwritten, *local_only]:
        target = backup / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ito_dir / name, target)
    for name in stale:
        shutil.copytree(ito_dir / name, backup / name, dirs_exist_ok=True)
    return Protection(backup, tuple(overwritten), tuple(local_only), tuple(stale))


def _change_rel(fresh: Path, change_id: str, *, archived: bool) -> Path | None:
    """Where ``change_id`` was written in the scratch tree (relative path), if anywhere."""
    if not archived:
        return Path("changes") / change_id
    archive = fresh / "changes" / "archive"
    for entry in archive.glob(f"*-{change_id}"):
        return entry.relative_to(fresh)
    return None


def remove_stale_copies(ito_dir: Path, protection: Protection) -> None:
    """Delete the (backed-up) active copies of changes the server has archived."""
    for rel in protection.stale:
        path = ito_dir / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
