"""``loom rebase``: bring a local change's spec deltas onto the current specs.

An archive is refused (409 ``stale_spec_base``) when a requirement the change touches was
changed by another archive since the spec revision the delta was written against. Rebasing
writes, next to each affected delta (``.ito/changes/<id>/specs/<cap>/``):

- ``spec.md.base`` — the spec as it was at the delta's base revision;
- ``spec.md.current`` — the spec as it is now;
- ``REBASE.md`` — for each requirement that changed in between: the base text, the current
  text and this change's text, to merge by hand (or by an agent) into ``spec.md``.

and moves the local base (``.backend-spec-bases``) to the current revisions, so the next
``loom push`` of the merged delta tells the server it was written against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loom.client._client import Client
from loom.client._state import read_spec_bases, write_spec_bases
from loom.client._sync import change_dir, read_local_bundle
from loom.domain.specs import StaleRequirement, stale_requirements
from loom.errors import NotFound

__all__ = ["RebaseOutcome", "RebasedSpec", "rebase_change"]


@dataclass(frozen=True)
class RebasedSpec:
    """One capability whose base moved: from/to revision, the stale requirements, files."""

    capability: str
    base_revision: int
    current_revision: int
    stale: tuple[str, ...]
    files: tuple[Path, ...]


@dataclass(frozen=True)
class RebaseOutcome:
    change_id: str
    specs: tuple[RebasedSpec, ...]

    @property
    def stale(self) -> int:
        return sum(len(s.stale) for s in self.specs)


def _text(client: Client, capability: str, revision: int | None) -> str | None:
    if revision is not None and revision <= 0:
        return None
    try:
        return client.get_spec(capability, revision=revision).markdown
    except NotFound:
        return None  # deleted (at that revision, or now)


def _current_revision(client: Client, capability: str, known: dict[str, int]) -> int:
    if capability in known:
        return known[capability]
    try:
        revisions = client.spec_history(capability).revisions
    except NotFound:
        return 0
    return revisions[-1].revision if revisions else 0


def _block(title: str, text: str | None) -> list[str]:
    return [f"### {title}", "", "(absent)" if text is None else text, ""]


def _report(change_id: str, capability: str, stale: list[StaleRequirement]) -> str:
    lines = [
        f"# Rebase of {change_id}: {capability}",
        "",
        "Merge each requirement below into `spec.md` (this change's delta), then "
        f"`loom push {change_id}`. The whole specs are in `spec.md.base` and "
        "`spec.md.current`.",
        "",
    ]
    if not stale:
        lines += ["No requirement this delta touches changed; nothing to merge.", ""]
    for item in stale:
        lines += [f"## {item.op} `{item.requirement}`", ""]
        lines += _block("Base (what this change was written against)", item.base)
        lines += _block("Current (after the other archives)", item.current)
        lines += _block("This change", item.theirs)
    return "\n".join(lines)


def rebase_change(client: Client, change_id: str, ito_dir: Path) -> RebaseOutcome:
    """Write the base/current/this-change texts next to every delta whose spec moved on
    since its base, and record the current revisions as the local base."""
    local = read_local_bundle(ito_dir, change_id)
    server = client.pull(change_id)
    path = change_dir(ito_dir, local.change_id)
    bases = {**server.spec_bases, **read_spec_bases(path)}
    known = dict(server.spec_revisions)
    rebased: list[RebasedSpec] = []
    for capability, delta in local.specs:
        current = _current_revision(client, capability, known)
        base = bases.get(capability, current)
        if base >= current:
            continue
        base_text = _text(client, capability, base)
        current_text = _text(client, capability, None)
        stale = stale_requirements(capability, delta, base_text, current_text)
        folder = path / "specs" / capability
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for name, text in (("spec.md.base", base_text), ("spec.md.current", current_text)):
            target = folder / name
            target.write_text(text or "", encoding="utf-8")
            files.append(target)
        report = folder / "REBASE.md"
        report.write_text(_report(local.change_id, capability, stale), encoding="utf-8")
        files.append(report)
        bases[capability] = current
        rebased.append(
            RebasedSpec(
                capability, base, current, tuple(s.requirement for s in stale), tuple(files)
            )
        )
    write_spec_bases(path, {cap: bases[cap] for cap, _ in local.specs if cap in bases})
    return RebaseOutcome(local.change_id, tuple(rebased))
