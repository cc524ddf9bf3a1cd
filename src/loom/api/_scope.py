"""Keys Loom sets in the ASGI scope of a request."""

from __future__ import annotations

from typing import Final

__all__ = ["ACCESS_KEY", "BODY_KEY", "HOT_KEY", "HOT_MATCH", "ROUTE_KEY", "WRITE_STARTED"]

# The request body, once read by the body guard or the hot lane (read it only once).
BODY_KEY: Final = "loom.body"
# Set once a request reaches ``loom.api.access.write``: its errors are then the idempotency
# store's business (stored, or deliberately not).
WRITE_STARTED: Final = "loom.write_started"
# The request's ``loom.api.access.Access``, once the path and token checks passed.
ACCESS_KEY: Final = "loom.access"
# The route template a hot-lane request matched (the router sets ``scope["route"]`` for
# the others): the ``route`` label of the request metrics.
ROUTE_KEY: Final = "loom.route"
# Set by the hot lane (claim, heartbeat, release, allocate, event batches): small writes that
# run inline on SQLite; every other write may store megabytes and runs on the writer thread.
HOT_KEY: Final = "loom.hot"
# The hot-lane route and match found by ``HotLane.serves`` (taken by ``HotLane.__call__``).
HOT_MATCH: Final = "loom.hot_match"
