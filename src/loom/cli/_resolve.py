"""One way to name a change on the command line, for reads and writes alike.

``loom show`` (a read) accepts everything the server resolves: an exact id, a numeric
selector (``30-2``, ``030-02``), a prefix or slug words. A command that changes something
(``claim``, ``pull``, ``push``, ``tasks start``, ``archive``, ...) accepts only what names
one change for certain: the exact id, or a numeric selector (``30-2`` is ``030-02_…``).
Anything else the server would resolve (``030-02_deterministic-completion-gat``, ``gate``)
is refused with "did you mean 030-02_deterministic-completion-gate?", never silently picked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from loom.errors import NotFound

if TYPE_CHECKING:
    from loom.client import Client

__all__ = ["is_numeric_selector", "resolve_for_write"]

# NNN-NN, N-N, NNN.NN-NN, "1 12": module (and sub-module) and change numbers only.
_NUMERIC = re.compile(r"\d+(?:\.\d+)?[- ]\d+")


def is_numeric_selector(text: str) -> bool:
    """True for a selector made of module and change numbers only (``30-2``, ``5.1-3``)."""
    return _NUMERIC.fullmatch(text.strip()) is not None


def resolve_for_write(client: Client, target: str) -> str:
    """The exact id of the change ``target`` names for a write (see the module doc).

    Raises ``NotFound`` (``change_not_found``, with ``did_you_mean`` when the server found a
    likely change) or ``ValidationError`` (``ambiguous_target``, from the server).
    """
    found = client.change_id_of(target)
    if found == target or is_numeric_selector(target):
        return found
    raise NotFound(
        f"change not found: {target} (did you mean {found}?)",
        kind="change_not_found",
        change_id=target,
        did_you_mean=found,
    )
