"""Local client state: the state directory, pull backups, revision files and held leases.

The state directory is ``platformdirs.user_state_dir("loom")`` (``LOOM_STATE_DIR``
overrides it). It holds ``backups/<change>/<timestamp>/`` (the last 20 per change) and
``leases/<org>/<repo>/<change>.json`` (the fencing token of each lease ``loom claim`` took).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from loom.client._base import check_path_id

if TYPE_CHECKING:
    from loom.models import ClaimResult

__all__ = [
    "BACKUPS_KEPT",
    "REVISION_FILE",
    "SPEC_BASES_FILE",
    "LeaseStore",
    "backup_change",
    "read_revision",
    "read_spec_bases",
    "state_dir",
    "write_revision",
    "write_spec_bases",
]

BACKUPS_KEPT = 20
REVISION_FILE = ".backend-revision"
# Per capability, the spec revision the local deltas are written against (JSON object).
SPEC_BASES_FILE = ".backend-spec-bases"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The client's state directory (``LOOM_STATE_DIR`` or the platform state dir)."""
    env = os.environ if env is None else env
    override = env.get("LOOM_STATE_DIR", "").strip()
    return Path(override) if override else Path(platformdirs.user_state_dir("loom"))


def read_revision(change_dir: Path) -> str:
    """The revision a local change was last synced at (``""`` when never synced)."""
    path = change_dir / REVISION_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def write_revision(change_dir: Path, revision: str) -> None:
    """Record ``revision`` in ``<change_dir>/.backend-revision`` (no trailing newline)."""
    change_dir.mkdir(parents=True, exist_ok=True)
    (change_dir / REVISION_FILE).write_text(revision, encoding="utf-8")


def read_spec_bases(change_dir: Path) -> dict[str, int]:
    """The spec bases recorded by the last pull or rebase (``{}`` when none or unreadable)."""
    try:
        data = json.loads((change_dir / SPEC_BASES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


def write_spec_bases(change_dir: Path, bases: Mapping[str, int]) -> None:
    """Record the spec bases in ``<change_dir>/.backend-spec-bases``."""
    change_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(sorted(bases.items())), indent=2) + "\n"
    (change_dir / SPEC_BASES_FILE).write_text(text, encoding="utf-8")


def backup_change(
    change_dir: Path, change_id: str, state: Path, *, keep: int = BACKUPS_KEPT
) -> Path | None:
    """Copy ``change_dir`` to ``<state>/backups/<id>/<UTC timestamp>/``; keep the newest ``keep``.

    Returns the backup directory, or None when there was nothing local to back up.
    """
    if not change_dir.is_dir() or not any(change_dir.iterdir()):
        return None
    root = state / "backups" / change_id
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = root / stamp
    suffix = 0
    while target.exists():
        suffix += 1
        target = root / f"{stamp}-{suffix}"
    shutil.copytree(change_dir, target)
    snapshots = sorted(p for p in root.iterdir() if p.is_dir())
    for old in snapshots[: max(0, len(snapshots) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


class LeaseStore:
    """Leases this machine holds, per project and change, so later commands can fence writes."""

    def __init__(self, state: Path, project: str) -> None:
        org, _, repo = project.partition("/")
        self.root = state / "leases" / org / repo

    def _path(self, change_id: str) -> Path:
        return self.root / f"{check_path_id(change_id, 'change id')}.json"

    def save(self, claim: ClaimResult) -> None:
        """Remember a lease (after claim, heartbeat or allocate)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(claim.change_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(claim.to_json(), indent=2), encoding="utf-8")
        tmp.replace(path)

    def load(self, change_id: str) -> ClaimResult | None:
        """The remembered lease of ``change_id``, if any."""
        from loom.models import ClaimResult

        try:
            data: Any = json.loads(self._path(change_id).read_text(encoding="utf-8"))
            return ClaimResult.model_validate(data)
        except (OSError, ValueError):
            return None

    def fencing_token(self, change_id: str, holder: str | None) -> int | None:
        """The fencing token of the remembered lease of ``change_id`` when ``holder`` took
        it, else None. Reads the file as JSON only (no model: the ``loom`` command's task
        writes then never import pydantic)."""
        try:
            data: Any = json.loads(self._path(change_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("holder") != holder:
            return None
        token = data.get("fencing_token")
        return token if isinstance(token, int) and not isinstance(token, bool) else None

    def forget(self, change_id: str) -> None:
        """Drop the remembered lease (after release or archive)."""
        self._path(change_id).unlink(missing_ok=True)
