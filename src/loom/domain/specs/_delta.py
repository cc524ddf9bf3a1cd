"""Delta spec parsing (Ito §5.4)."""

from __future__ import annotations

from loom.domain.specs._markdown import (
    ITO_END_MARKER,
    ITO_START_MARKER,
    REQUIREMENT_PREFIX,
    DeltaOp,
    DeltaOperation,
    Fail,
    Line,
    Rename,
    Requirement,
    SpecDelta,
    check_headings,
    document_prefix,
    is_level_two,
    is_managed,
    join_lines,
    looks_like_operation,
    requirement_name,
    scan,
    section_kind,
)

__all__ = ["parse_delta", "validate_delta"]


def parse_delta(delta: str, capability: str) -> SpecDelta:
    """Parse a delta spec, enforcing every structural rule of Ito §5.4.

    An empty result (no blocks and no renames) is allowed here; :func:`validate_delta` and
    :func:`apply_delta` reject it.
    """
    fail = Fail(capability, "delta")
    lines = scan(delta)
    check_headings(lines, fail, "delta")
    return _DeltaParser(lines, fail).parse()


class _DeltaParser:
    def __init__(self, lines: list[Line], fail: Fail) -> None:
        self.lines = lines
        self.fail = fail
        self.kind: DeltaOp | None = None
        self.items = 0
        self.section_line = 0
        self.pending_from: tuple[str, int] | None = None
        self.operations: list[DeltaOperation] = []
        self.renames: list[Rename] = []

    def parse(self) -> SpecDelta:
        lines = self.lines
        i = 0
        while i < len(lines):
            line = lines[i]
            if is_level_two(line):
                self._close_section()
                self.kind = section_kind(line)
                self.section_line = line.number
                if self.kind is None and looks_like_operation(line.stripped):
                    self.fail(
                        f"unrecognized requirement operation heading '{line.stripped}'",
                        "unrecognized_heading",
                        line.number,
                    )
                i += 1
                continue
            name = requirement_name(line)
            if name is not None:
                i = self._block(i, name)
                continue
            if self.kind is DeltaOp.RENAMED:
                self._rename_line(line)
            i += 1
        self._close_section()
        return SpecDelta(
            operations=tuple(self.operations),
            renames=tuple(self.renames),
            prefix=document_prefix(lines),
            managed=is_managed(lines),
        )

    def _block(self, start: int, name: str) -> int:
        line = self.lines[start]
        if self.kind is None:
            self.fail(
                f"requirement '{name}' is outside a delta section",
                "outside_section",
                line.number,
                requirement=name,
            )
        if self.kind is DeltaOp.RENAMED:
            self.fail(
                "RENAMED Requirements must use FROM:/TO: pairs",
                "rename_block",
                line.number,
                requirement=name,
            )
        end = start + 1
        while end < len(self.lines) and not _ends_delta_block(self.lines[end]):
            end += 1
        requirement = Requirement(name, join_lines(self.lines[start:end]), line.number)
        self.operations.append(DeltaOperation(self.kind, requirement))
        self.items += 1
        return end

    def _rename_line(self, line: Line) -> None:
        normalized = line.stripped.lstrip("-").strip().strip("`")
        if normalized.startswith("FROM:"):
            value = _clean_rename(normalized.removeprefix("FROM:"))
            if not value:
                self.fail(
                    "RENAMED Requirements contains an empty FROM:", "rename_empty_from", line.number
                )
            if self.pending_from is not None:
                self.fail(
                    "RENAMED Requirements contains consecutive FROM: entries",
                    "rename_consecutive_from",
                    line.number,
                )
            self.pending_from = (value, line.number)
        elif normalized.startswith("TO:"):
            value = _clean_rename(normalized.removeprefix("TO:"))
            if not value:
                self.fail(
                    "RENAMED Requirements contains an empty TO:", "rename_empty_to", line.number
                )
            if self.pending_from is None:
                self.fail(
                    "RENAMED Requirements contains TO: without FROM:",
                    "rename_to_without_from",
                    line.number,
                )
            from_name, from_line = self.pending_from
            self.renames.append(Rename(from_name, value, from_line))
            self.pending_from = None
            self.items += 1
        elif normalized and normalized not in (ITO_START_MARKER, ITO_END_MARKER):
            self.fail(
                f"RENAMED Requirements contains malformed entry '{normalized}'",
                "rename_malformed",
                line.number,
            )

    def _close_section(self) -> None:
        kind = self.kind
        if kind is None:
            return
        if kind is DeltaOp.RENAMED:
            if self.pending_from is not None:
                self.fail(
                    "RENAMED Requirements contains FROM: without TO:",
                    "rename_from_without_to",
                    self.pending_from[1],
                )
            if self.items == 0:
                self.fail(
                    "RENAMED Requirements section contains no complete FROM:/TO: pair",
                    "rename_no_pair",
                    self.section_line,
                )
        elif self.items == 0:
            self.fail(
                f"{kind.value} Requirements section contains no valid requirement payload",
                "empty_section",
                self.section_line,
                section=kind.value,
            )
        self.kind = None
        self.items = 0
        self.pending_from = None


def _ends_delta_block(line: Line) -> bool:
    key = line.key
    return line.requirement is not None or key.startswith("## ") or key == ITO_END_MARKER


def _clean_rename(value: str) -> str:
    return value.strip().strip("`").removeprefix(REQUIREMENT_PREFIX).strip()


def validate_delta(delta: str, capability: str) -> SpecDelta:
    """Check a delta on its own (no base): structure, and at least one operation."""
    parsed = parse_delta(delta, capability)
    if not parsed.operations and not parsed.renames:
        Fail(capability, "delta")("delta contains no valid requirement operations", "no_operations")
    return parsed
