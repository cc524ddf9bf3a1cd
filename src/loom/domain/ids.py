"""Identifiers: validation, Ito's strict id parsers, ordering, archive names, target resolution.

Pure functions only. Every rejection is a :class:`~loom.errors.ValidationError` with
``kind="invalid_id"`` and a ``field`` detail naming what was being validated; messages quote at
most ~100 characters of the offending input.

Grammars (``shared/spec/API.md`` §0 and ``shared/reference/ito-domain.md`` §1):

- org / repo: 1-100 chars of ``[A-Za-z0-9._-]``, first char alphanumeric.
- change id: canonical ``NNN-NN_slug`` / ``NNN.SS-NN_slug`` or a legacy slug ``a-b-c``.
- capability / spec id: ``^[a-z0-9][a-z0-9._-]{0,127}$`` without ``..``.
- module id ``NNN``, sub-module id ``NNN.SS`` (short forms ``1`` / ``1.2`` are normalised).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from loom.errors import NotFound, ValidationError

__all__ = [
    "ChangeId",
    "SubModuleId",
    "archive_dir_name",
    "change_sort_key",
    "is_canonical_change_id",
    "module_of",
    "normalize_module_ref",
    "parse_archive_dir_name",
    "parse_change_id",
    "parse_module_id",
    "parse_sub_module_id",
    "resolve_change_target",
    "sub_module_of",
    "validate_capability",
    "validate_change_id",
    "validate_holder",
    "validate_module_id",
    "validate_org",
    "validate_repo",
    "validate_spec_id",
    "validate_task_id",
]

_MAX_ECHO = 100
_MAX_PARSE_BYTES = 256
_MAX_CHANGE_ID = 128

_ORG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_CANONICAL_CHANGE_RE = re.compile(r"\d{3}(?:\.\d{2})?-\d{2,}_[a-z0-9]+(?:-[a-z0-9]+)*")
_LEGACY_CHANGE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SPEC_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_MODULE_SHORT_RE = re.compile(r"(\d{1,10})(?:\.(\d{1,10}))?")
_ID_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_DIGITS_RE = re.compile(r"\d+")
_ARCHIVE_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(.+)")
_NUMERIC_SELECTOR_RE = re.compile(r"(\d+)(?:\.(\d+))?-(\d+)")
_SUB_SELECTOR_RE = re.compile(r"\d+\.\d+")
_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")


def _show(value: str) -> str:
    """Quote ``value`` for an error message, cut to ~100 characters."""
    if len(value) > _MAX_ECHO:
        value = value[:_MAX_ECHO] + "…"
    return repr(value)


def _invalid(field: str, message: str, **details: object) -> ValidationError:
    return ValidationError(message, kind="invalid_id", field=field, **details)


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _invalid(field, f"{field} must be a string")
    return value


# --------------------------------------------------------------------------- validators


def validate_org(s: str) -> str:
    """Return ``s`` if it is a valid organisation name, else raise ``invalid_id``."""
    return _validate_org_like(s, "org")


def validate_repo(s: str) -> str:
    """Return ``s`` if it is a valid repository name, else raise ``invalid_id``."""
    return _validate_org_like(s, "repo")


def _validate_org_like(s: str, field: str) -> str:
    s = _require_str(s, field)
    if s in (".", "..") or _ORG_RE.fullmatch(s) is None:
        raise _invalid(
            field,
            f"invalid {field} {_show(s)}: expected 1-100 characters of [A-Za-z0-9._-] "
            "starting with a letter or digit",
        )
    return s


def is_canonical_change_id(s: str) -> bool:
    """True when ``s`` is a canonical ``NNN[.SS]-NN_slug`` change id (API.md §0)."""
    return len(s) <= _MAX_CHANGE_ID and _CANONICAL_CHANGE_RE.fullmatch(s) is not None


def validate_change_id(s: str) -> str:
    """Return ``s`` if it is a canonical change id or a legacy slug (max 128 chars)."""
    s = _require_str(s, "change_id")
    if len(s) <= _MAX_CHANGE_ID and (
        _CANONICAL_CHANGE_RE.fullmatch(s) is not None or _LEGACY_CHANGE_RE.fullmatch(s) is not None
    ):
        return s
    raise _invalid(
        "change_id",
        f"invalid change id {_show(s)}: expected NNN-NN_name, NNN.SS-NN_name or a legacy "
        "kebab-case slug (max 128 characters)",
    )


def validate_capability(s: str) -> str:
    """Return ``s`` if it is a valid capability name (``^[a-z0-9][a-z0-9._-]{0,127}$``)."""
    return _validate_spec_like(s, "capability")


def validate_spec_id(s: str) -> str:
    """Return ``s`` if it is a valid spec id (same grammar as a capability)."""
    return _validate_spec_like(s, "spec_id")


def _validate_spec_like(s: str, field: str) -> str:
    s = _require_str(s, field)
    if ".." in s or _SPEC_RE.fullmatch(s) is None:
        raise _invalid(
            field,
            f"invalid {field} {_show(s)}: expected 1-128 characters of [a-z0-9._-] starting "
            "with a letter or digit, without '..'",
        )
    return s


def validate_task_id(s: str) -> str:
    """Return ``s`` if it is a valid task id: 1-64 chars, no ``/``, ``\\`` or control chars."""
    s = _require_str(s, "task_id")
    if not 1 <= len(s) <= 64:
        raise _invalid("task_id", f"invalid task id {_show(s)}: expected 1-64 characters")
    if "/" in s or "\\" in s or any(_is_control(c) for c in s):
        raise _invalid(
            "task_id",
            f"invalid task id {_show(s)}: must not contain '/', '\\' or control characters",
        )
    return s


def _is_control(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o < 0xA0


def validate_holder(s: str) -> str:
    """Return ``s`` if it is a valid lease holder name.

    1-200 printable characters; inner spaces are allowed, leading or trailing whitespace is not.
    """
    s = _require_str(s, "holder")
    if not 1 <= len(s) <= 200:
        raise _invalid("holder", f"invalid holder {_show(s)}: expected 1-200 characters")
    if not s.isprintable():
        raise _invalid("holder", f"invalid holder {_show(s)}: control characters are not allowed")
    if s != s.strip():
        raise _invalid(
            "holder", f"invalid holder {_show(s)}: leading or trailing whitespace is not allowed"
        )
    return s


def validate_module_id(s: str) -> str:
    """Validate a module (``NNN``) or sub-module (``NNN.SS``) id; short forms are normalised.

    ``"1"`` → ``"001"``, ``"1.2"`` → ``"001.02"``, ``"024.01"`` → ``"024.01"``.
    """
    s = _require_str(s, "module_id")
    m = _MODULE_SHORT_RE.fullmatch(s)
    if m is not None:
        module, sub = int(m.group(1)), m.group(2)
        if module <= 999 and (sub is None or int(sub) <= 99):
            return f"{module:03d}" if sub is None else f"{module:03d}.{int(sub):02d}"
    raise _invalid(
        "module_id",
        f"invalid module id {_show(s)}: expected NNN (<= 999) or NNN.SS (sub-module <= 99)",
    )


# --------------------------------------------------------------------------- strict parsers


@dataclass(frozen=True, slots=True)
class ChangeId:
    """A parsed, canonical change id (``NNN-NN_name`` or ``NNN.SS-NN_name``)."""

    module_id: str
    """Three-digit module id, e.g. ``"012"``."""
    sub_module_id: str | None
    """``"NNN.SS"`` for sub-module changes, else None."""
    number: int
    """The change number within its module or sub-module."""
    name: str
    """The lowercased slug after the first ``_``."""
    canonical: str
    """The normalised id, e.g. ``"012.02-05_cache"``."""

    @property
    def change_num(self) -> str:
        """The change number as written canonically (at least two digits)."""
        return f"{self.number:02d}"

    def __str__(self) -> str:
        return self.canonical


@dataclass(frozen=True, slots=True)
class SubModuleId:
    """A parsed sub-module id (``NNN.SS`` with an optional name)."""

    id: str
    """Canonical ``NNN.SS``."""
    parent_module_id: str
    """Canonical ``NNN`` of the parent module."""
    sub_num: str
    """Two-digit sub-module number."""
    name: str | None
    """Lowercased name after the first ``_``, when given."""


def _prepare(s: object, field: str, what: str) -> str:
    text = _require_str(s, field).strip()
    if not text:
        raise _invalid(field, f"{what} cannot be empty")
    if len(text.encode("utf-8")) > _MAX_PARSE_BYTES:
        raise _invalid(field, f"{what} is too long: {len(text.encode('utf-8'))} bytes (max 256)")
    return text


def _number(digits: str, limit: int | None, field: str, what: str) -> int:
    if not digits or not digits.isascii() or not digits.isdigit():
        raise _invalid(field, f"Invalid {what}: {_show(digits)}")
    value = int(digits)
    if limit is not None and value > limit:
        raise _invalid(field, f"{what} {value} exceeds maximum ({limit})")
    return value


def _id_name(name: str, field: str, what: str) -> str:
    if _ID_NAME_RE.fullmatch(name) is None:
        raise _invalid(
            field,
            f"Invalid {what} name {_show(name)}: must start with a letter and contain only "
            "letters, digits and '-'",
        )
    return name.lower()


def parse_module_id(s: str) -> str:
    """Parse ``DIGITS`` or ``DIGITS_name`` (Ito §1.1) and return the canonical ``NNN``.

    ``"7"`` → ``"007"``, ``"0007"`` → ``"007"``, ``"3_Auth-API"`` → ``"003"``.
    """
    text = _prepare(s, "module_id", "Module ID")
    number, sep, name = text.partition("_")
    value = _number(number, 999, "module_id", "Module ID")
    if sep:
        if not name:
            raise _invalid("module_id", f"Module ID missing name: {_show(text)}")
        _id_name(name, "module_id", "module")
    return f"{value:03d}"


def parse_sub_module_id(s: str) -> SubModuleId:
    """Parse ``M.S`` or ``M.S_name`` (Ito §1.2): ``"7.3"`` → ``007.03``."""
    text = _prepare(s, "sub_module_id", "Sub-module ID")
    ident, sep, name = text.partition("_")
    module, dot, sub = ident.partition(".")
    if not dot:
        raise _invalid("sub_module_id", f"Invalid sub-module ID {_show(text)}: expected NNN.SS")
    m = _number(module, 999, "sub_module_id", "Module ID")
    n = _number(sub, 99, "sub_module_id", "Sub-module number")
    parsed_name: str | None = None
    if sep:
        if not name:
            raise _invalid("sub_module_id", f"Sub-module ID missing name: {_show(text)}")
        parsed_name = _id_name(name, "sub_module_id", "sub-module")
    return SubModuleId(
        id=f"{m:03d}.{n:02d}",
        parent_module_id=f"{m:03d}",
        sub_num=f"{n:02d}",
        name=parsed_name,
    )


def normalize_module_ref(s: str) -> str:
    """Normalise a module or sub-module reference (name suffix allowed) to ``NNN`` / ``NNN.SS``."""
    text = _require_str(s, "module_id").strip()
    if "." in text.partition("_")[0]:
        return parse_sub_module_id(text).id
    return parse_module_id(text)


def parse_change_id(s: str) -> ChangeId:
    """Parse a change id strictly (Ito §1.3), normalising short forms.

    ``"4-7_Fix-Login"`` → ``004-07_fix-login``; ``"12.2-5_cache"`` → ``012.02-05_cache``.
    Loom is slightly stricter than Ito: the resulting canonical id must also satisfy
    :func:`validate_change_id` (no ``--``, no trailing ``-``, at most 128 characters).
    """
    text = _prepare(s, "change_id", "Change ID")
    field = "change_id"
    pieces = text.split("_")
    if (
        "-" not in text
        and len(pieces) >= 3
        and all(p.isascii() and p.isdigit() for p in pieces[:2])
    ):
        raise _invalid(
            field,
            f"Invalid change ID format: {_show(text)}",
            hint="use '-' between the module and change numbers, e.g. 007-02_name",
        )
    left, sep, name = text.partition("_")
    if not sep:
        a, dash, b = text.partition("-")
        if dash and a.isascii() and a.isdigit() and b.isascii() and b.isdigit():
            raise _invalid(field, f"Change ID missing name: {_show(text)}")
        raise _invalid(
            field,
            f"Invalid change ID format: {_show(text)}",
            hint="expected NNN-NN_name or NNN.SS-NN_name",
        )
    ids, dash, num = left.partition("-")
    if not dash:
        raise _invalid(
            field,
            f"Invalid change ID format: {_show(text)}",
            hint="expected NNN-NN_name or NNN.SS-NN_name",
        )
    module, dot, sub = ids.partition(".")
    m = _number(module, 999, field, "Module ID")
    sub_id: str | None = None
    if dot:
        sub_id = f"{m:03d}.{_number(sub, 99, field, 'Sub-module number'):02d}"
    n = _number(num, None, field, "Change number")
    if not name:
        raise _invalid(field, f"Change ID missing name: {_show(text)}")
    slug = _id_name(name, field, "change")
    canonical = f"{sub_id or f'{m:03d}'}-{n:02d}_{slug}"
    if not is_canonical_change_id(canonical):
        raise _invalid(
            field,
            f"Invalid change ID {_show(text)}: the name must be kebab-case (no '--', no "
            "trailing '-') and the id at most 128 characters",
        )
    return ChangeId(
        module_id=f"{m:03d}", sub_module_id=sub_id, number=n, name=slug, canonical=canonical
    )


def _try_parse_change(change_id: str) -> ChangeId | None:
    try:
        return parse_change_id(change_id)
    except ValidationError:
        return None


def module_of(change_id: str) -> str | None:
    """The ``NNN`` module of a canonical change id (sub-module changes included), else None."""
    parsed = _try_parse_change(change_id)
    return parsed.module_id if parsed else None


def sub_module_of(change_id: str) -> str | None:
    """The ``NNN.SS`` sub-module of a change id, or None for module-level or legacy ids."""
    parsed = _try_parse_change(change_id)
    return parsed.sub_module_id if parsed else None


def change_sort_key(change_id: str) -> tuple[int, int, int, int, str]:
    """Sort key: module, sub-module (module-level first), number, slug; legacy slugs last.

    Numbers compare numerically, so ``005-2_a`` < ``005-10_b`` < ``005-100_c``.
    """
    parsed = _try_parse_change(change_id)
    if parsed is None:
        return (1, 0, 0, 0, change_id)
    sub = -1 if parsed.sub_module_id is None else int(parsed.sub_module_id[4:])
    return (0, int(parsed.module_id), sub, parsed.number, parsed.name)


# --------------------------------------------------------------------------- archives


def archive_dir_name(day: date, change_id: str) -> str:
    """The archive directory name ``YYYY-MM-DD-<change id>`` (``day`` is the UTC date)."""
    return f"{day.isoformat()}-{validate_change_id(change_id)}"


def _is_change_dir_id(s: str) -> bool:
    return len(s) <= _MAX_CHANGE_ID and (
        _CANONICAL_CHANGE_RE.fullmatch(s) is not None or _LEGACY_CHANGE_RE.fullmatch(s) is not None
    )


def parse_archive_dir_name(name: str) -> tuple[date | None, str] | None:
    """Split an archive directory name into ``(date, change id)``; None if it names no change.

    ``2026-03-02-024-03_add-x`` → ``(2026-03-02, "024-03_add-x")``; the legacy
    ``2025-08-13-add-archive-command`` → ``(2025-08-13, "add-archive-command")``. A name
    without a (real) date prefix is the id itself when it is a hyphenated change id.
    """
    if not name or name.startswith("."):
        return None
    m = _ARCHIVE_DATE_RE.fullmatch(name)
    if m is not None:
        try:
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            day = None
        if day is not None and _is_change_dir_id(m.group(4)):
            return (day, m.group(4))
    if "-" in name and _is_change_dir_id(name):
        return (None, name)
    return None


# --------------------------------------------------------------------------- resolution


def _slug_text(change_id: str) -> str:
    _, sep, rest = change_id.partition("_")
    return _NON_ALNUM_RE.sub(" ", (rest if sep else change_id).lower()).strip()


def _tokens(text: str) -> list[str]:
    return _NON_ALNUM_RE.sub(" ", text.lower()).split()


def _pick(text: str, matches: list[str]) -> str | None:
    if not matches:
        return None
    if len(matches) == 1:
        return matches[0]
    ordered = sorted(set(matches), key=change_sort_key)
    raise ValidationError(
        f"Ambiguous change target {_show(text)}. Matches: {', '.join(ordered)}",
        kind="ambiguous_target",
        target=text[:_MAX_ECHO],
        matches=ordered,
    )


def _not_found(text: str) -> NotFound:
    return NotFound(f"change not found: {_show(text)}", kind="change_not_found")


def resolve_change_target(text: str, candidates: Iterable[str]) -> str:
    """Resolve a user-typed change target to one of ``candidates`` (Ito §1.10).

    Steps, first with matches wins: exact id; numeric selector (``4-7``, ``005.01-03``,
    ``5.1-3``, ``1 12``, optionally with a name prefix ``4-7_fix``); ``module:words``;
    module (``5``) or sub-module (``5.1``) number; raw prefix; slug words. Sub-module
    selectors only ever match sub-module changes (upstream bug D-1 fixed).

    Raises ``NotFound(kind="change_not_found")`` or
    ``ValidationError(kind="ambiguous_target", matches=[...])``.
    """
    pool = list(dict.fromkeys(candidates))
    target = text.strip() if isinstance(text, str) else ""
    if not pool or not target:
        raise _not_found(target)
    if target in pool:
        return target
    parsed = {c: _try_parse_change(c) for c in pool}

    found = _pick(target, _numeric_matches(target, parsed))
    if found is not None:
        return found

    if ":" in target:
        module_part, _, query = target.partition(":")
        if query.strip():
            found = _pick(target, _module_query_matches(module_part, query, parsed))
            if found is None:
                raise _not_found(target)
            return found

    if target.isascii() and target.isdigit():
        mod = f"{int(target):03d}" if int(target) <= 999 else None
        found = _pick(target, [c for c, p in parsed.items() if p and p.module_id == mod])
        if found is not None:
            return found
    elif _SUB_SELECTOR_RE.fullmatch(target):
        sub = _safe_module_ref(target)
        found = _pick(target, [c for c, p in parsed.items() if p and p.sub_module_id == sub])
        if found is not None:
            return found

    found = _pick(target, [c for c in pool if c.startswith(target)])
    if found is not None:
        return found
    words = _tokens(target)
    if words:
        found = _pick(target, [c for c in pool if all(w in _slug_text(c) for w in words)])
        if found is not None:
            return found
    raise _not_found(target)


def _numeric_matches(target: str, parsed: dict[str, ChangeId | None]) -> list[str]:
    head, sep, name = target.partition("_")
    m = _NUMERIC_SELECTOR_RE.fullmatch(head)
    if m is not None:
        module, sub = int(m.group(1)), m.group(2)
        if module > 999 or (sub is not None and int(sub) > 99):
            return []
        want_sub = None if sub is None else f"{module:03d}.{int(sub):02d}"
        number = int(m.group(3))
        prefix = name.lower() if sep else ""
        return [
            c
            for c, p in parsed.items()
            if p is not None
            and p.module_id == f"{module:03d}"
            and p.sub_module_id == want_sub
            and p.number == number
            and p.name.startswith(prefix)
        ]
    if "-" in head or "." in target or ":" in target:
        return []
    runs = _DIGITS_RE.findall(target)
    if len(runs) != 2 or int(runs[0]) > 999:
        return []
    module, number = int(runs[0]), int(runs[1])
    return [
        c
        for c, p in parsed.items()
        if p is not None
        and p.module_id == f"{module:03d}"
        and p.sub_module_id is None
        and p.number == number
    ]


def _safe_module_ref(text: str) -> str | None:
    try:
        return normalize_module_ref(text)
    except ValidationError:
        return None


def _module_query_matches(
    module_part: str, query: str, parsed: dict[str, ChangeId | None]
) -> list[str]:
    ref = _safe_module_ref(module_part)
    if ref is None:
        return []
    words = _tokens(query)
    out: list[str] = []
    for c, p in parsed.items():
        if p is None:
            continue
        in_scope = p.sub_module_id == ref if "." in ref else p.module_id == ref
        if in_scope and all(w in _slug_text(c) for w in words):
            out.append(c)
    return out
