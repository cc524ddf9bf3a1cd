"""Ito's strict id parsers (ito-domain.md §1.1-1.3), change ordering and archive names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from loom.domain.ids._common import (
    ARCHIVE_DATE_RE,
    CANONICAL_CHANGE_RE,
    CHANGE_LEFT_RE,
    DIGITS_RE,
    ID_NAME_RE,
    LEGACY_CHANGE_RE,
    MAX_CHANGE_ID,
    MAX_PARSE_BYTES,
    invalid,
    require_str,
    show,
)
from loom.domain.ids._validate import is_canonical_change_id, validate_change_id
from loom.errors import ValidationError

__all__ = [
    "ChangeId",
    "SubModuleId",
    "archive_dir_name",
    "change_sort_key",
    "module_of",
    "normalize_module_ref",
    "parse_archive_dir_name",
    "parse_change_id",
    "parse_module_id",
    "parse_sub_module_id",
    "sub_module_of",
    "try_parse_change",
]


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
    text = require_str(s, field).strip()
    if not text:
        raise invalid(field, f"{what} cannot be empty")
    if len(text.encode("utf-8")) > MAX_PARSE_BYTES:
        raise invalid(field, f"{what} is too long: {len(text.encode('utf-8'))} bytes (max 256)")
    return text


def _number(digits: str, limit: int | None, field: str, what: str) -> int:
    if DIGITS_RE.fullmatch(digits) is None:
        raise invalid(field, f"Invalid {what}: {show(digits)}")
    value = int(digits)
    if limit is not None and value > limit:
        raise invalid(field, f"{what} {value} exceeds maximum ({limit})")
    return value


def _id_name(name: str, field: str, what: str) -> str:
    if ID_NAME_RE.fullmatch(name) is None:
        raise invalid(
            field,
            f"Invalid {what} name {show(name)}: must start with a letter and contain only "
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
            raise invalid("module_id", f"Module ID missing name: {show(text)}")
        _id_name(name, "module_id", "module")
    return f"{value:03d}"


def parse_sub_module_id(s: str) -> SubModuleId:
    """Parse ``M.S`` or ``M.S_name`` (Ito §1.2): ``"7.3"`` → ``007.03``."""
    text = _prepare(s, "sub_module_id", "Sub-module ID")
    ident, sep, name = text.partition("_")
    module, dot, sub = ident.partition(".")
    if not dot:
        raise invalid("sub_module_id", f"Invalid sub-module ID {show(text)}: expected NNN.SS")
    m = _number(module, 999, "sub_module_id", "Module ID")
    n = _number(sub, 99, "sub_module_id", "Sub-module number")
    parsed_name: str | None = None
    if sep:
        if not name:
            raise invalid("sub_module_id", f"Sub-module ID missing name: {show(text)}")
        parsed_name = _id_name(name, "sub_module_id", "sub-module")
    return SubModuleId(
        id=f"{m:03d}.{n:02d}",
        parent_module_id=f"{m:03d}",
        sub_num=f"{n:02d}",
        name=parsed_name,
    )


def normalize_module_ref(s: str) -> str:
    """Normalise a module or sub-module reference (name suffix allowed) to ``NNN`` / ``NNN.SS``."""
    text = require_str(s, "module_id").strip()
    if "." in text.partition("_")[0]:
        return parse_sub_module_id(text).id
    return parse_module_id(text)


def _bad_change(text: str, hint: str = "expected NNN-NN_name or NNN.SS-NN_name") -> ValidationError:
    return invalid("change_id", f"Invalid change ID format: {show(text)}", hint=hint)


def parse_change_id(s: str) -> ChangeId:
    """Parse a change id strictly (Ito §1.3), normalising short forms.

    ``"4-7_Fix-Login"`` → ``004-07_fix-login``; ``"12.2-5_cache"`` → ``012.02-05_cache``.
    Loom is slightly stricter than Ito: the resulting canonical id must also satisfy
    :func:`validate_change_id` (no ``--``, no trailing ``-``, at most 128 characters).
    """
    text = _prepare(s, "change_id", "Change ID")
    field = "change_id"
    pieces = text.split("_")
    if "-" not in text and len(pieces) >= 3 and all(DIGITS_RE.fullmatch(p) for p in pieces[:2]):
        raise _bad_change(text, "use '-' between the module and change numbers: 007-02_name")
    left, sep, name = text.partition("_")
    m = CHANGE_LEFT_RE.fullmatch(left)
    if not sep and m is not None and m.group(2) is None:
        raise invalid(field, f"Change ID missing name: {show(text)}")
    if m is None or not sep:
        raise _bad_change(text)
    if not name:
        raise invalid(field, f"Change ID missing name: {show(text)}")
    module = _number(m.group(1), 999, field, "Module ID")
    sub_id = None
    if m.group(2) is not None:
        sub_id = f"{module:03d}.{_number(m.group(2), 99, field, 'Sub-module number'):02d}"
    number = int(m.group(3))
    slug = _id_name(name, field, "change")
    canonical = f"{sub_id or f'{module:03d}'}-{number:02d}_{slug}"
    if not is_canonical_change_id(canonical):
        raise invalid(
            field,
            f"Invalid change ID {show(text)}: the name must be kebab-case (no '--', no "
            "trailing '-') and the id at most 128 characters",
        )
    return ChangeId(f"{module:03d}", sub_id, number, slug, canonical)


def try_parse_change(change_id: str) -> ChangeId | None:
    """Parse leniently enough for every id :func:`validate_change_id` calls canonical."""
    m = CANONICAL_CHANGE_RE.fullmatch(change_id)
    if m is not None and len(change_id) <= MAX_CHANGE_ID:
        sub = m.group("s")
        mod = m.group("m")
        number = int(m.group("n"))
        sub_id = f"{mod}.{sub}" if sub is not None else None
        canonical = f"{sub_id or mod}-{number:02d}_{m.group('name')}"
        return ChangeId(mod, sub_id, number, m.group("name"), canonical)
    try:
        return parse_change_id(change_id)
    except ValidationError:
        return None


def module_of(change_id: str) -> str | None:
    """The ``NNN`` module of a canonical change id (sub-module changes included), else None."""
    parsed = try_parse_change(change_id)
    return parsed.module_id if parsed else None


def sub_module_of(change_id: str) -> str | None:
    """The ``NNN.SS`` sub-module of a change id, or None for module-level or legacy ids."""
    parsed = try_parse_change(change_id)
    return parsed.sub_module_id if parsed else None


def change_sort_key(change_id: str) -> tuple[int, int, int, int, str]:
    """Sort key: module, sub-module (module-level first), number, slug; legacy slugs last.

    Numbers compare numerically, so ``005-2_a`` < ``005-10_b`` < ``005-100_c``.
    """
    parsed = try_parse_change(change_id)
    if parsed is None:
        return (1, 0, 0, 0, change_id)
    sub = -1 if parsed.sub_module_id is None else int(parsed.sub_module_id[4:])
    return (0, int(parsed.module_id), sub, parsed.number, parsed.name)


def archive_dir_name(day: date, change_id: str) -> str:
    """The archive directory name ``YYYY-MM-DD-<change id>`` (``day`` is the UTC date)."""
    return f"{day.isoformat()}-{validate_change_id(change_id)}"


def _is_change_dir_id(s: str) -> bool:
    return len(s) <= MAX_CHANGE_ID and (
        CANONICAL_CHANGE_RE.fullmatch(s) is not None or LEGACY_CHANGE_RE.fullmatch(s) is not None
    )


def parse_archive_dir_name(name: str) -> tuple[date | None, str] | None:
    """Split an archive directory name into ``(date, change id)``; None if it names no change.

    ``2026-03-02-024-03_add-x`` → ``(2026-03-02, "024-03_add-x")``; the legacy
    ``2025-08-13-add-archive-command`` → ``(2025-08-13, "add-archive-command")``. A name
    without a (real) date prefix is the id itself when it is a hyphenated change id.
    """
    if not name or name.startswith("."):
        return None
    m = ARCHIVE_DATE_RE.fullmatch(name)
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
