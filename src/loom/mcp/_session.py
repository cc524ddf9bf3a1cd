"""What one MCP session does, over :class:`loom.client.Client`: the logic of every tool.

Both transports use it. Over stdio (``loom mcp``) one :class:`Session` lives as long as the
agent's session: it heartbeats the leases it took at a third of their TTL, remembers the
revision it last read or wrote of each change (the default base of ``save_change``), notices
a lost lease before the next call on that change, and releases its leases when it closes.
Over the server's HTTP endpoint (stateless) a fresh Session serves each request: nothing is
remembered between calls, so heartbeats and revisions are the agent's to pass.

Every method returns JSON-ready data or raises a :class:`loom.errors.LoomError`; the MCP
layer turns the error into a tool result with ``isError``. No MCP SDK import here.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loom.client import (
    ArtifactBundle,
    ClaimResult,
    Client,
    Conflict,
    LeaseKeeper,
    LoomError,
    NotFound,
    RevisionConflict,
    ValidationError,
    renew_interval,
)

__all__ = ["TASK_ACTIONS", "Session"]

TASK_ACTIONS = ("start", "complete", "shelve", "unshelve")
_CANONICAL = re.compile(r"^\d{3}(\.\d{2})?-\d{2,}_[a-z0-9]+(-[a-z0-9]+)*$")


def _title(change_id: str) -> str:
    """A readable title from the id's slug (``001-02_add-login`` → ``add login``)."""
    return change_id.split("_", 1)[-1].replace("-", " ")


def _artifacts(bundle: ArtifactBundle) -> dict[str, str]:
    """The bundle's artifacts by name (``proposal``, ``design``, ``tasks``, ``specs/<cap>``)."""
    named = {"proposal": bundle.proposal, "design": bundle.design, "tasks": bundle.tasks}
    out = {name: text for name, text in named.items() if text is not None}
    out.update({f"specs/{cap}": text for cap, text in bundle.specs})
    return out


def _lease(claim: ClaimResult) -> dict[str, Any]:
    return {
        "holder": claim.holder,
        "expires_at": claim.expires_at.isoformat(),
        "fencing_token": claim.fencing_token,
    }


@dataclass
class _Seen:
    """The last state of a change this session read or wrote itself."""

    revision: str
    artifacts: dict[str, str] = field(default_factory=dict)
    # Artifacts this session changed without reading them back (task updates edit tasks.md).
    unknown: set[str] = field(default_factory=set)


