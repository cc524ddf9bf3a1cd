"""Writing an ``.ito/`` tree: atomic per file, confined to the ``.ito`` directory."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from loom.domain.ids import (
    archive_dir_name,
    parse_archive_dir_name,
    validate_capability,
    validate_change_id,
    validate_module_id,
    validate_spec_id,
)
from loom.domain.modules import module_dir_name
from loom.errors import ValidationError
from loom.tree._model import ARTIFACT_FILES, ChangeFiles, ItoTree, ModuleFiles, SpecFiles

__all__ = ["write_change", "write_module", "write_spec", "write_tree"]

_SUB_DIR = re.compile(r"(\d+)_(.+)")


def _unsafe(message: str, rel: str) -> ValidationError:
    return ValidationError(message, kind="unsafe_path", path=rel)


def _ensure_dir(root: Path, parts: tuple[str, ...]) -> Path:
    """Create ``root/parts…`` one level at a time, refusing symlinks and non-directories.

    ``root`` itself (the ``.ito`` directory) is trusted and created if missing."""
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for index, part in enumerate(parts):
        current = current / part
        rel = "/".join(parts[: index + 1])
        if current.is_symlink():
            raise _unsafe(f"refusing to write through the symlink {rel}", rel)
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            raise _unsafe(f"{rel} exists and is not a directory", rel)
    return current


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{what} is not valid Unicode text", kind="invalid_artifact", artifact=what
        ) from exc


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (temp file + ``os.replace``); no-op when the
    regular file already holds exactly these bytes. A symlink at ``path`` is replaced, never
    followed."""
    if not path.is_symlink() and path.is_file():
        with open(path, "rb") as fh:
            if fh.read() == data:
                return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _remove_artifact(path: Path) -> None:
    """Delete an artifact file, but only one the reader would have read (a regular UTF-8
    file): symlinks and non-UTF-8 files are not artifacts and are left alone."""
    if path.is_symlink() or not path.is_file():
        return
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return
    path.unlink()


def _rmdir_if_empty(path: Path) -> None:
    if not path.is_symlink() and path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def _change_parts(change: ChangeFiles) -> tuple[str, ...]:
    change_id = validate_change_id(change.id)
    if change.archived_on is None:
        return ("changes", change_id)
    if change.dir_name and parse_archive_dir_name(change.dir_name) == (
        change.archived_on,
        change_id,
    ):
        return ("changes", "archive", change.dir_name)
    return ("changes", "archive", archive_dir_name(change.archived_on, change_id))


def write_change(change: ChangeFiles, ito_dir: Path, *, prune: bool = True) -> Path:
    """Write a change's artifacts under ``changes/<id>/`` or
    ``changes/archive/<YYYY-MM-DD>-<id>/`` (reusing ``dir_name`` when it names the same id and
    date) and return that directory.

    Each artifact is written byte for byte, atomically. With ``prune``, artifact files and
    ``specs/<cap>/spec.md`` files the value does not have are deleted (and spec directories
    left empty removed); other files are never touched. Ids and capabilities are validated
    before any path is built, and no symlink is followed.
    """
    ito_dir = Path(ito_dir)
    parts = _change_parts(change)
    capabilities = [validate_capability(cap) for cap, _ in change.specs]
    if len(set(capabilities)) != len(capabilities):
        raise ValidationError(
            f"change {change.id} lists a capability twice",
            kind="invalid_request",
            change_id=change.id,
        )
    payloads = {
        name: None if text is None else _encode(text, f"{change.id}/{name}")
        for name, text in zip(
            ARTIFACT_FILES,
            (change.proposal, change.design, change.tasks, change.metadata),
            strict=True,
        )
    }
    spec_payloads = {cap: _encode(md, f"{change.id}/specs/{cap}") for cap, md in change.specs}
    target = _ensure_dir(ito_dir, parts)
    for name, data in payloads.items():
        if data is not None:
            _write_bytes(target / name, data)
        elif prune:
            _remove_artifact(target / name)
    if spec_payloads:
        specs_dir = _ensure_dir(ito_dir, (*parts, "specs"))
        for cap, data in spec_payloads.items():
            _write_bytes(_ensure_dir(specs_dir, (cap,)) / "spec.md", data)
    specs_dir = target / "specs"
    if prune and not specs_dir.is_symlink() and specs_dir.is_dir():
        for entry in sorted(specs_dir.iterdir()):
            if entry.name in spec_payloads or entry.is_symlink() or not entry.is_dir():
                continue
            try:
                validate_capability(entry.name)
            except ValidationError:
                continue
            _remove_artifact(entry / "spec.md")
            _rmdir_if_empty(entry)
        _rmdir_if_empty(specs_dir)
    return target


