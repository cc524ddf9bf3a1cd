"""``__all__`` tells the truth (as httpx's tests/test_exported_members.py does).

For every module of the package: each name in ``__all__`` exists, once. For the public
packages an integrator imports from, ``__all__`` is exactly their public names.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import loom

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(loom.__path__, "loom.")
    if "migrations" not in info.name and info.name != "loom.__main__"  # it runs the CLI
)
PUBLIC_PACKAGES = ["loom", "loom.client", "loom.models", "loom.service", "loom.errors"]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists_once(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        pytest.skip(f"{name} has no __all__")
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not define: {missing}"


def test_every_module_declares_all() -> None:
    # Private modules too: their __all__ is what the package may re-export.
    without = [
        name
        for name in MODULES
        if not hasattr(importlib.import_module(name), "__all__") and not name.endswith("__main__")
    ]
    assert without == []


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_public_packages_export_every_public_name(name: str) -> None:
    """A public name of Loom's own (defined here, or re-exported from another loom module)
    that ``__all__`` forgets is a drift; names imported from libraries are not exports."""
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", name)).startswith("loom")
    }
    assert sorted(public - set(module.__all__)) == []
