"""Reading an ``.ito/`` tree (ito-domain.md §2, §1.9, §5.2, §5.3)."""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from pathlib import Path

from loom.domain.ids import (
    change_sort_key,
    parse_archive_dir_name,
    validate_capability,
    validate_change_id,
    validate_spec_id,
)
from loom.errors import ValidationError
from loom.tree._model import ARTIFACT_FILES, ChangeFiles, ItoTree, ModuleFiles, SpecFiles

__all__ = ["read_change", "read_tree"]

_MODULE_DIR = re.compile(r"(\d{3})_(.+)")
_SUB_MODULE_DIR = re.compile(r"(\d{1,2})_(.+)")


def _entries(path: Path) -> list[os.DirEntry[str]]:
    """Children of a directory sorted by name; [] if it is missing, a file or a symlink."""
    if path.is_symlink() or not path.is_dir():
        return []
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    return entry.is_dir(follow_symlinks=False)


def _is_file(entry: os.DirEntry[str]) -> bool:
    return entry.is_file(follow_symlinks=False)


def _all_files(path: Path, rel: str) -> list[str]:
    """Every file (and symlink) at or under ``path``, as posix paths; symlinks not followed."""
    if path.is_symlink() or not path.is_dir():
        return [rel]
    found: list[str] = []
    for entry in _entries(path):
        found += _all_files(Path(entry.path), f"{rel}/{entry.name}")
    return found


