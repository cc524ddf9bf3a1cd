"""The `.ito/` tree adapter: reading, writing, pruning, safety, round trips."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from loom.errors import ValidationError
from loom.tree import (
    ChangeFiles,
    ItoTree,
    ModuleFiles,
    SpecFiles,
    read_change,
    read_tree,
    write_change,
    write_module,
    write_spec,
    write_tree,
)

D1 = datetime.date(2026, 3, 2)
D2 = datetime.date(2026, 3, 6)


def _put(root: Path, rel: str, data: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def ito(tmp_path: Path) -> Path:
    root = tmp_path / ".ito"
    _put(root, "changes/001-02_beta/proposal.md", "# Beta\r\nWindows\r\n")
    _put(root, "changes/001-02_beta/tasks.md", "- [ ] one\n")
    _put(root, "changes/001-02_beta/.ito.yaml", "schema: spec-driven\ncreated: 2026-03-01\n")
    _put(root, "changes/001-02_beta/specs/wallets/spec.md", "## ADDED Requirements\n")
    _put(root, "changes/001-02_beta/specs/alpha/spec.md", "\ufeffBOM\rold mac\r")
    _put(root, "changes/001-02_beta/README.md", "not an artifact\n")
    _put(root, "changes/001-02_beta/demos/a/b.txt", "demo\n")
    _put(root, "changes/001-02_beta/design.md", b"\xff\xfe latin junk")
    _put(root, "changes/001-02_beta/specs/Bad Cap/spec.md", "x\n")
    _put(root, "changes/001-02_beta/specs/wallets/notes.md", "x\n")
    _put(root, "changes/001-10_gamma/design.md", "d\n")
    _put(root, "changes/001-09_alpha/.gitkeep", "")
    _put(root, "changes/.hidden/proposal.md", "h\n")
    _put(root, "changes/Not A Change/proposal.md", "n\n")
    _put(root, "changes/README.md", "top\n")
    _put(root, "changes/archive/2026-03-02-024-02_client/proposal.md", "old\n")
    _put(root, "changes/archive/2026-03-06-024-02_client/proposal.md", "new\n")
    _put(root, "changes/archive/2025-08-13-add-archive-command/tasks.md", "legacy\n")
    _put(root, "changes/archive/add-undated/proposal.md", "u\n")
    _put(root, "specs/wallets/spec.md", "# Wallets\n")
    _put(root, "specs/wallets/extra.md", "e\n")
    _put(root, "specs/BAD/spec.md", "b\n")
    _put(root, "specs/nospec/other.md", "o\n")
    _put(root, "modules/001_payments/module.md", "# Payments\n")
    _put(root, "modules/001_payments/notes.md", "n\n")
    _put(root, "modules/001_payments/sub/1_cards/module.md", "# Cards\n")
    _put(root, "modules/001_payments/sub/02_wallets/module.md", "# Wallets\n")
    _put(root, "modules/001_payments/sub/x_bad/module.md", "# Bad\n")
    _put(root, "modules/001_zzz/module.md", "# Duplicate id\n")
    _put(root, "modules/002_empty/readme.md", "no module.md\n")
    _put(root, "modules/junk/module.md", "# Junk\n")
    return root


def test_read_tree(ito: Path) -> None:
    tree = read_tree(ito)
    assert [(c.id, c.archived_on) for c in tree.changes] == [
        ("001-02_beta", None),
        ("001-09_alpha", None),
        ("001-10_gamma", None),
        ("024-02_client", D2),
        ("add-archive-command", datetime.date(2025, 8, 13)),
    ]
    beta = tree.changes[0]
    assert beta == ChangeFiles(
        id="001-02_beta",
        proposal="# Beta\r\nWindows\r\n",
        design=None,
        tasks="- [ ] one\n",
        specs=(("alpha", "\ufeffBOM\rold mac\r"), ("wallets", "## ADDED Requirements\n")),
        metadata="schema: spec-driven\ncreated: 2026-03-01\n",
        archived_on=None,
        dir_name="001-02_beta",
    )
    assert tree.changes[1] == ChangeFiles(id="001-09_alpha", dir_name="001-09_alpha")
    client = tree.changes[3]
    assert client.proposal == "new\n"
    assert client.dir_name == "2026-03-06-024-02_client"
    assert client.archived
    assert tree.specs == (SpecFiles("wallets", "# Wallets\n"),)
    assert tree.modules == (
        ModuleFiles("001", "payments", "# Payments\n", "001_payments"),
        ModuleFiles("001.01", "cards", "# Cards\n", "001_payments/sub/1_cards"),
        ModuleFiles("001.02", "wallets", "# Wallets\n", "001_payments/sub/02_wallets"),
    )
    assert tree.skipped == (
        "changes/.hidden/proposal.md",
        "changes/001-02_beta/README.md",
        "changes/001-02_beta/demos/a/b.txt",
        "changes/001-02_beta/design.md",
        "changes/001-02_beta/specs/Bad Cap/spec.md",
        "changes/001-02_beta/specs/wallets/notes.md",
        "changes/001-09_alpha/.gitkeep",
        "changes/Not A Change/proposal.md",
        "changes/README.md",
        "changes/archive/2026-03-02-024-02_client/proposal.md",
        "changes/archive/add-undated/proposal.md",
        "modules/001_payments/notes.md",
        "modules/001_payments/sub/x_bad/module.md",
        "modules/001_zzz/module.md",
        "modules/002_empty/readme.md",
        "modules/junk/module.md",
        "specs/BAD/spec.md",
        "specs/nospec/other.md",
        "specs/wallets/extra.md",
    )


def test_read_empty_or_missing(tmp_path: Path) -> None:
    assert read_tree(tmp_path / "nope") == ItoTree()
    assert read_tree(tmp_path) == ItoTree()


def test_symlinks_are_not_followed(ito: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _put(outside, "proposal.md", "secret\n")
    _put(outside, "spec.md", "secret\n")
    os.symlink(outside, ito / "changes" / "001-11_linked")
    os.symlink(outside / "proposal.md", ito / "changes" / "001-10_gamma" / "proposal.md")
    os.symlink(outside, ito / "specs" / "linked")
    tree = read_tree(ito)
    assert "001-11_linked" not in {c.id for c in tree.changes}
    gamma = next(c for c in tree.changes if c.id == "001-10_gamma")
    assert gamma.proposal is None
    assert "changes/001-11_linked" in tree.skipped
    assert "changes/001-10_gamma/proposal.md" in tree.skipped
    assert "specs/linked" in tree.skipped


def test_read_change(ito: Path) -> None:
    beta = read_change(ito / "changes" / "001-02_beta")
    assert beta.id == "001-02_beta"
    assert beta.archived_on is None
    archived = read_change(ito / "changes/archive/2026-03-02-024-02_client", D1)
    assert archived.id == "024-02_client"
    assert archived.archived_on == D1
    assert archived.proposal == "old\n"
    with pytest.raises(ValidationError) as info:
        read_change(ito / "changes" / "Not A Change")
    assert info.value.kind == "invalid_id"


# --------------------------------------------------------------------------- writing


def test_write_change_active_and_prune(tmp_path: Path, ito: Path) -> None:
    beta = read_tree(ito).changes[0]
    target = write_change(beta, ito)
    assert target == ito / "changes" / "001-02_beta"
    slimmer = ChangeFiles(id=beta.id, proposal="p\n", specs=(("wallets", "w\n"),))
    write_change(slimmer, ito)
    again = read_change(target)
    assert again == ChangeFiles(
        id=beta.id, proposal="p\n", specs=(("wallets", "w\n"),), dir_name=beta.id
    )
    # non-artifacts are untouched, including a non-UTF-8 design.md and an invalid cap dir
    assert (target / "README.md").read_text() == "not an artifact\n"
    assert (target / "design.md").read_bytes() == b"\xff\xfe latin junk"
    assert (target / "demos/a/b.txt").exists()
    assert (target / "specs/Bad Cap/spec.md").exists()
    assert not (target / "specs/alpha").exists()
    assert (target / "specs/wallets/notes.md").exists()
    assert not list(target.rglob("*.tmp"))


def test_prune_removes_empty_specs_dir(tmp_path: Path) -> None:
    change = ChangeFiles(id="001-01_a", tasks="t\n", specs=(("cap", "c\n"),))
    target = write_change(change, tmp_path)
    write_change(ChangeFiles(id="001-01_a"), tmp_path)
    assert sorted(p.name for p in target.iterdir()) == []
    write_change(change, tmp_path)
    write_change(ChangeFiles(id="001-01_a"), tmp_path, prune=False)
    assert (target / "tasks.md").exists() and (target / "specs/cap/spec.md").exists()


def test_write_archived_reuses_or_builds_dir_name(tmp_path: Path) -> None:
    kept = ChangeFiles(
        id="024-02_client", proposal="p\n", archived_on=D1, dir_name="2026-03-02-024-02_client"
    )
    assert write_change(kept, tmp_path).name == "2026-03-02-024-02_client"
    mismatched = ChangeFiles(id="024-03_other", archived_on=D2, dir_name="2026-03-02-024-03_other")
    assert write_change(mismatched, tmp_path).name == "2026-03-06-024-03_other"
    unknown = ChangeFiles(id="024-04_x", archived_on=D2)
    assert write_change(unknown, tmp_path) == tmp_path / "changes/archive/2026-03-06-024-04_x"
    active = ChangeFiles(id="024-05_y", dir_name="something-else")
    assert write_change(active, tmp_path) == tmp_path / "changes/024-05_y"


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    change = ChangeFiles(id="001-01_a", proposal="p\n")
    path = write_change(change, tmp_path) / "proposal.md"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    write_change(change, tmp_path)
    assert path.stat().st_mtime_ns == 1_000_000_000
    write_change(ChangeFiles(id="001-01_a", proposal="q\n"), tmp_path)
    assert path.read_text() == "q\n"


@pytest.mark.parametrize(
    "change",
    [
        ChangeFiles(id="../escape"),
        ChangeFiles(id="001-01_a/../../x"),
        ChangeFiles(id=""),
        ChangeFiles(id="001-01_a", specs=(("../../../etc", "x"),)),
        ChangeFiles(id="001-01_a", specs=(("a/b", "x"),)),
        ChangeFiles(id="001-01_a", specs=(("cap", "x"), ("cap", "y"))),
        ChangeFiles(id="001-01_a", proposal="\ud800"),
    ],
)
def test_write_change_rejects_unsafe_values(tmp_path: Path, change: ChangeFiles) -> None:
    with pytest.raises(ValidationError):
        write_change(change, tmp_path / ".ito")
    assert not (tmp_path / ".ito").exists() or not any((tmp_path / ".ito").rglob("*"))


def test_write_refuses_symlinked_directories(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ito = tmp_path / ".ito"
    ito.mkdir()
    os.symlink(outside, ito / "changes")
    with pytest.raises(ValidationError) as info:
        write_change(ChangeFiles(id="001-01_a", proposal="p\n"), ito)
    assert info.value.kind == "unsafe_path"
    assert info.value.details["path"] == "changes"
    os.unlink(ito / "changes")
    (ito / "changes" / "001-01_a").mkdir(parents=True)
    os.symlink(outside, ito / "changes" / "001-01_a" / "specs")
    with pytest.raises(ValidationError):
        write_change(ChangeFiles(id="001-01_a", specs=(("cap", "c"),)), ito)
    assert list(outside.iterdir()) == []


def test_write_replaces_symlinked_artifact_instead_of_following(tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("keep\n")
    change_dir = tmp_path / ".ito/changes/001-01_a"
    change_dir.mkdir(parents=True)
    os.symlink(target, change_dir / "proposal.md")
    write_change(ChangeFiles(id="001-01_a", proposal="new\n"), tmp_path / ".ito")
    assert target.read_text() == "keep\n"
    assert not (change_dir / "proposal.md").is_symlink()
    os.symlink(target, change_dir / "design.md")
    write_change(ChangeFiles(id="001-01_a", proposal="new\n"), tmp_path / ".ito")
    assert (change_dir / "design.md").is_symlink()  # prune never deletes through symlinks
    assert target.read_text() == "keep\n"


def test_write_modules_and_specs(tmp_path: Path) -> None:
    root = tmp_path / ".ito"
    assert (
        write_module(ModuleFiles("024", "ito-backend", "# B\n"), root)
        == root / "modules/024_ito-backend"
    )
    sub = write_module(ModuleFiles("024.01", "auth", "# A\n"), root)
    assert sub == root / "modules/024_ito-backend/sub/01_auth"
    kept = write_module(ModuleFiles("024.03", "x", "# X\n", "024_ito-backend/sub/3_x"), root)
    assert kept == root / "modules/024_ito-backend/sub/3_x"
    parents = {"030": "030_custom-dir"}
    assert write_module(ModuleFiles("030.02", "y", "# Y\n"), root, parents=parents) == (
        root / "modules/030_custom-dir/sub/02_y"
    )
    with pytest.raises(ValidationError) as info:
        write_module(ModuleFiles("031.01", "z", "# Z\n"), root)
    assert info.value.kind == "module_parent_missing"
    for bad in (
        ModuleFiles("24x", "n", "m"),
        ModuleFiles("024", "../n", "m"),
    ):
        with pytest.raises(ValidationError):
            write_module(bad, root)
    # an unsafe or mismatched dir_name is ignored: the directory is named from id and name
    assert write_module(ModuleFiles("025", "n", "m", "025_../../x"), root).name == "025_n"
    odd = ModuleFiles("024.04", "n", "m", "024_a/sub/04_b/../../c")
    assert write_module(odd, root) == root / "modules/024_ito-backend/sub/04_n"
    (root / "modules/025_n/module.md").unlink()
    (root / "modules/025_n").rmdir()
    (root / "modules/024_ito-backend/sub/04_n/module.md").unlink()
    (root / "modules/024_ito-backend/sub/04_n").rmdir()
    assert write_spec(SpecFiles("wallets", "# W\r\n"), root).read_bytes() == b"# W\r\n"
    with pytest.raises(ValidationError):
        write_spec(SpecFiles("../x", "m"), root)
    assert read_tree(root).modules == (
        ModuleFiles("024", "ito-backend", "# B\n", "024_ito-backend"),
        ModuleFiles("024.01", "auth", "# A\n", "024_ito-backend/sub/01_auth"),
        ModuleFiles("024.03", "x", "# X\n", "024_ito-backend/sub/3_x"),
        ModuleFiles("030.02", "y", "# Y\n", "030_custom-dir/sub/02_y"),
    )


def _artifact_bytes(root: Path, skipped: tuple[str, ...]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in skipped:
            files[rel] = path.read_bytes()
    return files


def test_write_tree_round_trip(ito: Path, tmp_path: Path) -> None:
    tree = read_tree(ito)
    copy = tmp_path / "copy" / ".ito"
    write_tree(tree, copy)
    again = read_tree(copy)
    assert (again.changes, again.modules, again.specs) == (tree.changes, tree.modules, tree.specs)
    assert again.skipped == ()
    assert _artifact_bytes(copy, ()) == _artifact_bytes(ito, tree.skipped)
    # writing the unmodified tree back onto its source changes nothing
    before = _artifact_bytes(ito, ())
    write_tree(tree, ito)
    assert _artifact_bytes(ito, ()) == before


_TEXT = st.lists(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
    | st.sampled_from(["\r\n", "\r", "\n", "\ufeff"]),
    max_size=8,
).map("".join)


@settings(max_examples=examples(40))
@given(
    proposal=st.none() | _TEXT,
    tasks=st.none() | _TEXT,
    metadata=st.none() | _TEXT,
    specs=st.dictionaries(st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,8}\Z"), _TEXT, max_size=3),
    archived=st.none() | st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)),
)
def test_change_round_trip_property(
    proposal: str | None,
    tasks: str | None,
    metadata: str | None,
    specs: dict[str, str],
    archived: datetime.date | None,
) -> None:
    change = ChangeFiles(
        id="005-07_prop",
        proposal=proposal,
        tasks=tasks,
        metadata=metadata,
        specs=tuple(sorted(specs.items())),
        archived_on=archived,
    )
    root = Path(tempfile.mkdtemp())
    try:
        target = write_change(change, root)
        read = read_change(target, archived)
        assert read == ChangeFiles(
            id=change.id,
            proposal=proposal,
            tasks=tasks,
            metadata=metadata,
            specs=change.specs,
            archived_on=archived,
            dir_name=target.name,
        )
    finally:
        shutil.rmtree(root)
