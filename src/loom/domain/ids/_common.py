"""Shared grammar pieces and error helpers of :mod:`loom.domain.ids`."""

from __future__ import annotations

import re

from loom.errors import ValidationError

__all__ = [
    "ARCHIVE_DATE_RE",
    "CANONICAL_CHANGE_RE",
    "CHANGE_LEFT_RE",
    "DIGITS_RE",
    "ID_NAME_RE",
    "LEGACY_CHANGE_RE",
    "MAX_CHANGE_ID",
    "MAX_ECHO",
    "MAX_PARSE_BYTES",
    "MODULE_SHORT_RE",
    "NON_ALNUM_RE",
    "ORG_RE",
    "SPEC_RE",
    "SUB_SELECTOR_RE",
    "invalid",
    "require_str",
    "show",
]

MAX_ECHO = 100
MAX_PARSE_BYTES = 256
MAX_CHANGE_ID = 128

_A = re.ASCII
ORG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CANONICAL_CHANGE_RE = re.compile(
    r"(?P<m>\d{3})(?:\.(?P<s>\d{2}))?-(?P<n>\d{2,})_(?P<name>[a-z0-9]+(?:-[a-z0-9]+)*)", _A
)
LEGACY_CHANGE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
SPEC_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
MODULE_SHORT_RE = re.compile(r"(\d{1,10})(?:\.(\d{1,10}))?", _A)
ID_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
DIGITS_RE = re.compile(r"\d+", _A)
ARCHIVE_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(.+)", _A)
CHANGE_LEFT_RE = re.compile(r"(\d+)(?:\.(\d+))?-(\d+)", _A)
SUB_SELECTOR_RE = re.compile(r"\d+\.\d+", _A)
NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")


def show(value: str) -> str:
    """Quote ``value`` for an error message (escaped), cut to ~100 characters."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"


def invalid(field: str, message: str, **details: object) -> ValidationError:
    """The ``invalid_id`` error for ``field``."""
    return ValidationError(message, kind="invalid_id", field=field, **details)


def require_str(value: object, field: str) -> str:
    """``value`` if it is a string, else ``invalid_id``."""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    return value
