"""What the dashboard shows, read through the same use cases as the API (no SQL here)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from loom.domain.timefmt import parse_rfc3339_us
from loom.service import Project, ServiceContext, changes, events, leases, tasks

__all__ = [
    "CHANGE_EVENTS",
    "COLUMNS",
    "Board",
    "archived",
    "board",
    "change_page",
    "event_line",
    "title_of",
]

# Board columns, in order: (work status, heading). "paused" joins the in-progress column.
COLUMNS = (
    ("draft", "Draft"),
    ("ready", "Ready"),
    ("in-progress", "In progress"),
    ("complete", "Complete"),
)
_FEED = 40
# The change page shows the change's last events (its own and its tasks'), read by index.
CHANGE_EVENTS = 500
_VERBS = {
    "claim": "claimed",
    "allocate": "allocated",
    "release": "released",
    "force_release": "force-released",
    "expire": "lost (expired)",
    "create": "created",
    "update": "pushed",
    "archive": "archived",
    "add": "added",
    "change_completed": "completed",
}
_STATUS_VERBS = {
    "in-progress": "started",
    "complete": "completed",
    "shelved": "shelved",
    "pending": "reopened",
}


def title_of(change_id: str) -> str:
    """A readable title from the change id's slug (``001-25_tracking-file`` → "Tracking file")."""
    slug = change_id.split("_", 1)[1] if "_" in change_id else change_id
    words = slug.replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else change_id


def _ms(stamp: str | None) -> int | None:
    return None if stamp is None else parse_rfc3339_us(stamp) // 1000


@dataclass
class Board:
    columns: list[tuple[str, str, list[dict[str, Any]]]]
    archived: int
    modules: list[str]
    holders: list[str]
    agents: list[dict[str, Any]]
    feed: list[dict[str, Any]]
    total: int
    shown: int
    filters: dict[str, str] = field(default_factory=dict)


def _card(summary: dict[str, Any]) -> dict[str, Any]:
    lease = summary.get("lease")
    total = int(summary["total_tasks"])
    done = int(summary["completed_tasks"])
    return {
        "id": summary["id"],
        "title": title_of(summary["id"]),
        "module": summary["module_id"],
        "status": summary["work_status"],
        "revision": summary["revision"],
        "done": done,
        "total": total,
        "doing": int(summary["in_progress_tasks"]),
        "percent": int(done * 100 / total) if total else 0,
        "holder": lease["holder"] if lease else None,
        "expires_ms": _ms(lease["expires_at"]) if lease else None,
        "expires_at": lease["expires_at"] if lease else None,
    }


def _column_of(card: dict[str, Any]) -> str:
    if card["holder"] is not None and card["status"] != "complete":
        return "in-progress"  # leased: someone is on it
    return "in-progress" if card["status"] == "paused" else card["status"]


def event_line(event: dict[str, Any]) -> dict[str, Any]:
    """One feed entry: what happened, to what, by whom, when."""
    ms = None
    with contextlib.suppress(ValueError):
        ms = parse_rfc3339_us(str(event.get("ts"))) // 1000
    target = str(event.get("entity_id", ""))
    scope = event.get("scope")
    change = (
        target if event.get("entity") == "change" else scope if isinstance(scope, str) else None
    )
    moved = ""
    if event.get("from") is not None or event.get("to") is not None:
        moved = f"{event.get('from') or '–'} → {event.get('to') or '–'}"
    op = str(event.get("op", ""))
    verb = _VERBS.get(op, op.replace("_", " "))
    if op == "status_change":
        verb = _STATUS_VERBS.get(str(event.get("to")), "updated")
    by = str(event.get("by", ""))
    return {
        "verb": verb,
        "who": by.removeprefix("@") or "someone",
        "what": f"{event.get('entity', '')} {target}" if event.get("entity") != "change" else "",
        "seq": event.get("seq"),
        "op": str(event.get("op", "")),
        "entity": str(event.get("entity", "")),
        "target": target,
        "change": change,
        "moved": moved,
        "by": str(event.get("by", "")),
        "ts": str(event.get("ts", "")),
        "ms": ms,
    }


