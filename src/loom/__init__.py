"""Loom: a coordination server, client library and CLI for agents working on Ito changes."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
