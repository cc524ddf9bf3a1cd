"""The public :class:`Client`: every route of the Loom HTTP API as one typed object."""

from __future__ import annotations

from loom.client._routes_changes import ChangesAPI
from loom.client._routes_overlaps import OverlapsAPI
from loom.client._stream import StreamAPI

__all__ = ["Client"]


class Client(ChangesAPI, StreamAPI, OverlapsAPI):
    """A synchronous, typed client for one Loom server and one project.

    Example::

        from loom.client import Client, LeaseConflict

        with Client("http://127.0.0.1:9010", token, "acme/widgets", holder="agent-7") as c:
            claim = c.allocate(ttl_seconds=600).claim
            if claim is not None:
                c.start_task(claim.change_id, "1.1")

    Every call returns a pydantic model (extra fields kept) or raises a
    :class:`loom.errors.LoomError` subclass: :class:`LeaseConflict`,
    :class:`RevisionConflict`, :class:`PreconditionRequired`, :class:`NotFound`,
    :class:`Unauthorized`, :class:`Forbidden`, :class:`ValidationError`,
    :class:`Unavailable` (and :class:`ConnectionFailed` when the server is unreachable).

    Connection errors and 429/502/503/504 are retried ``retries`` times with exponential
    backoff and full jitter, honouring ``Retry-After``. Each mutating call sends one
    ``Idempotency-Key`` reused by all of its attempts, so a retry never applies twice.
    Writes to a change carry ``X-Loom-Holder`` and, when known, ``X-Loom-Fencing-Token``
    (remembered from :meth:`claim`, :meth:`heartbeat` and :meth:`allocate`, or given
    explicitly as ``fencing_token=``).
    """
