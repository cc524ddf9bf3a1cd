"""``python -m loom`` is the ``loom`` command."""

from __future__ import annotations

from loom.cli import main

main()
