"""Line handling shared by the parser and the mutations.

Lines are split on ``\\n`` only (like Rust's ``str::lines``): a trailing ``\\r`` belongs to the
line ending, and no other character (form feed, U+2028, ...) starts a new line. Mutations work
on the raw lines *with* their endings so that every untouched byte survives.
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "THEMATIC_BREAK_RE",
    "content_lines",
    "dominant_eol",
    "insert_lines",
    "is_blank_or_break",
    "iso_day",
    "line_ending",
    "raw_lines",
    "strip_eol",
]

THEMATIC_BREAK_RE = re.compile(r"[ \t]{0,3}([-_*])(?:[ \t]*\1){2,}[ \t]*")


def raw_lines(text: str) -> list[str]:
    """Split ``text`` into lines that keep their ``\\n`` / ``\\r\\n`` endings."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def strip_eol(raw: str) -> str:
    """The line without its ending."""
    if raw.endswith("\n"):
        raw = raw[:-1]
        if raw.endswith("\r"):
            raw = raw[:-1]
    return raw


def line_ending(raw: str) -> str:
    """``"\\r\\n"``, ``"\\n"`` or ``""`` (last line without a newline)."""
    if raw.endswith("\r\n"):
        return "\r\n"
    if raw.endswith("\n"):
        return "\n"
    return ""


def content_lines(text: str) -> list[str]:
    """The lines of ``text`` without their endings (aligned with :func:`raw_lines`)."""
    parts = text.split("\n")
    last = parts.pop()
    out = [p[:-1] if p.endswith("\r") else p for p in parts]
    if last:
        out.append(last)
    return out


def dominant_eol(raws: list[str]) -> str:
    """The ending most lines use (``\\n`` when there is none)."""
    crlf = sum(1 for r in raws if r.endswith("\r\n"))
    lf = sum(1 for r in raws if r.endswith("\n")) - crlf
    return "\r\n" if crlf > lf else "\n"


def is_blank_or_break(line: str) -> bool:
    """A blank line or a markdown divider (``---``, ``___...``, ``***``)."""
    return not line.strip() or THEMATIC_BREAK_RE.fullmatch(line) is not None


def insert_lines(raws: list[str], at: int, new_lines: list[str], eol: str) -> None:
    """Insert ``new_lines`` (without endings) before ``raws[at]``.

    Inserting after a last line that has no newline gives that line ``eol`` and leaves the
    new last line without one, so a missing final newline stays missing.
    """
    block = [line + eol for line in new_lines]
    if at == len(raws) and raws and not line_ending(raws[-1]):
        raws[-1] += eol
        block[-1] = new_lines[-1]
    raws[at:at] = block


def iso_day(today: date) -> str:
    """``YYYY-MM-DD`` of a caller-supplied date (a ``datetime`` is cut to its date)."""
    if not isinstance(today, date):
        raise TypeError("today must be a datetime.date")
    return f"{today.year:04d}-{today.month:02d}-{today.day:02d}"
