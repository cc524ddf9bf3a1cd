"""``module.md``: parse, render and tick the change checklist (Ito §2.4).

::

    # Payment Gateway

    ## Purpose
    Card and wallet payments for the storefront.

    ## Scope
    - payments-api

    ## Depends On
    - 003_accounts

    ## Changes
    - [x] 011-01_add-card-tokens
    - [ ] 011-02_wallet-support (planned)

Differences from upstream (``docs/ito-compat.md``): :func:`tick_change` only ticks a checklist
entry whose change id is exactly the given id (D-25 ticked every line containing the id as a
substring, so ``011-01_a`` also ticked ``011-01_a-b``), and it rewrites nothing else; a module's
description comes from its own ``## Purpose`` (D-23).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from loom.domain._memo import memoized
from loom.errors import ValidationError

__all__ = [
    "CHANGES_PLACEHOLDER",
    "PURPOSE_PLACEHOLDER",
    "SCOPE_PLACEHOLDER",
    "ChecklistEntry",
    "ModuleDoc",
    "module_dir_name",
    "parse_module_md",
    "tick_change",
]

PURPOSE_PLACEHOLDER: Final = "<!-- Describe the purpose of this module/epic -->"
SCOPE_PLACEHOLDER: Final = "<!-- List the scope of this module -->"
CHANGES_PLACEHOLDER: Final = "<!-- Changes will be listed here as they are created -->"

_MODULE_ID = re.compile(r"\d{3}(?:\.\d{2})?\Z")
_ENTRY = re.compile(
    r"[ \t]*[-*][ \t]+(?:\[(?P<mark>[ xX])\][ \t]+)?(?P<id>[0-9a-z][0-9a-z._-]*)"
    r"(?P<planned>[ \t]+\(planned\))?[ \t]*\Z"
)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


@dataclass(frozen=True, slots=True)
class ChecklistEntry:
    """One line of the ``## Changes`` list: ``- [x] <id>``, ``- [ ] <id> (planned)``, ``- <id>``."""

    change_id: str
    done: bool
    planned: bool
    line: int = field(default=0, compare=False)  # 1-based line in module.md


@dataclass(frozen=True, slots=True)
class ModuleDoc:
    """The parsed content of a ``module.md``.

    ``description`` is the first non-empty, non-comment line of ``## Purpose`` (None if the
    purpose is only a placeholder). ``sections`` holds every ``## `` section as
    ``(heading, body)`` in document order, including ones Loom does not interpret.
    """

    title: str
    purpose: str
    description: str | None
    scope: tuple[str, ...]
    depends_on: tuple[str, ...]
    changes: tuple[ChecklistEntry, ...]
    sections: tuple[tuple[str, str], ...]


def _sections(lines: list[str]) -> tuple[str, list[tuple[str, list[tuple[int, str]]]]]:
    title = ""
    sections: list[tuple[str, list[tuple[int, str]]]] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("## "):
            sections.append((stripped[3:].strip(), []))
        elif stripped.startswith("# ") and not title and not sections:
            title = stripped[2:].strip()
        elif sections:
            sections[-1][1].append((number, line))
    return title, sections


def _without_comments(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    kept: list[tuple[int, str]] = []
    in_comment = False
    for number, line in body:
        text = line.strip()
        if in_comment:
            in_comment = "-->" not in text
            continue
        if text.startswith("<!--"):
            in_comment = "-->" not in text
            continue
        kept.append((number, line))
    return kept


def _bullets(body: list[tuple[int, str]]) -> tuple[str, ...]:
    items: list[str] = []
    for _, line in _without_comments(body):
        # ``<blanks>[-*+]<blanks><item><blanks>``, with string operations (a pattern with a lazy
        # item before trailing blanks backtracks quadratically on a run of spaces).
        s = line.lstrip(" \t")
        if len(s) > 1 and s[0] in "-*+" and s[1] in " \t":
            item = s[1:].strip(" \t")
            if item:
                items.append(item)
    return tuple(items)


def _entries(body: list[tuple[int, str]]) -> tuple[ChecklistEntry, ...]:
    entries: list[ChecklistEntry] = []
    for number, line in _without_comments(body):
        match = _ENTRY.match(line)
        if match:
            entries.append(
                ChecklistEntry(
                    change_id=match["id"],
                    done=(match["mark"] or " ") in "xX",
                    planned=match["planned"] is not None,
                    line=number,
                )
            )
    return tuple(entries)


@memoized
def parse_module_md(md: str) -> ModuleDoc:
    """Parse a ``module.md``. Never fails: missing sections give empty values.

    Section headings are matched case-insensitively; unknown sections are kept in
    ``sections``. Changes entries must be bullets holding one change-id-like token, optionally
    checked (``[x]``/``[X]``/``[ ]``) and optionally suffixed ``(planned)``.
    """
    lines = md.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    title, sections = _sections(lines)
    by_name: dict[str, list[tuple[int, str]]] = {}
    for name, body in sections:
        by_name.setdefault(name.lower(), body)
    purpose_body = by_name.get("purpose", [])
    purpose_lines = [line.strip() for _, line in _without_comments(purpose_body)]
    description = next((line for line in purpose_lines if line), None)
    return ModuleDoc(
        title=title,
        purpose="\n".join(line for _, line in purpose_body).strip(),
        description=description,
        scope=_bullets(by_name.get("scope", [])),
        depends_on=_bullets(by_name.get("depends on", [])),
        changes=_entries(by_name.get("changes", [])),
        sections=tuple(
            (name, "\n".join(line for _, line in body).strip()) for name, body in sections
        ),
    )


@memoized
def tick_change(md: str, change_id: str) -> str:
    """Mark ``- [ ] <change_id>`` as ``- [x] <change_id>``.

    Only checklist lines whose id token is exactly ``change_id`` change, and only their
    ``[ ]``; every other byte (line endings included) is kept. Returns ``md`` unchanged when
    the id is absent or already ticked, so the call is idempotent.
    """
    pattern = re.compile(
        r"^([ \t]*[-*][ \t]+)\[ \]([ \t]+" + re.escape(change_id) + r")(?=\s|\Z)",
        re.MULTILINE,
    )
    return pattern.sub(r"\1[x]\2", md)


def module_dir_name(module_id: str, name: str) -> str:
    """The directory name of a module: ``"024_ito-backend"``, or ``"01_modules"`` for the
    sub-module ``"019.01"`` (which lives under ``<parent dir>/sub/``)."""
    if not _MODULE_ID.match(module_id):
        raise ValidationError(
            f"invalid module id {module_id!r}: expected NNN or NNN.SS",
            kind="invalid_id",
            field="module_id",
            value=module_id,
        )
    if (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\\0")
        or name != name.strip()
        or len(name.encode()) > 200
    ):
        raise ValidationError(
            f"invalid module name {name!r}", kind="invalid_id", field="name", value=name
        )
    leaf = module_id.rpartition(".")[2]
    return f"{leaf}_{name}"
