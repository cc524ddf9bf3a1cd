"""Helpers for CLI tests against a real ``loom serve`` (the ``live_server`` fixture)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from loom.cli import app

ORG, REPO = "acme", "widgets"

ENHANCED_TASKS = """# Tasks for: 001-01_alpha

## Wave 1: Groundwork
- **Depends On**: None

### Task 1.1: First task
- **Files**: `src/a.py`
- **Dependencies**: None
- **Action**:
  Do the first thing.
- **Verify**: `pytest`
- **Done When**: It works
- **Updated At**: 2026-01-01
- **Status**: [ ] pending

### Task 1.2: Second task
- **Dependencies**: Task 1.1
- **Action**:
  Do the second thing.
- **Updated At**: 2026-01-01
- **Status**: [ ] pending
"""

DELTA = """## ADDED Requirements

### Requirement: Alpha works
The system SHALL do alpha.

#### Scenario: Alpha runs
- **WHEN** alpha is asked
- **THEN** alpha answers
"""

SPEC = """# auth Specification

## Purpose
Authentication.

## Requirements

### Requirement: Tokens
The system SHALL check tokens.

#### Scenario: Bad token
- **WHEN** a bad token is sent
- **THEN** the request is refused
"""

MODULE_MD = """# Core

## Purpose
Core things.

## Changes
- [ ] 001-01_alpha
- [x] 001-02_beta
"""


def make_tree(root: Path) -> Path:
    """A small ``.ito`` tree: a module and sub-module, a spec, active and archived changes."""
    ito = root / ".ito"
    files = {
        "modules/001_core/module.md": MODULE_MD,
        "modules/001_core/sub/01_parts/module.md": "# Parts\n",
        "specs/auth/spec.md": SPEC,
        "changes/001-01_alpha/proposal.md": "# Proposal: alpha\n\nWhy alpha.\n",
        "changes/001-01_alpha/tasks.md": ENHANCED_TASKS,
        "changes/001-01_alpha/specs/alpha/spec.md": DELTA,
        "changes/001-01_alpha/.ito.yaml": "schema: spec-driven\ncreated: 2026-01-01\n",
        "changes/001-01_alpha/README.md": "not an artifact\n",
        "changes/001-03_gamma/proposal.md": "# Proposal: gamma\n",
        "changes/001-03_gamma/tasks.md": "- [ ] one\n- [ ] two\n",
        "changes/001-03_gamma/specs/gamma/spec.md": DELTA.replace("Alpha", "Gamma"),
        "changes/archive/2026-01-02-001-02_beta/proposal.md": "# Proposal: beta\n",
        "changes/archive/2026-01-02-001-02_beta/tasks.md": "- [x] done\n",
    }
    for rel, text in files.items():
        path = ito / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ito


@dataclass
class Loom:
    """Runs ``loom`` in-process with a fixed environment."""

    env: dict[str, str]

    def __call__(self, *args: str, code: int = 0, **env: str) -> Result:
        result = CliRunner().invoke(app, list(args), env={**self.env, **env})
        assert result.exit_code == code, (
            f"loom {' '.join(args)} -> {result.exit_code} (wanted {code})\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
        )
        return result

    def json(self, *args: str, code: int = 0, **env: str) -> Any:
        return json.loads(self(*args, "--json", code=code, **env).stdout)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_loom(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start ``python -m loom ARGS`` as a real process (text pipes for stdout and stderr).

    The child gets the default SIGINT handling, whatever the test runner has: started in
    the background from a script, pytest inherits an ignored SIGINT, and a child that
    inherits it too never sees Ctrl-C (Python installs KeyboardInterrupt only over SIG_DFL).
    """
    return subprocess.Popen(
        [sys.executable, "-m", "loom", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, reap it and close its pipes (no ResourceWarning)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
