"""Change target resolution (ito-domain.md §1.10, with upstream bug D-1 fixed)."""

from __future__ import annotations

from collections.abc import Iterable

from loom.domain.ids._common import (
    CHANGE_LEFT_RE,
    DIGITS_RE,
    MAX_ECHO,
    NON_ALNUM_RE,
    SUB_SELECTOR_RE,
    show,
)
from loom.domain.ids._parse import (
    ChangeId,
    change_sort_key,
    normalize_module_ref,
    try_parse_change,
)
from loom.errors import NotFound, ValidationError

__all__ = ["resolve_change_target"]


def _slug_text(change_id: str) -> str:
    _, sep, rest = change_id.partition("_")
    return NON_ALNUM_RE.sub(" ", (rest if sep else change_id).lower()).strip()


def _tokens(text: str) -> list[str]:
    return NON_ALNUM_RE.sub(" ", text.lower()).split()


def _pick(text: str, matches: list[str]) -> str | None:
    if not matches:
        return None
    if len(matches) == 1:
        return matches[0]
    ordered = sorted(set(matches), key=change_sort_key)
    raise ValidationError(
        f"Ambiguous change target {show(text)}. Matches: {', '.join(ordered)}",
        kind="ambiguous_target",
        target=text[:MAX_ECHO],
        matches=ordered,
    )


def _not_found(text: str) -> NotFound:
    return NotFound(f"change not found: {show(text)}", kind="change_not_found")


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
    parsed = {c: try_parse_change(c) for c in pool}

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
    elif SUB_SELECTOR_RE.fullmatch(target):
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
    m = CHANGE_LEFT_RE.fullmatch(head)
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
    runs = DIGITS_RE.findall(target)
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
