"""The event stream for agents: ``follow_events`` and ``allocate(wait=...)``.

Both read ``GET /events/stream`` (Server-Sent Events). ``follow_events`` reconnects by itself
and resumes after the last id it saw (``Last-Event-ID``), so a dropped connection loses and
repeats nothing. ``allocate(wait=...)`` opens the stream *before* it asks for work, so a
change that becomes available after the answer "no work" is always seen; while it waits it
sends nothing but the one open stream (and one re-check every ``recheck`` seconds, for leases
that lapse without anyone touching them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from loom.client._base import _redact_url
from loom.client._errors import ConnectionFailed
from loom.client._routes_project import ProjectAPI
from loom.errors import LoomError

if TYPE_CHECKING:
    from loom.models import AllocateResult, AuditEvent

__all__ = ["SSEMessage", "StreamAPI", "parse_sse"]

# Events after which a waiting agent asks for work again (anything else cannot free a change).
_WAKE_OPS = frozenset({"create", "update", "release", "expire", "force_release"})


@dataclass(frozen=True)
class SSEMessage:
    id: str | None
    event: str
    data: str


def parse_sse(lines: Iterator[str]) -> Iterator[SSEMessage | None]:
    """Messages of a ``text/event-stream``; None for each comment (heartbeats), so a reader
    can check its clock while the stream is idle."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    for line in lines:
        if line == "":
            if data:
                yield SSEMessage(last_id, event or "message", "\n".join(data))
            data, event, last_id = [], "", None
            continue
        if line.startswith(":"):
            yield None
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value


class StreamAPI(ProjectAPI):
    """Routes that read the event stream."""

    @contextlib.contextmanager
    def _event_stream(
        self, cursor: int | None, filters: dict[str, str | None], read_timeout: float
    ) -> Iterator[tuple[int, Iterator[SSEMessage | None]]]:
        """Open the stream after ``cursor`` (None: from now); yields (start, messages)."""
        headers = {"Accept": "text/event-stream", **self._auth_header()}
        if cursor is not None:
            headers["Last-Event-ID"] = str(cursor)
        params = {k: v for k, v in filters.items() if v is not None}
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        path = self._project_path("events", "stream")
        try:
            with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response)
                start = int(response.headers.get("X-Loom-Since") or (cursor or 0))
                yield start, parse_sse(response.iter_lines())
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConnectionFailed(
                f"invalid server URL {_redact_url(self.base_url)!r}: {exc}"
            ) from None

    def follow_events(
        self,
        since: int | None = None,
        *,
        entity: str | None = None,
        entity_id: str | None = None,
        scope: str | None = None,
        op: str | None = None,
        reconnect_delay: float = 1.0,
        idle_timeout: float = 60.0,
    ) -> Iterator[AuditEvent]:
        """Every event after ``since`` (None: from now), as it is committed, forever.

        Reconnects after a drop (``reconnect_delay``, doubling to 30 s while the server stays
        away; ``idle_timeout`` seconds without even a heartbeat counts as a drop) and resumes
        after the last event seen: nothing is lost or repeated. Errors other than
        unavailability (401, 403, 404, 400) are raised.
        """
        from loom.models import AuditEvent

        filters = {"entity": entity, "entity_id": entity_id, "scope": scope, "op": op}
        cursor = since
        failures = 0
        while True:
            try:
                with self._event_stream(cursor, filters, idle_timeout) as (start, messages):
                    if cursor is None:
                        cursor = start
                    failures = 0
                    for message in messages:
                        if message is None or message.id is None:
                            continue
                        seq = int(message.id)
                        if seq <= cursor:
                            continue
                        cursor = seq
                        yield AuditEvent.model_validate_json(message.data)
            except httpx.TransportError:
                pass
            except LoomError as error:
                if error.http_status not in (429, 502, 503, 504):
                    raise
            self._sleep(min(30.0, reconnect_delay * 2**failures))
            failures = min(failures + 1, 5)

    def allocate(
        self,
        *,
        ttl_seconds: int | None = None,
        module: str | None = None,
        changes: Sequence[str] | None = None,
        holder: str | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
        recheck: float = 30.0,
        avoid_overlap: str | None = None,
    ) -> AllocateResult:
        """``POST /allocate``; with ``wait`` (seconds), block until a change is available.

        Woken by the event stream (a change created or pushed, a lease released or expired),
        with a re-check every ``recheck`` seconds. When ``wait`` runs out: ``claim`` None,
        no lease held. Each attempt is its own operation (an ``idempotency_key`` cannot be
        combined with ``wait``). ``avoid_overlap``: ``prefer`` (the server's default),
        ``strict`` or ``off``.
        """
        from loom.models import AllocateResult

        if not wait or wait <= 0:
            return super().allocate(
                ttl_seconds=ttl_seconds,
                module=module,
                changes=changes,
                holder=holder,
                idempotency_key=idempotency_key,
                avoid_overlap=avoid_overlap,
            )
        if idempotency_key is not None:
            raise ValueError("allocate: idempotency_key cannot be combined with wait")
        deadline = time.monotonic() + wait
        cursor: int | None = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                read_timeout = max(0.05, min(remaining, recheck))
                with self._event_stream(cursor, {}, read_timeout) as (start, messages):
                    if cursor is None:
                        cursor = start
                    result = super().allocate(
                        ttl_seconds=ttl_seconds,
                        module=module,
                        changes=changes,
                        holder=holder,
                        avoid_overlap=avoid_overlap,
                    )
                    if result.claim is not None or remaining <= 0:
                        return result
                    next_check = time.monotonic() + recheck
                    for message in messages:
                        now = time.monotonic()
                        if now >= deadline:
                            return AllocateResult(claim=None)
                        if now >= next_check:
                            break
                        if message is None or message.id is None:
                            continue
                        cursor = int(message.id)
                        if message.event in _WAKE_OPS:
                            break
            except httpx.TimeoutException:
                pass
            except httpx.TransportError:
                self._sleep(max(0.0, min(1.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return AllocateResult(claim=None)
