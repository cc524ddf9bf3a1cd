"""Prometheus metrics (``GET /metrics``), with prometheus-client.

With ``--workers N`` every worker process counts into its own files under
``PROMETHEUS_MULTIPROC_DIR`` (the library's multiprocess mode, set up by ``loom serve``), and
a scrape of any worker sums them. Counters are module-level objects; incrementing one costs
a few microseconds and never touches the database. Gauges that describe the database (active
leases) are computed at scrape time instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "ALLOCATIONS",
    "CONTENT_TYPE",
    "DB_BUSY",
    "DB_LOCK_WAIT",
    "DB_TRANSACTION",
    "EVENTS_DUPLICATE",
    "EVENTS_INGESTED",
    "EVENT_BATCHES",
    "IDEMPOTENT_REPLAYS",
    "LEASE_CONFLICTS",
    "LEASE_EXPIRIES",
    "LEASE_FORCE_RELEASES",
    "LEASE_GRANTS",
    "LEASE_RENEWALS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "WORKER_RESPONSES",
    "count_claim",
    "count_release",
    "render",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# Request latency buckets, seconds: lease operations take ~1 ms, pushes and imports more.
_LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)

REQUESTS = Counter(
    "loom_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "loom_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
WORKER_RESPONSES = Gauge(
    "loom_worker_http_responses",
    "HTTP responses answered by each live worker process (pid label with --workers), by status.",
    ["status"],
    multiprocess_mode="liveall",
)
LEASE_GRANTS = Counter(
    "loom_lease_grants", "Leases granted (a new holder: claim or allocate).", ["how"]
)
LEASE_RENEWALS = Counter("loom_lease_renewals", "Leases renewed by their holder.")
LEASE_EXPIRIES = Counter("loom_lease_expiries", "Expired leases taken over or recorded.")
LEASE_CONFLICTS = Counter(
    "loom_lease_conflicts", "Requests refused because another holder's lease is active."
)
LEASE_FORCE_RELEASES = Counter("loom_lease_force_releases", "Leases force-released by an admin.")
ALLOCATIONS = Counter(
    "loom_allocations", "Allocation requests, by result (granted, no_work).", ["result"]
)
EVENT_BATCHES = Counter("loom_event_batches", "Event batches ingested (new or replayed).")
EVENTS_INGESTED = Counter("loom_events_ingested", "Audit events accepted from clients.")
EVENTS_DUPLICATE = Counter(
    "loom_events_duplicate", "Audit events of replayed batches (same idempotency key)."
)
IDEMPOTENT_REPLAYS = Counter(
    "loom_idempotent_replays", "Responses replayed for a repeated Idempotency-Key."
)
DB_TRANSACTION = Histogram(
    "loom_db_transaction_duration_seconds",
    "Database transaction time (write transactions include any wait for locks).",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
DB_LOCK_WAIT = Histogram(
    "loom_db_write_lock_wait_seconds",
    "SQLite: time to obtain the database write lock (BEGIN IMMEDIATE).",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0),
)
DB_BUSY = Counter(
    "loom_db_busy_errors",
    "Transactions that failed on a busy or locked database (SQLite 'database is locked', "
    "PostgreSQL lock timeouts, deadlocks and serialization failures).",
)

DB_LOOP_WRITES = Counter(
    "loom_db_loop_writes",
    "PostgreSQL: write transactions run on the event loop (lease requests), not on a writer "
    "thread.",
)
DB_COMMIT_GROUPS = Histogram(
    "loom_db_commit_group_size",
    "PostgreSQL: lease writes committed together, per commit (the lease requests that reach "
    "their write in one turn of the event loop share one round trip and one commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
DB_COMMIT_GROUPS_SPLIT = Counter(
    "loom_db_commit_groups_split",
    "PostgreSQL: commit groups in which a statement failed: rolled back whole, then each "
    "statement sent again alone.",
)
DB_LOOP_BLOCKING = Counter(
    "loom_db_loop_blocking_statements",
    "PostgreSQL: statements that held the event loop for their round trip (a project's "
    "first write creates its row this way; otherwise it stays still).",
)

LEASE_GUESSES = Counter(
    "loom_lease_compare_and_set",
    "PostgreSQL: lease requests decided on the lease this process last saw, by outcome "
    "(written: one round trip; moved_on: the row had changed, nothing was written and the "
    "locked read decided).",
    ["outcome"],
)
LEASE_GUESS_WRITTEN = LEASE_GUESSES.labels("written")
LEASE_GUESS_MOVED_ON = LEASE_GUESSES.labels("moved_on")


_GRANTS_CLAIM = LEASE_GRANTS.labels("claim")
_GRANTS_ALLOCATE = LEASE_GRANTS.labels("allocate")


def count_claim(events: Iterable[tuple[str, str]], *, allocate: bool = False) -> None:
    """Count a claim, allocation or heartbeat by its lease events: a ``claim`` event is a
    grant (a new holder), none is a renewal; ``expire`` is an expiry taken over."""
    granted = False
    for name, _ in events:
        if name == "claim":
            granted = True
            (_GRANTS_ALLOCATE if allocate else _GRANTS_CLAIM).inc()
        elif name == "expire":
            LEASE_EXPIRIES.inc()
    if not granted:
        LEASE_RENEWALS.inc()


def count_release(events: Iterable[tuple[str, str]]) -> None:
    for name, _ in events:
        if name == "force_release":
            LEASE_FORCE_RELEASES.inc()
        elif name == "expire":
            LEASE_EXPIRIES.inc()


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The exposition text: this process's metrics, or every worker's in multiprocess mode,
    followed by ``extra`` (metrics computed at scrape time)."""
    if os.environ.get(_MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    families = list(extra)
    if families:
        scraped = CollectorRegistry()
        scraped.register(_Fixed(families))
        text += generate_latest(scraped)
    return text


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