class Session:
    """One agent's session. ``keep_alive`` (stdio): heartbeat and release the leases taken.

    Thread-safe: the MCP SDK runs each (synchronous) tool call on a worker thread.
    """

    def __init__(self, client: Client, *, keep_alive: bool) -> None:
        self.client = client
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._keepers: dict[str, LeaseKeeper] = {}
        self._lost: dict[str, str] = {}
        self._seen: dict[str, _Seen] = {}
        self._ids: dict[str, str] = {}

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> list[str]:
        """End of the session: stop heartbeating and release every lease still held.

        Returns the ids released. Errors are swallowed: a lease that cannot be released
        simply expires.
        """
        with self._lock:
            keepers = dict(self._keepers)
            self._keepers.clear()
        released: list[str] = []
        for change_id, keeper in keepers.items():
            keeper.stop()
            if keeper.lost is not None:
                continue
            try:
                self.client.release(change_id)
                released.append(change_id)
            except LoomError:
                pass
        return released

    @property
    def held(self) -> list[str]:
        """Changes this session holds and keeps alive."""
        with self._lock:
            return sorted(self._keepers)

    # --- helpers --------------------------------------------------------------------------

    def _holder(self) -> str:
        if not self.client.holder:
            raise ValidationError(
                "no lease holder: send the X-Loom-Holder header or pass `holder`",
                kind="holder_missing",
            )
        return self.client.holder

    def resolve(self, change_id: str) -> str:
        """The canonical id of ``change_id`` (short forms like ``1-2`` asked of the server)."""
        change_id = change_id.strip()
        if _CANONICAL.fullmatch(change_id):
            return change_id
        with self._lock:
            known = self._ids.get(change_id)
        if known is not None:
            return known
        canonical = self.client.get_change(change_id, lifecycle="all").id
        with self._lock:
            self._ids[change_id] = canonical
        return canonical

    def _hold(self, claim: ClaimResult, ttl_seconds: int | None) -> None:
        """Remember a lease; with ``keep_alive``, heartbeat it at a third of its TTL."""
        change_id = claim.change_id
        with self._lock:
            self._lost.pop(change_id, None)
            if not self.keep_alive or change_id in self._keepers:
                return
            keeper = LeaseKeeper(
                self.client,
                change_id,
                interval=renew_interval(claim),
                ttl_seconds=ttl_seconds,
                on_lost=lambda error: self._mark_lost(change_id, error, stop=False),
            )
            self._keepers[change_id] = keeper
        keeper.start()

    def _drop(self, change_id: str) -> None:
        with self._lock:
            keeper = self._keepers.pop(change_id, None)
        if keeper is not None:
            keeper.stop()

    def _mark_lost(self, change_id: str, error: LoomError, *, stop: bool = True) -> None:
        """Record a lost lease. ``stop`` is False when called by the keeper itself (it ends
        on its own after reporting)."""
        with self._lock:
            self._lost[change_id] = error.message
            keeper = self._keepers.pop(change_id, None)
        if keeper is not None and stop:
            keeper.stop()

    def _check_lease(self, change_id: str) -> str | None:
        """Why this session's lease on ``change_id`` is lost, or None.

        A lease this session keeps alive is renewed right now: a refused heartbeat (taken
        over after expiry, force-released, archived) means it is lost.
        """
        with self._lock:
            lost = self._lost.get(change_id)
            keeper = self._keepers.get(change_id)
        if lost is not None or keeper is None:
            return lost
        try:
            self.client.heartbeat(change_id, ttl_seconds=keeper.ttl_seconds)
        except (Conflict, NotFound) as error:
            self._mark_lost(change_id, error)
            return error.message
        return None

    def _guard_write(self, change_id: str) -> None:
        lost = self._check_lease(change_id)
        if lost is not None:
            raise Conflict(
                f"your lease on {change_id} was lost ({lost}); nothing was written. Another "
                "agent may be working on it: take another change with next_change, or "
                "claim_change it again if it is free.",
                kind="lease_lost",
                change_id=change_id,
            )

    def _note_read(self, bundle: ArtifactBundle) -> None:
        with self._lock:
            self._seen[bundle.change_id] = _Seen(bundle.revision, _artifacts(bundle))

    def _note_write(self, change_id: str, revision: str | None, touched: str) -> None:
        if revision is None:
            return
        with self._lock:
            seen = self._seen.get(change_id)
            if seen is not None:
                seen.revision = revision
                seen.unknown.add(touched)

    def _view(self, change_id: str) -> dict[str, Any]:
        """Artifacts, tasks (with ready/blocked) and revision of a change; noted as read."""
        bundle = self.client.pull(change_id)
        tasks = self.client.get_tasks(change_id)
        self._note_read(bundle)
        return {
            "revision": bundle.revision,
            "proposal": bundle.proposal,
            "design": bundle.design,
            "specs": dict(bundle.specs),
            "tasks": {
                "format": tasks.format,
                "progress": f"{tasks.progress.complete}/{tasks.progress.total} complete",
                "items": [
                    {"id": t.id, "name": t.name, "status": t.status, "wave": t.wave}
                    for t in tasks.tasks
                ],
                "ready": tasks.ready,
                "blocked": tasks.blocked,
            },
        }

    def _with_warning(self, change_id: str, data: dict[str, Any]) -> dict[str, Any]:
        lost = self._check_lease(change_id)
        if lost is not None:
            data["warning"] = f"your lease on {change_id} was lost: {lost}"
        return data

    def _lease_note(self) -> str:
        if self.keep_alive:
            return "this session renews the lease until it ends, then releases it"
        return "renew with claim_change before expires_at; release_change when done"

    # --- tools ------------------------------------------------------------------------------

    def next_change(
        self, module: str | None, changes: Sequence[str] | None, ttl_seconds: int | None
    ) -> dict[str, Any]:
        self._holder()
        wanted = [self.resolve(c) for c in changes] if changes else None
        result = self.client.allocate(ttl_seconds=ttl_seconds, module=module, changes=wanted)
        if result.claim is None:
            return {"change_id": None, "message": "no work available"}
        claim = result.claim
        self._hold(claim, ttl_seconds)
        return {
            "change_id": claim.change_id,
            "lease": _lease(claim) | {"note": self._lease_note()},
            **self._view(claim.change_id),
        }

    def claim_change(self, change_id: str, ttl_seconds: int | None) -> dict[str, Any]:
        self._holder()
        claim = self.client.claim(self.resolve(change_id), ttl_seconds=ttl_seconds)
        self._hold(claim, ttl_seconds)
        return {"change_id": claim.change_id, "lease": _lease(claim), "note": self._lease_note()}

    def release_change(self, change_id: str) -> dict[str, Any]:
        self._holder()
        change_id = self.resolve(change_id)
        self._drop(change_id)
        with self._lock:
            self._lost.pop(change_id, None)
        result = self.client.release(change_id)
        return {"change_id": change_id, "released": result.released}

    def list_changes(self, status: Sequence[str] | None, module: str | None) -> dict[str, Any]:
        items = self.client.list_changes(module=module, status=list(status) if status else None)
        return {
            "changes": [
                {
                    "id": c.id,
                    "title": _title(c.id),
                    "status": c.work_status,
                    "progress": f"{c.completed_tasks}/{c.total_tasks}",
                    "holder": c.lease.holder if c.lease else None,
                }
                for c in items
            ]
        }

    def show_change(self, change_id: str) -> dict[str, Any]:
        detail = self.client.get_change(self.resolve(change_id), lifecycle="all")
        lease = detail.lease
        data = {
            "change_id": detail.id,
            "status": detail.work_status,
            "archived_at": detail.archived_at.isoformat() if detail.archived_at else None,
            "lease": None
            if lease is None
            else {
                "holder": lease.holder,
                "expires_at": lease.expires_at.isoformat(),
                "fencing_token": lease.fencing_token,
            },
            **self._view(detail.id),
        }
        return self._with_warning(detail.id, data)

    def update_task(
        self,
        change_id: str,
        task_id: str,
        action: str,
        note: str | None,
        reason: str | None,
    ) -> dict[str, Any]:
        change_id = self.resolve(change_id)
        self._guard_write(change_id)
        client = self.client
        if action == "start":
            result = client.start_task(change_id, task_id)
        elif action == "complete":
            result = client.complete_task(change_id, task_id, note=note)
        elif action == "shelve":
            result = client.shelve_task(change_id, task_id, reason=reason)
        elif action == "unshelve":
            result = client.unshelve_task(change_id, task_id)
        else:
            raise ValidationError(
                f"unknown action {action!r} (one of {', '.join(TASK_ACTIONS)})",
                kind="invalid_action",
            )
        self._note_write(change_id, result.revision, "tasks")
        return self._task_answer(change_id, result.task.id, result.task.status, result.revision)

    def add_task(self, change_id: str, title: str, wave: int | None) -> dict[str, Any]:
        change_id = self.resolve(change_id)
        self._guard_write(change_id)
        result = self.client.add_task(change_id, title, wave=wave)
        self._note_write(change_id, result.revision, "tasks")
        return self._task_answer(change_id, result.task.id, result.task.status, result.revision)

    def _task_answer(
        self, change_id: str, task_id: str, status: str, revision: str | None
    ) -> dict[str, Any]:
        tasks = self.client.get_tasks(change_id)
        return {
            "change_id": change_id,
            "task": {"id": task_id, "status": status},
            "revision": revision,
            "progress": f"{tasks.progress.complete}/{tasks.progress.total} complete",
            "ready": tasks.ready,
        }

    def save_change(
        self,
        change_id: str,
        *,
        proposal: str | None,
        design: str | None,
        tasks: str | None,
        specs: dict[str, str] | None,
        revision: str | None,
    ) -> dict[str, Any]:
        change_id = self.resolve(change_id)
        given = {"proposal": proposal, "design": design, "tasks": tasks}
        saved = [name for name, text in given.items() if text is not None]
        saved += [f"specs/{cap}" for cap in specs or {}]
        if not saved:
            raise ValidationError(
                "nothing to save: give proposal, design, tasks or specs", kind="nothing_to_save"
            )
        with self._lock:
            seen = self._seen.get(change_id)
        base = revision or (seen.revision if seen is not None else None)
        if not base:
            raise ValidationError(
                f"no base revision for {change_id}: read it with show_change first, or pass "
                "`revision` (the revision your edits are based on)",
                kind="revision_required",
            )
        self._guard_write(change_id)
        current = self.client.pull(change_id)
        merged = {**_artifacts(current)}
        for name, text in [*given.items(), *((f"specs/{c}", t) for c, t in (specs or {}).items())]:
            if text is None:
                continue
            if text == "":
                merged.pop(name, None)
            else:
                merged[name] = text
        spec_items = sorted((n[6:], t) for n, t in merged.items() if n.startswith("specs/"))
        try:
            result = self.client.push(
                change_id,
                revision=base,
                proposal=merged.get("proposal"),
                design=merged.get("design"),
                tasks=merged.get("tasks"),
                specs=spec_items,
            )
        except RevisionConflict as error:
            raise self._conflict(change_id, error, seen, base) from None
        with self._lock:
            self._seen[change_id] = _Seen(result.new_revision, merged)
        return {"change_id": change_id, "revision": result.new_revision, "saved": saved}

    def _conflict(
        self, change_id: str, error: RevisionConflict, seen: _Seen | None, base: str
    ) -> RevisionConflict:
        """The conflict, with what changed since this session's copy and how to recover."""
        details = dict(error.details)
        try:
            current = self.client.pull(change_id)
        except LoomError:
            current = None
        if current is not None:
            details["server_revision"] = current.revision
            if seen is not None and seen.revision == base:
                now = _artifacts(current)
                names = (set(now) | set(seen.artifacts)) - seen.unknown
                details["changed"] = sorted(n for n in names if now.get(n) != seen.artifacts.get(n))
        server = details.get("server_revision", "?")
        details["hint"] = (
            f"read the change again with show_change (revision {server}), merge your edits "
            "into it, then save_change again"
        )
        message = (
            f"{change_id} changed on the server since revision {base} "
            f"(now {server}); nothing was saved"
        )
        details.pop("kind", None)
        return RevisionConflict(message, kind=error.kind, **details)

    def archive_change(self, change_id: str) -> dict[str, Any]:
        change_id = self.resolve(change_id)
        self._guard_write(change_id)
        result = self.client.archive(change_id)
        self._drop(change_id)
        return {"change_id": change_id, "archived_at": result.archived_at.isoformat()}

    def recent_events(self, change_id: str | None, limit: int) -> dict[str, Any]:
        wanted = self.resolve(change_id) if change_id else None
        last: deque[dict[str, Any]] = deque(maxlen=limit)
        for event in self.client.iter_events(page_size=5000):
            if wanted is not None and wanted not in (event.entity_id, event.scope):
                continue
            data = event.to_json()
            data.pop("ctx", None)
            data.pop("v", None)
            last.append(data)
        return {"events": list(last)}
