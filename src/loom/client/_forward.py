"""Forward a local JSONL audit log to the server, safely re-runnable (``loom events forward``).

Fixes Ito's forwarder (ito-client.md §6.2, §10 C-11): each batch's idempotency key is
derived from the log's identity (a hash of its first line) and the batch's start line, and
the batch's end is written to a *pending* file before sending. A run that crashed after the
server accepted a batch but before the checkpoint moved re-sends exactly the same batch with
the same key, which the server reports as duplicates instead of appending twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.client._client import Client
from loom.errors import ValidationError

__all__ = [
    "CHECKPOINT_FILE",
    "DEFAULT_EVENT_LOG",
    "FORWARD_BATCH",
    "PENDING_FILE",
    "ForwardResult",
    "batch_key",
    "forward_events",
]

FORWARD_BATCH = 500
DEFAULT_EVENT_LOG = Path(".state") / "audit" / "events.jsonl"
CHECKPOINT_FILE = Path(".state") / "event-forward-offset"
PENDING_FILE = Path(".state") / "event-forward-pending"


@dataclass(frozen=True)
class ForwardResult:
    """What one forwarding run did; ``offset`` is the new checkpoint (lines sent)."""

    accepted: int
    duplicates: int
    batches: int
    offset: int
    total_lines: int


def batch_key(identity: str, start: int) -> str:
    """The idempotency key of the batch starting at line ``start`` of log ``identity``."""
    digest = hashlib.sha256(f"{identity}:{start}".encode()).hexdigest()
    return f"fwd-{digest[:48]}"


def _complete_lines(path: Path) -> list[bytes]:
    """Lines that end with a newline (a half-written last line is left for the next run)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    return lines[:-1]


def _read_int(path: Path) -> int:
    try:
        return max(0, int(path.read_text(encoding="utf-8").strip()))
    except (OSError, ValueError):
        return 0


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _events(lines: list[bytes], start: int, source: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, start=start + 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ValidationError(
                f"{source}:{number}: not a JSON object; fix or remove the line and re-run",
                kind="invalid_event",
                line=number,
            )
        events.append(value)
    return events


def forward_events(
    client: Client,
    source: Path,
    ito_dir: Path,
    *,
    batch_size: int = FORWARD_BATCH,
    on_batch: Callable[[int, int], None] | None = None,
) -> ForwardResult:
    """Send the complete lines of ``source`` after the checkpoint, ``batch_size`` at a time.

    The checkpoint (``<ito_dir>/.state/event-forward-offset``, a decimal line count as in
    Ito) is advanced after each acknowledged batch. ``on_batch(done, total)`` reports
    progress. Errors propagate after the last acknowledged batch has been checkpointed.
    """
    if batch_size < 1:
        raise ValidationError("batch size must be at least 1")
    checkpoint = ito_dir / CHECKPOINT_FILE
    pending_path = ito_dir / PENDING_FILE
    if not source.is_file():
        raise ValidationError(f"event log not found: {source}", kind="file_not_found")
    lines = _complete_lines(source)
    total = len(lines)
    if total == 0:
        return ForwardResult(0, 0, 0, 0, 0)
    identity = hashlib.sha256(lines[0].strip()).hexdigest()
    offset = min(_read_int(checkpoint), total)
    pending_end: int | None = None
    try:
        pending = json.loads(pending_path.read_text(encoding="utf-8"))
        if (
            isinstance(pending, dict)
            and pending.get("identity") == identity
            and pending.get("start") == offset
            and isinstance(pending.get("end"), int)
            and offset < pending["end"] <= total
        ):
            pending_end = pending["end"]
    except (OSError, ValueError):
        pass

    accepted = duplicates = batches = 0
    while offset < total:
        end = pending_end if pending_end is not None else min(offset + batch_size, total)
        pending_end = None
        events = _events(lines[offset:end], offset, source)
        if events:
            _write_atomic(
                pending_path, json.dumps({"identity": identity, "start": offset, "end": end})
            )
            result = client.post_events(events, idempotency_key=batch_key(identity, offset))
            accepted += result.accepted
            duplicates += result.duplicates
            batches += 1
        _write_atomic(checkpoint, str(end))
        pending_path.unlink(missing_ok=True)
        offset = end
        if on_batch is not None:
            on_batch(offset, total)
    return ForwardResult(accepted, duplicates, batches, offset, total)
