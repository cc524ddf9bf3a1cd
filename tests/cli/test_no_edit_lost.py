"""Property: whatever agents do with `loom pull`, `loom push` and `loom export` in two working
copies of one change, no local edit is ever lost, and none disappears silently.

Each edit writes a unique marker into an artifact of one copy. After every step, every
marker ever written is still somewhere: in a copy's files, on the server, or in a backup
under the client state directory. A step that removed a marker from a copy said so on
stderr ("backed up"), unless a push had already taken it to the server.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from loom.cli import app

from ._support import ORG, Loom

C = "001-01_alpha"
ARTIFACTS = ("proposal.md", "design.md", "tasks.md")
STEP = st.tuples(
    st.sampled_from(("edit", "edit", "pull", "push", "export")),
    st.sampled_from(("a", "b")),
    st.sampled_from(ARTIFACTS),
)
_projects = itertools.count(1)


def _texts(root: Path) -> str:
    """Every text file under ``root``, concatenated (markers are searched in it)."""
    if not root.exists():
        return ""
    return "\n".join(p.read_text(errors="replace") for p in sorted(root.rglob("*")) if p.is_file())


def _server_text(run: Any) -> str:
    result = run("tasks", "raw", C)
    bundle = run("show", C, "--json")
    return result.stdout + bundle.stdout


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_no_local_edit_is_ever_lost(
    loom: Loom, tmp_path: Path, base_env: dict[str, str], steps: list[tuple[str, str, str]]
) -> None:
    n = next(_projects)
    env = {**loom.env, "LOOM_PROJECT": f"{ORG}/prop{n}"}
    work = tmp_path / f"p{n}"
    state = Path(base_env["LOOM_STATE_DIR"])

    def run(*args: str, copy: str | None = None) -> Result:
        extra = ["--ito-dir", str(work / copy / ".ito")] if copy else []
        return CliRunner().invoke(app, [*args, *extra], env=env)

    def export(copy: str) -> Result:
        return CliRunner().invoke(app, ["export", str(work / copy / ".ito")], env=env)

    seed = work / "seed" / ".ito" / "changes" / C
    seed.mkdir(parents=True)
    (seed / "proposal.md").write_text("# Proposal\n")
    (seed / "tasks.md").write_text("- [ ] one\n")
    assert run("push", C, copy="seed").exit_code == 0
    for copy in ("a", "b"):
        assert run("pull", C, copy=copy).exit_code == 0

    markers: list[str] = []
    for index, (op, copy, artifact) in enumerate(steps):
        local = work / copy / ".ito"
        before = _texts(local)
        if op == "edit":
            marker = f"edit-{n}-{index}-{copy}"
            path = local / "changes" / C / artifact
            old = path.read_text() if path.exists() else ""
            path.write_text(old + f"\n- [ ] {marker}\n")
            markers.append(marker)
            continue
        if op == "pull":
            result = run("pull", C, copy=copy)
        elif op == "push":
            result = run("push", C, copy=copy)
        else:
            result = export(copy)
        assert result.exit_code in (0, 3), (op, result.stdout, result.stderr)
        after = _texts(local)
        server = _server_text(run)
        backups = _texts(state)
        copies = _texts(work)
        for marker in markers:
            assert marker in copies or marker in server or marker in backups, (marker, steps)
            if marker in before and marker not in after and marker not in server:
                assert "backed up" in result.stderr, (op, marker, result.stderr)