def _safe_name(segment: str) -> bool:
    """Whether a module directory's name part is one safe path segment."""
    try:
        module_dir_name("000", segment)
    except ValidationError:
        return False
    return True


def _module_parts(
    module: ModuleFiles, ito_dir: Path, parents: Mapping[str, str]
) -> tuple[str, ...]:
    module_id = validate_module_id(module.id)
    if "." not in module_id:
        if module.dir_name.startswith(f"{module_id}_") and _safe_name(
            module.dir_name[len(module_id) + 1 :]
        ):
            return ("modules", module.dir_name)
        return ("modules", module_dir_name(module_id, module.name))
    parent_id, sub_id = module_id.split(".")
    pieces = module.dir_name.split("/")
    if len(pieces) == 3 and pieces[1] == "sub" and pieces[0].startswith(f"{parent_id}_"):
        match = _SUB_DIR.fullmatch(pieces[2])
        if (
            match is not None
            and int(match[1]) == int(sub_id)
            and _safe_name(match[2])
            and _safe_name(pieces[0][len(parent_id) + 1 :])
        ):
            return ("modules", pieces[0], "sub", pieces[2])
    parent_dir = parents.get(parent_id) or _existing_module_dir(ito_dir, parent_id)
    if parent_dir is None:
        raise ValidationError(
            f"cannot write sub-module {module_id}: parent module {parent_id} not found",
            kind="module_parent_missing",
            module_id=module_id,
        )
    return ("modules", parent_dir, "sub", module_dir_name(module_id, module.name))


def _existing_module_dir(ito_dir: Path, module_id: str) -> str | None:
    modules = ito_dir / "modules"
    if modules.is_symlink() or not modules.is_dir():
        return None
    names = sorted(
        p.name
        for p in modules.iterdir()
        if p.name.startswith(f"{module_id}_")
        and _safe_name(p.name[len(module_id) + 1 :])
        and p.is_dir()
        and not p.is_symlink()
    )
    return names[0] if names else None


def write_module(
    module: ModuleFiles, ito_dir: Path, *, parents: Mapping[str, str] | None = None
) -> Path:
    """Write ``modules/<NNN_name>/module.md`` or ``modules/<parent>/sub/<SS_name>/module.md``
    and return its directory. ``dir_name`` is reused when it is safe and matches the id
    (otherwise the directory is named from id and name); a sub-module's
    parent directory otherwise comes from ``parents`` (module id → directory name) or the
    existing ``modules/NNN_*`` directory."""
    ito_dir = Path(ito_dir)
    parts = _module_parts(module, ito_dir, parents or {})
    data = _encode(module.markdown, f"module {module.id}")
    target = _ensure_dir(ito_dir, parts)
    _write_bytes(target / "module.md", data)
    return target


def write_spec(spec: SpecFiles, ito_dir: Path) -> Path:
    """Write ``specs/<id>/spec.md`` and return its path."""
    spec_id = validate_spec_id(spec.id)
    data = _encode(spec.markdown, f"spec {spec.id}")
    path = _ensure_dir(Path(ito_dir), ("specs", spec_id)) / "spec.md"
    _write_bytes(path, data)
    return path


def write_tree(tree: ItoTree, ito_dir: Path) -> None:
    """Write every module, truth spec and change of ``tree`` under ``ito_dir`` (created if
    missing). Changes are written with ``prune=True``; nothing absent from the tree is
    deleted."""
    ito_dir = Path(ito_dir)
    ito_dir.mkdir(parents=True, exist_ok=True)
    parents: dict[str, str] = {}
    for module in sorted(tree.modules, key=lambda m: ("." in m.id, m.id)):
        target = write_module(module, ito_dir, parents=parents)
        if "." not in module.id:
            parents[module.id] = target.name
    for spec in tree.specs:
        write_spec(spec, ito_dir)
    for change in tree.changes:
        write_change(change, ito_dir)
