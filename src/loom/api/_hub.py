"""The event stream's fan-out: one log reader per project and process, many subscribers.

A commit that appended events wakes the project's *channel* (``Database.on_events``: in
process, after commit). The channel reads the log through the same path as ``GET /events``
(``service.events.read_events``: on PostgreSQL that numbers what has been committed) from its
cursor and hands every new event, encoded once, to each subscriber: written to its connection
at once when the connection takes it without waiting (``Subscriber.direct``), else queued on
its bounded queue for its own writer task. A subscriber with more than ``buffer`` bytes
queued is cut off (its connection closed); it resumes with its last id. The wake-up is only
a hint: the ``seq`` read is the truth, and every channel also re-reads on a timer, so a lost
wake-up delays an event, never loses it.

Several processes on one PostgreSQL (``serve --workers N``, several hosts) tell each other
with ``NOTIFY loom_events, '<project ids>'``, sent after commit by one notifier task per
process (coalesced, off the write path), and heard by one ``LISTEN`` task per process, both
on the event loop (``service.events.event_relay``, :mod:`loom.store.relay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from loom.service import Project, ServiceContext
from loom.service import events as events_service

__all__ = ["Filters", "Hub", "Item", "Page", "Subscriber", "encode_frame"]

_log = logging.getLogger("loom.stream")
_PAGE = 500


class Filters(NamedTuple):
    entity: str | None = None
    entity_id: str | None = None
    scope: str | None = None
    op: str | None = None

    def match(self, event: dict[str, Any]) -> bool:
        return (
            (self.entity is None or event.get("entity") == self.entity)
            and (self.entity_id is None or event.get("entity_id") == self.entity_id)
            and (self.scope is None or event.get("scope") == self.scope)
            and (self.op is None or event.get("op") == self.op)
        )


_ALL = Filters()


def encode_frame(event: dict[str, Any]) -> bytes:
    """One SSE message: ``id`` = seq, ``event`` = op, ``data`` = the event JSON (one line)."""
    op = str(event.get("op", "message")).replace("\r", " ").replace("\n", " ") or "message"
    data = orjson.dumps(event)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (int(event["seq"]), op.encode(), data)


Item = tuple[int, dict[str, Any], bytes]  # (seq, event, SSE frame)


class Page(NamedTuple):
    """A run of consecutive log items handed to subscribers, shared between them: ``body``
    is their frames joined once, so a subscriber that takes the whole page sends it without
    touching each event (the fan-out costs one ``send`` per subscriber, not one per event)."""

    items: list[Item]
    body: bytes
    first: int  # seq of the first item
    last: int  # seq of the last item

    @classmethod
    def of(cls, items: list[Item]) -> Page:
        return cls(items, b"".join(frame for _, _, frame in items), items[0][0], items[-1][0])


@dataclass(eq=False)
class Subscriber:
    """One stream connection: its filters, its cursor and its queue of :class:`Page` (shared
    between subscribers); ``pending`` counts the queued frames' bytes, bounded by the hub's
    ``buffer``. ``task`` is cancelled when it is cut off."""

    filters: Filters
    cursor: int
    pages: list[Page] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pending: int = 0
    beat: bool = False  # a heartbeat is due (set by the hub's timer)
    sending: bool = False  # its writer task is inside a send (maybe waiting for the peer)

    def take(self) -> list[Page]:
        """Everything queued so far (the writer sends it as one chunk)."""
        pages, self.pages = self.pages, []
        self.ready.clear()
        return pages

    dropped: bool = False
    task: asyncio.Task[Any] | None = None
    # Set by the stream once its backlog is sent: writes a page to the connection at once
    # when nothing is queued or being sent and the connection takes it without waiting
    # (else False, and the page is queued for the subscriber's writer as usual).
    direct: Callable[[Page], bool] | None = None


@dataclass(eq=False)
class _Channel:
    project: Project
    pid: int | None
    cursor: int
    subs: set[Subscriber] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Hub:
    """Per-process registry of channels (one per project with subscribers)."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        buffer: int,
        recheck: float,
        heartbeat: float = 15.0,
        coalesce: float = 0.07,
    ) -> None:
        self.ctx = ctx
        self.heartbeat = heartbeat
        self._beat_task: asyncio.Task[None] | None = None
        self.buffer = buffer
        self.recheck = recheck
        self.coalesce = coalesce
        self.dropped = 0  # subscribers cut off since start (tests and the bench read it)
        self._channels: dict[Project, _Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pg: events_service.EventRelay | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._pg = events_service.event_relay(self.ctx, self.wake)
        if self._pg is not None:
            self._pg.start()
        self.ctx.db.on_events = self.on_commit
        self._beat_task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        """One timer for every subscriber's heartbeat (no timer per connection)."""
        while True:
            await asyncio.sleep(self.heartbeat)
            for channel in list(self._channels.values()):
                for sub in channel.subs:
                    sub.beat = True
                    sub.ready.set()

    async def stop(self) -> None:
        self.ctx.db.on_events = None
        if self._beat_task is not None:
            self._beat_task.cancel()
        if self._pg is not None:
            await self._pg.stop()
        for channel in list(self._channels.values()):
            if channel.task is not None:
                channel.task.cancel()
            for sub in list(channel.subs):
                self._drop(channel, sub, count=False)
        self._channels.clear()

    # --- wake-ups -------------------------------------------------------------------

    def on_commit(self, pids: set[int]) -> None:
        """``Database.on_events``: runs in the committing thread, after commit."""
        if self._pg is not None:
            self._pg.mark(pids)
        if not self._channels:
            return  # a channel created later reads the log's position after this commit
        if threading.get_ident() == self._loop_thread:
            self.wake(pids)
        else:
            self._wake_threadsafe(pids)

    def _wake_threadsafe(self, pids: Iterable[int] | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake, pids)

    def wake(self, pids: Iterable[int] | None) -> None:
        """Wake the channels of ``pids`` (None: all), and those whose project was unknown."""
        wanted = None if pids is None else set(pids)
        for channel in self._channels.values():
            if wanted is None or channel.pid is None or channel.pid in wanted:
                channel.wake.set()

    # --- subscriptions --------------------------------------------------------------

    async def subscribe(self, project: Project, since: int | None, filters: Filters) -> Subscriber:
        """Register first, then fix the start: every event after the returned subscriber's
        ``cursor`` reaches it, from its own backlog read (:meth:`backlog`) or its queue."""
        sub = Subscriber(filters, 0)
        channel = self._channels.get(project)
        if channel is None:
            pid, top = await self._latest(project)
            channel = self._channels.get(project)  # another subscriber may have raced here
            if channel is None:
                channel = _Channel(project, pid, top)
                self._channels[project] = channel
                channel.task = asyncio.create_task(self._run(channel))
        channel.subs.add(sub)
        if since is None:
            _, since = await self._latest(project)
        sub.cursor = since
        return sub

    def unsubscribe(self, project: Project, sub: Subscriber) -> None:
        channel = self._channels.get(project)
        if channel is None:
            return
        channel.subs.discard(sub)
        if not channel.subs:
            if channel.task is not None:
                channel.task.cancel()
            del self._channels[project]

    def _read(self, project: Project, since: int) -> list[dict[str, Any]]:
        """One page of the log after ``since`` (the same read as ``GET /events``)."""
        items, _ = events_service.read_events(
            self.ctx, project, since=since, limit=_PAGE, entity=None, scope=None, op=None
        )
        return list(items)

    async def backlog(self, project: Project, since: int) -> list[dict[str, Any]]:
        """One page of the log after ``since``, read on a reader thread."""
        return await self.ctx.db.run_read(self._read, project, since)

    async def _page(self, project: Project, since: int) -> list[dict[str, Any]]:
        """The channel's read. On SQLite it runs inline: a page of the local log reads in
        well under a millisecond, while a hop to a reader thread waits for the event loop to
        let go of the GIL (milliseconds under load, on every read)."""
        if self.ctx.db.inline_writes:
            return self._read(project, since)
        return await self.backlog(project, since)

    async def _latest(self, project: Project) -> tuple[int | None, int]:
        return await self.ctx.db.run_read(
            functools.partial(events_service.latest_event, self.ctx, project)
        )

    # --- the channel's reader ---------------------------------------------------------

    def interval(self, subscribers: int) -> float:
        """The shortest time between two reads of a channel under load: a read costs one
        write per subscriber, so the interval grows with them, from 10 ms for one to
        ``coalesce`` (70 ms) from 200 on. Measured with ``bench/stream.py`` (200 streams under
        the lease load, SQLite): every 50 ms the fan-out took a fifth of the lease
        throughput; every 70 ms, with the read inline, delivery p99 stays under 90 ms."""
        return min(self.coalesce, 0.01 + (self.coalesce - 0.01) * subscribers / 200)

    async def _run(self, channel: _Channel) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.wake.wait(), timeout=self.recheck)
            # Under load, commits arrive faster than subscribers can be written to: one read
            # (and one write per subscriber) per coalescing interval carries them all.
            gap = self.interval(len(channel.subs)) - (loop.time() - last)
            if gap > 0:
                await asyncio.sleep(gap)
            last = loop.time()
            channel.wake.clear()
            try:
                await self._pull(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: try again at the next wake or timer
                _log.warning("event stream read failed", exc_info=True)

    async def _pull(self, channel: _Channel) -> None:
        if channel.pid is None:
            channel.pid, _ = await self._latest(channel.project)
            if channel.pid is None:
                return
        while True:
            page = await self._page(channel.project, channel.cursor)
            if not page:
                return
            items = [(int(ev["seq"]), ev, encode_frame(ev)) for ev in page]
            whole = Page.of(items)
            filtered: dict[Filters, Page | None] = {}  # one page per distinct filter set
            for sub in list(channel.subs):
                if sub.filters == _ALL:
                    mine: Page | None = whole
                elif sub.filters in filtered:
                    mine = filtered[sub.filters]
                else:
                    chosen = [item for item in items if sub.filters.match(item[1])]
                    mine = filtered[sub.filters] = Page.of(chosen) if chosen else None
                if mine is None:
                    continue
                if sub.direct is not None and not sub.pages and sub.direct(mine):
                    continue  # written to the connection: no queue, no task to wake
                if sub.pending + len(mine.body) > self.buffer:
                    self._drop(channel, sub)
                    continue
                sub.pending += len(mine.body)
                sub.pages.append(mine)
                sub.ready.set()
            channel.cursor = items[-1][0]
            if len(page) < _PAGE:
                return

    def _drop(self, channel: _Channel, sub: Subscriber, *, count: bool = True) -> None:
        """Cut off a subscriber that does not keep up (never wait for it)."""
        channel.subs.discard(sub)
        sub.dropped = True
        if count:
            self.dropped += 1
        if sub.task is not None:
            sub.task.cancel()
