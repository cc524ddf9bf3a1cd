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

from loom.domain.ids._parse import (
    ChangeId,
    SubModuleId,
    archive_dir_name,
    change_sort_key,
    module_of,
    normalize_module_ref,
    parse_archive_dir_name,
    parse_change_id,
    parse_module_id,
    parse_sub_module_id,
    sub_module_of,
)
from loom.domain.ids._resolve import resolve_change_target
from loom.domain.ids._validate import (
    is_canonical_change_id,
    validate_capability,
    validate_change_id,
    validate_holder,
    validate_module_id,
    validate_org,
    validate_repo,
    validate_spec_id,
    validate_task_id,
)

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