def _read_text(path: str) -> str | None:
    """The file as text with its bytes kept exactly (no newline translation); None if it
    is not UTF-8."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_valid(validate: Callable[[str], str], value: str) -> bool:
    try:
        validate(value)
    except ValidationError:
        return False
    return True


def _read_change_dir(
    change_dir: Path, change_id: str, archived_on: datetime.date | None, rel: str
) -> tuple[ChangeFiles, list[str]]:
    skipped: list[str] = []
    texts: dict[str, str] = {}
    specs: list[tuple[str, str]] = []
    for entry in _entries(change_dir):
        entry_rel = f"{rel}/{entry.name}"
        if entry.name in ARTIFACT_FILES and _is_file(entry):
            text = _read_text(entry.path)
            if text is None:
                skipped.append(entry_rel)
            else:
                texts[entry.name] = text
        elif entry.name == "specs" and _is_dir(entry):
            specs += _read_delta_specs(Path(entry.path), entry_rel, skipped)
        else:
            skipped += _all_files(Path(entry.path), entry_rel)
    change = ChangeFiles(
        id=change_id,
        proposal=texts.get("proposal.md"),
        design=texts.get("design.md"),
        tasks=texts.get("tasks.md"),
        specs=tuple(sorted(specs)),
        metadata=texts.get(".ito.yaml"),
        archived_on=archived_on,
        dir_name=change_dir.name,
    )
    return change, skipped


def _read_delta_specs(specs_dir: Path, rel: str, skipped: list[str]) -> list[tuple[str, str]]:
    specs: list[tuple[str, str]] = []
    for cap in _entries(specs_dir):
        cap_rel = f"{rel}/{cap.name}"
        if not (_is_dir(cap) and _is_valid(validate_capability, cap.name)):
            skipped += _all_files(Path(cap.path), cap_rel)
            continue
        for entry in _entries(Path(cap.path)):
            text = _read_text(entry.path) if entry.name == "spec.md" and _is_file(entry) else None
            if text is None:
                skipped += _all_files(Path(entry.path), f"{cap_rel}/{entry.name}")
            else:
                specs.append((cap.name, text))
    return specs


def read_change(change_dir: Path, archived_on: datetime.date | None = None) -> ChangeFiles:
    """Read one change directory.

    The id is the directory name for an active change (``archived_on`` None), or the id part
    of an archive directory name (``2026-03-02-024-03_x``) otherwise. Raises
    ``ValidationError(kind="invalid_id")`` when the name holds no valid change id.
    """
    change_dir = Path(change_dir)
    name = change_dir.name
    if archived_on is None:
        change_id = validate_change_id(name)
    else:
        parsed = parse_archive_dir_name(name)
        change_id = validate_change_id(parsed[1] if parsed is not None else name)
    change, _ = _read_change_dir(change_dir, change_id, archived_on, name)
    return change


def _read_changes(ito_dir: Path, skipped: list[str]) -> list[ChangeFiles]:
    changes: list[ChangeFiles] = []
    for entry in _entries(ito_dir / "changes"):
        rel = f"changes/{entry.name}"
        if entry.name == "archive" and _is_dir(entry):
            changes += _read_archive(Path(entry.path), rel, skipped)
        elif (
            _is_dir(entry)
            and not entry.name.startswith(".")
            and _is_valid(validate_change_id, entry.name)
        ):
            change, files = _read_change_dir(Path(entry.path), entry.name, None, rel)
            changes.append(change)
            skipped += files
        else:
            skipped += _all_files(Path(entry.path), rel)
    return changes


def _read_archive(archive_dir: Path, rel: str, skipped: list[str]) -> list[ChangeFiles]:
    latest: dict[str, tuple[os.DirEntry[str], datetime.date]] = {}
    for entry in _entries(archive_dir):  # sorted: a later dir for the same id wins
        parsed = parse_archive_dir_name(entry.name) if _is_dir(entry) else None
        day = parsed[0] if parsed is not None else None
        if parsed is None or day is None:  # no change id, or no date to archive it on
            skipped += _all_files(Path(entry.path), f"{rel}/{entry.name}")
            continue
        change_id = parsed[1]
        previous = latest.get(change_id)
        if previous is not None:
            skipped += _all_files(Path(previous[0].path), f"{rel}/{previous[0].name}")
        latest[change_id] = (entry, day)
    changes: list[ChangeFiles] = []
    for change_id, (entry, day) in latest.items():
        change, files = _read_change_dir(Path(entry.path), change_id, day, f"{rel}/{entry.name}")
        changes.append(change)
        skipped += files
    return changes


def _read_module_md(
    module_dir: Path, rel: str, skipped: list[str], module_id: str, name: str
) -> ModuleFiles | None:
    path = module_dir / "module.md"
    text = _read_text(str(path)) if path.is_file() and not path.is_symlink() else None
    if text is None:
        if path.exists() or path.is_symlink():
            skipped += _all_files(path, f"{rel}/module.md")
        return None
    return ModuleFiles(id=module_id, name=name, markdown=text, dir_name=rel[len("modules/") :])


def _read_modules(ito_dir: Path, skipped: list[str]) -> list[ModuleFiles]:
    modules: dict[str, ModuleFiles] = {}
    for entry in _entries(ito_dir / "modules"):
        rel = f"modules/{entry.name}"
        match = _MODULE_DIR.fullmatch(entry.name)
        if match is None or not _is_dir(entry) or match[1] in modules:
            skipped += _all_files(Path(entry.path), rel)
            continue
        module_dir = Path(entry.path)
        module = _read_module_md(module_dir, rel, skipped, match[1], match[2])
        if module is not None:
            modules[module.id] = module
        for child in _entries(module_dir):
            if child.name == "sub" and _is_dir(child):
                for sub in _read_sub_modules(Path(child.path), f"{rel}/sub", match[1], skipped):
                    if sub.id in modules:
                        sub_rel = f"modules/{sub.dir_name}"
                        skipped += _all_files(ito_dir / sub_rel, sub_rel)
                    else:
                        modules[sub.id] = sub
            elif child.name != "module.md":
                skipped += _all_files(Path(child.path), f"{rel}/{child.name}")
    return sorted(modules.values(), key=lambda m: m.id)


def _read_sub_modules(
    sub_dir: Path, rel: str, parent_id: str, skipped: list[str]
) -> list[ModuleFiles]:
    subs: list[ModuleFiles] = []
    for entry in _entries(sub_dir):
        entry_rel = f"{rel}/{entry.name}"
        match = _SUB_MODULE_DIR.fullmatch(entry.name)
        if match is None or not _is_dir(entry):
            skipped += _all_files(Path(entry.path), entry_rel)
            continue
        sub_id = f"{parent_id}.{int(match[1]):02d}"
        sub = _read_module_md(Path(entry.path), entry_rel, skipped, sub_id, match[2])
        if sub is not None:
            subs.append(sub)
        for child in _entries(Path(entry.path)):
            if child.name != "module.md":
                skipped += _all_files(Path(child.path), f"{entry_rel}/{child.name}")
    return subs


def _read_specs(ito_dir: Path, skipped: list[str]) -> list[SpecFiles]:
    specs: list[SpecFiles] = []
    for entry in _entries(ito_dir / "specs"):
        rel = f"specs/{entry.name}"
        if not (_is_dir(entry) and _is_valid(validate_spec_id, entry.name)):
            skipped += _all_files(Path(entry.path), rel)
            continue
        for child in _entries(Path(entry.path)):
            text = _read_text(child.path) if child.name == "spec.md" and _is_file(child) else None
            if text is None:
                skipped += _all_files(Path(child.path), f"{rel}/{child.name}")
            else:
                specs.append(SpecFiles(id=entry.name, markdown=text))
    return specs


def read_tree(ito_dir: Path) -> ItoTree:
    """Read the changes, modules and truth specs of an ``.ito/`` directory.

    Active changes are the directories under ``changes/`` (except ``archive`` and dot
    directories) named by a valid change id; archived changes are the dated directories
    under ``changes/archive/`` (when an id was archived twice, the lexicographically latest
    directory wins). Symlinks are never followed. Files are read as bytes and decoded as
    UTF-8, so line endings are kept exactly.
    """
    ito_dir = Path(ito_dir)
    skipped: list[str] = []
    changes = _read_changes(ito_dir, skipped)
    changes.sort(key=lambda c: (change_sort_key(c.id), c.archived_on is not None, c.dir_name))
    modules = _read_modules(ito_dir, skipped)
    specs = _read_specs(ito_dir, skipped)
    return ItoTree(
        changes=tuple(changes),
        modules=tuple(modules),
        specs=tuple(specs),
        skipped=tuple(sorted(skipped)),
    )
