"""The README's agent walkthrough, run as written, so the README cannot drift from the product.

The block is taken from README.md (the ``sh`` block that allocates with ``C=$(loom
allocate)``) and run by bash with ``-e``, with the test's virtualenv ``bin`` first on PATH
(bare ``loom``, as after ``source .venv/bin/activate``), in a directory holding a sample
``.ito/``. The one substitution: the server URL ``http://127.0.0.1:9010`` becomes the test
server's (port 9010 may be taken). ``loom token project`` reads the seed from
``LOOM_TOKEN_SEED``, as an operator's environment would provide it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from loom.client import Client

from ._support import ORG, REPO, make_tree

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def walkthrough() -> str:
    blocks = [b for b in _BLOCK.findall(README.read_text()) if "C=$(loom allocate)" in b]
    assert len(blocks) == 1, "README.md must have one walkthrough block with C=$(loom allocate)"
    return str(blocks[0])


def test_the_readme_walkthrough_runs_as_written(
    server: Any, tmp_path: Path, base_env: dict[str, str]
) -> None:
    script = walkthrough()
    assert "http://127.0.0.1:9010" in script and ".venv/bin/loom" not in script
    make_tree(Path.cwd())  # the repository's .ito/ (first ready change: 001-01_alpha)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "LOOM_CONFIG_HOME": base_env["LOOM_CONFIG_HOME"],
            "LOOM_STATE_DIR": base_env["LOOM_STATE_DIR"],
            "LOOM_DATA_DIR": str(server.data_dir),
            "LOOM_TOKEN_SEED": server.seed,
            "COLUMNS": "100",
        }
    )
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script.replace("http://127.0.0.1:9010", server.url)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    change = "001-01_alpha"
    with Client(server.url, server.admin_token, f"{ORG}/{REPO}") as client:
        detail = client.get_change(change, lifecycle="all")
        assert detail.archived_at is not None
        assert "Reviewed by agent-1." in (detail.proposal or "")
        tasks = client.get_tasks(change)
        assert [t.status for t in tasks.tasks] == ["complete", "complete"]
        ops = [e.op for e in client.iter_events() if e.entity_id == change]
    assert ops[0] == "allocate" and ops[-1] == "archive" and "update" in ops
    # The last command printed the story with its header.
    assert "SEQ" in proc.stdout and "note: done by agent-1" in proc.stdout
    assert (Path.cwd() / ".ito" / "changes" / "archive").is_dir()


def test_the_first_make_serve_says_what_it_is_doing(tmp_path: Path) -> None:
    """`make serve` on a fresh clone first installs .venv for ~30 s: it says so first."""
    root = README.parent
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(root), "serve", f"VENV={tmp_path / 'v'}"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('echo "loom: installing loom and its dependencies into')
    assert any("is ready" in line and "activate" in line for line in lines)
    assert lines[-1].rstrip().endswith("loom serve")
