"""The values the ``.ito/`` tree adapter reads and writes."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Final

__all__ = ["ARTIFACT_FILES", "ChangeFiles", "ItoTree", "ModuleFiles", "SpecFiles"]

#: Files of a change directory that are artifacts (besides ``specs/<cap>/spec.md``).
ARTIFACT_FILES: Final = ("proposal.md", "design.md", "tasks.md", ".ito.yaml")


@dataclass(frozen=True, slots=True)
class ChangeFiles:
    """The artifacts of one change, exactly as stored (text, line endings kept).

    ``specs`` holds ``(capability, markdown)`` pairs sorted by capability; ``metadata`` is
    the ``.ito.yaml`` text; ``archived_on`` is None for an active change; ``dir_name`` is
    the directory name under ``changes/`` or ``changes/archive/`` (``""`` when unknown).
    """

    id: str
    proposal: str | None = None
    design: str | None = None
    tasks: str | None = None
    specs: tuple[tuple[str, str], ...] = ()
    metadata: str | None = None
    archived_on: datetime.date | None = None
    dir_name: str = ""

    @property
    def archived(self) -> bool:
        return self.archived_on is not None


@dataclass(frozen=True, slots=True)
class ModuleFiles:
    """A module (``id`` ``NNN``) or sub-module (``NNN.SS``) and its ``module.md``.

    ``dir_name`` is the directory relative to ``modules/``: ``024_ito-backend`` for a module,
    ``019_templates/sub/01_modules`` for a sub-module (``""`` when unknown).
    """

    id: str
    name: str
    markdown: str
    dir_name: str = ""


@dataclass(frozen=True, slots=True)
class SpecFiles:
    """A truth spec ``specs/<id>/spec.md``."""

    id: str
    markdown: str


@dataclass(frozen=True, slots=True)
class ItoTree:
    """Everything Loom reads from an ``.ito/`` directory.

    ``skipped`` lists, as posix paths relative to the ``.ito`` directory and sorted, every
    file under ``changes/``, ``specs/`` and ``modules/`` that was not read: non-artifact files
    (``README.md``, ``demos/…``), non-UTF-8 files, symlinks, and the files of directories that
    name no change, spec or module (or repeat one).
    """

    changes: tuple[ChangeFiles, ...] = ()
    modules: tuple[ModuleFiles, ...] = ()
    specs: tuple[SpecFiles, ...] = ()
    skipped: tuple[str, ...] = ()
