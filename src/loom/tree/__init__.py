"""The ``.ito/`` directory adapter: read and write changes, modules and truth specs.

Filesystem I/O lives here, never in :mod:`loom.domain`. Reading keeps every artifact's text
exactly (line endings included); writing an unmodified tree back reproduces each artifact
file byte for byte. Writes are atomic per file, validate every id before it becomes a path,
and never follow a symlink.
"""

from __future__ import annotations

from loom.tree._model import ARTIFACT_FILES, ChangeFiles, ItoTree, ModuleFiles, SpecFiles
from loom.tree._read import read_change, read_tree
from loom.tree._write import write_change, write_module, write_spec, write_tree

__all__ = [
    "ARTIFACT_FILES",
    "ChangeFiles",
    "ItoTree",
    "ModuleFiles",
    "SpecFiles",
    "read_change",
    "read_tree",
    "write_change",
    "write_module",
    "write_spec",
    "write_tree",
]