def _recent_events(ctx: ServiceContext, project: Project, count: int) -> list[dict[str, Any]]:
    _, top = events.latest_event(ctx, project)
    items, _ = events.read_events(
        ctx, project, since=max(0, top - count), limit=None, entity=None, scope=None, op=None
    )
    return list(reversed(items))


def board(ctx: ServiceContext, project: Project, module: str | None, holder: str | None) -> Board:
    """The board: active changes by work status (filtered), agents and the recent feed."""
    active, _ = changes.list_summaries(
        ctx, project, lifecycle="active", module=None, statuses=None, limit=None, cursor=None
    )
    archived, _ = changes.list_summaries(
        ctx, project, lifecycle="archived", module=None, statuses=None, limit=None, cursor=None
    )
    cards = [_card(s) for s in active]
    modules = sorted({c["module"] for c in cards if c["module"]})
    holders = sorted({c["holder"] for c in cards if c["holder"]})
    shown = [
        c
        for c in cards
        if (module is None or c["module"] == module) and (holder is None or c["holder"] == holder)
    ]
    grouped: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in COLUMNS}
    for card in shown:
        grouped.setdefault(_column_of(card), []).append(card)
    columns = [(key, label, grouped[key]) for key, label in COLUMNS]
    agents: dict[str, dict[str, Any]] = {}
    for lease in leases.list_leases(ctx, project):
        expires = parse_rfc3339_us(lease["expires_at"])
        beat = expires - int(lease["ttl_seconds"] or 0) * 1_000_000
        agent = agents.setdefault(
            lease["holder"], {"holder": lease["holder"], "changes": [], "last_ms": 0}
        )
        agent["changes"].append(lease["change_id"])
        agent["last_ms"] = max(agent["last_ms"], beat // 1000)
    filters = {k: v for k, v in (("module", module), ("holder", holder)) if v}
    return Board(
        columns=columns,
        archived=len(archived),
        modules=modules,
        holders=holders,
        agents=sorted(agents.values(), key=lambda a: str(a["holder"])),
        feed=[event_line(e) for e in _recent_events(ctx, project, _FEED)],
        total=len(cards),
        shown=len(shown),
        filters=filters,
    )


def archived(ctx: ServiceContext, project: Project) -> list[dict[str, Any]]:
    """Archived changes, most recently archived first."""
    items, _ = changes.list_summaries(
        ctx, project, lifecycle="archived", module=None, statuses=None, limit=None, cursor=None
    )
    rows = [{**_card(s), "archived_at": s["archived_at"]} for s in items]
    return sorted(rows, key=lambda r: str(r["archived_at"] or ""), reverse=True)


_LEASE_OPS = frozenset({"claim", "expire", "release", "force_release"})


def change_page(ctx: ServiceContext, project: Project, change_id: str) -> dict[str, Any]:
    """A change's artifacts, tasks, lease, lease history and events."""
    detail = changes.change_detail(ctx, project, change_id, "all")
    task_view = tasks.get_tasks(ctx, project, detail["id"])
    mine = events.events_about(ctx, project, detail["id"], CHANGE_EVENTS)
    lease = detail.get("lease")
    by_wave: dict[int | None, list[dict[str, Any]]] = {}
    for task in task_view["tasks"]:
        by_wave.setdefault(task.get("wave"), []).append(task)
    return {
        "detail": detail,
        "title": title_of(detail["id"]),
        "waves": sorted(by_wave.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)),
        "progress": task_view["progress"],
        "ready": task_view["ready"],
        "lease": lease,
        "expires_ms": _ms(lease["expires_at"]) if lease else None,
        "history": [
            event_line(e) for e in mine if e.get("entity") == "change" and e.get("op") in _LEASE_OPS
        ],
        "events": [event_line(e) for e in mine],
    }
