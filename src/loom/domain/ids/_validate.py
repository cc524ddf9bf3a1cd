"""Validators for the identifiers of API.md §0: return the value or raise ``invalid_id``."""

from __future__ import annotations

from loom.domain.ids._common import (
    CANONICAL_CHANGE_RE,
    LEGACY_CHANGE_RE,
    MAX_CHANGE_ID,
    MODULE_SHORT_RE,
    ORG_RE,
    SPEC_RE,
    invalid,
    require_str,
    show,
)

__all__ = [
    "is_canonical_change_id",
    "validate_capability",
    "validate_change_id",
    "validate_holder",
    "validate_module_id",
    "validate_org",
    "validate_repo",
    "validate_spec_id",
    "validate_task_id",
]


def validate_org(s: str) -> str:
    """Return ``s`` if it is a valid organisation name, else raise ``invalid_id``."""
    return _validate_org_like(s, "org")


def validate_repo(s: str) -> str:
    """Return ``s`` if it is a valid repository name, else raise ``invalid_id``."""
    return _validate_org_like(s, "repo")


def _validate_org_like(s: str, field: str) -> str:
    s = require_str(s, field)
    if s in (".", "..") or ORG_RE.fullmatch(s) is None:
        raise invalid(
            field,
            f"invalid {field} {show(s)}: expected 1-100 characters of [A-Za-z0-9._-] "
            "starting with a letter or digit",
        )
    return s


def is_canonical_change_id(s: str) -> bool:
    """True when ``s`` is a canonical ``NNN[.SS]-NN_slug`` change id (API.md §0)."""
    return len(s) <= MAX_CHANGE_ID and CANONICAL_CHANGE_RE.fullmatch(s) is not None


def validate_change_id(s: str) -> str:
    """Return ``s`` if it is a canonical change id or a legacy slug (max 128 chars)."""
    s = require_str(s, "change_id")
    if len(s) <= MAX_CHANGE_ID and CANONICAL_CHANGE_RE.fullmatch(s) is not None:
        return s
    if len(s) <= MAX_CHANGE_ID and LEGACY_CHANGE_RE.fullmatch(s) is not None:
        _refuse_windows_reserved(s, "change_id")
        return s
    raise invalid(
        "change_id",
        f"invalid change id {show(s)}: expected NNN-NN_name, NNN.SS-NN_name or a legacy "
        "kebab-case slug (max 128 characters)",
    )


def validate_capability(s: str) -> str:
    """Return ``s`` if it is a valid capability name (``^[a-z0-9][a-z0-9._-]{0,127}$``)."""
    return _validate_spec_like(s, "capability")


def validate_spec_id(s: str) -> str:
    """Return ``s`` if it is a valid spec id (same grammar as a capability)."""
    return _validate_spec_like(s, "spec_id")


def _validate_spec_like(s: str, field: str) -> str:
    s = require_str(s, field)
    if ".." in s or SPEC_RE.fullmatch(s) is None:
        raise invalid(
            field,
            f"invalid {field} {show(s)}: expected 1-128 characters of [a-z0-9._-] starting "
            "with a letter or digit, without '..'",
        )
    _refuse_windows_reserved(s, field)
    return s


_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"{p}{n}" for p in ("com", "lpt") for n in range(1, 10)}
)


def _refuse_windows_reserved(s: str, field: str) -> None:
    """Ids become directory names on export: ``con``, ``nul``, ``com1``... (any case, with
    or without an extension) cannot be created on Windows."""
    if s.split(".", 1)[0].lower() in _WINDOWS_RESERVED:
        raise invalid(
            field,
            f"invalid {field} {show(s)}: a reserved device name on Windows "
            "(con, prn, aux, nul, com1-9, lpt1-9)",
        )


def validate_task_id(s: str) -> str:
    """Return ``s`` if it is a valid task id: 1-64 chars, no ``/``, ``\\`` or control chars."""
    s = require_str(s, "task_id")
    if not 1 <= len(s) <= 64:
        raise invalid("task_id", f"invalid task id {show(s)}: expected 1-64 characters")
    if "/" in s or "\\" in s or any(_is_control(c) for c in s):
        raise invalid(
            "task_id",
            f"invalid task id {show(s)}: must not contain '/', '\\' or control characters",
        )
    return s


def _is_control(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o < 0xA0


def validate_holder(s: str) -> str:
    """Return ``s`` if it is a valid lease holder name.

    1-200 visible characters (API.md §2.7): printable, and no whitespace anywhere.
    """
    s = require_str(s, "holder")
    if not 1 <= len(s) <= 200:
        raise invalid("holder", f"invalid holder {show(s)}: expected 1-200 characters")
    if not s.isprintable():
        raise invalid("holder", f"invalid holder {show(s)}: control characters are not allowed")
    if any(ch.isspace() for ch in s):
        raise invalid("holder", f"invalid holder {show(s)}: whitespace is not allowed")
    return s


def validate_module_id(s: str) -> str:
    """Validate a module (``NNN``) or sub-module (``NNN.SS``) id; short forms are normalised.

    ``"1"`` → ``"001"``, ``"1.2"`` → ``"001.02"``, ``"024.01"`` → ``"024.01"``.
    """
    s = require_str(s, "module_id")
    m = MODULE_SHORT_RE.fullmatch(s)
    if m is not None:
        module, sub = int(m.group(1)), m.group(2)
        if module <= 999 and (sub is None or int(sub) <= 99):
            return f"{module:03d}" if sub is None else f"{module:03d}.{int(sub):02d}"
    raise invalid(
        "module_id",
        f"invalid module id {show(s)}: expected NNN (<= 999) or NNN.SS (sub-module <= 99)",
    )
