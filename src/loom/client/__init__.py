"""``loom.client``: the typed Python client of the Loom coordination server.

The :class:`Client` covers every route of the HTTP API; :func:`resolve_config` finds the
server, token, project and holder the way the ``loom`` command does; the sync helpers keep
a local ``.ito/`` tree in step with the server.

The names are loaded on first use (PEP 562 ``__getattr__``), so a program that needs the
:class:`Client` does not pay for the sync helpers, the spec rebase or the pydantic models
of routes it never calls: the ``loom`` command starts faster for it.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from loom.client._base import segment_problem
    from loom.client._client import Client
    from loom.client._config import (
        ClientConfig,
        Resolved,
        resolve_config,
        url_problem,
    )
    from loom.client._errors import (
        ConnectionFailed,
        InvalidArgument,
    )
    from loom.client._forward import (
        DEFAULT_EVENT_LOG,
        ForwardResult,
        forward_events,
    )
    from loom.client._keepalive import (
        LeaseKeeper,
        renew_interval,
    )
    from loom.client._rebase import (
        RebasedSpec,
        RebaseOutcome,
        rebase_change,
    )
    from loom.client._retry import RetryPolicy
    from loom.client._state import (
        REVISION_FILE,
        LeaseStore,
        state_dir,
    )
    from loom.client._sync import (
        LocalCopy,
        archive_change,
        local_copy,
        pull_change,
        push_change,
        refresh_local_tasks,
    )
    from loom.client._transfer import (
        export_tree,
        import_tree,
    )
    from loom.errors import (
        ArchivedConflict,
        Conflict,
        Forbidden,
        LeaseConflict,
        LoomError,
        NotFound,
        PreconditionRequired,
        RevisionConflict,
        StaleSpecBase,
        Unauthorized,
        Unavailable,
        ValidationError,
    )
    from loom.models import (
        AllocateResult,
        ArchiveResult,
        ArtifactBundle,
        AuditEvent,
        AuthInfo,
        ChangeDetail,
        ChangeOverlap,
        ChangeOverlaps,
        ChangeSummary,
        ClaimResult,
        Diagnostic,
        Health,
        ImportChange,
        ImportConflict,
        ImportModule,
        ImportResult,
        ImportSpec,
        IngestResult,
        LeaseInfo,
        ModuleDetail,
        ModuleSummary,
        OverlapPair,
        Page,
        Progress,
        ProjectOverlaps,
        ProjectSnapshot,
        PushResult,
        RawTasks,
        Ready,
        ReleaseResult,
        SharedRequirement,
        SpecContent,
        SpecDocument,
        SpecHistory,
        SpecRevision,
        SpecSummary,
        SubModuleSummary,
        TaskItem,
        TaskMutationResult,
        TasksInitResult,
        TasksView,
        WaveInfo,
    )

__all__ = [
    "DEFAULT_EVENT_LOG",
    "REVISION_FILE",
    "AllocateResult",
    "ArchiveResult",
    "ArchivedConflict",
    "ArtifactBundle",
    "AuditEvent",
    "AuthInfo",
    "ChangeDetail",
    "ChangeOverlap",
    "ChangeOverlaps",
    "ChangeSummary",
    "ClaimResult",
    "Client",
    "ClientConfig",
    "Conflict",
    "ConnectionFailed",
    "Diagnostic",
    "Forbidden",
    "ForwardResult",
    "Health",
    "ImportChange",
    "ImportConflict",
    "ImportModule",
    "ImportResult",
    "ImportSpec",
    "IngestResult",
    "InvalidArgument",
    "LeaseConflict",
    "LeaseInfo",
    "LeaseKeeper",
    "LeaseStore",
    "LocalCopy",
    "LoomError",
    "ModuleDetail",
    "ModuleSummary",
    "NotFound",
    "OverlapPair",
    "Page",
    "PreconditionRequired",
    "Progress",
    "ProjectOverlaps",
    "ProjectSnapshot",
    "PushResult",
    "RawTasks",
    "Ready",
    "RebaseOutcome",
    "RebasedSpec",
    "ReleaseResult",
    "Resolved",
    "RetryPolicy",
    "RevisionConflict",
    "SharedRequirement",
    "SpecContent",
    "SpecDocument",
    "SpecHistory",
    "SpecRevision",
    "SpecSummary",
    "StaleSpecBase",
    "SubModuleSummary",
    "TaskItem",
    "TaskMutationResult",
    "TasksInitResult",
    "TasksView",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "WaveInfo",
    "archive_change",
    "export_tree",
    "forward_events",
    "import_tree",
    "local_copy",
    "pull_change",
    "push_change",
    "rebase_change",
    "refresh_local_tasks",
    "renew_interval",
    "resolve_config",
    "segment_problem",
    "state_dir",
    "url_problem",
]

# Where each public name lives: imported from there on first use.
_LAZY: dict[str, tuple[str, ...]] = {
    "loom.client._base": ("segment_problem",),
    "loom.client._client": ("Client",),
    "loom.client._config": (
        "ClientConfig",
        "Resolved",
        "resolve_config",
        "url_problem",
    ),
    "loom.client._errors": (
        "ConnectionFailed",
        "InvalidArgument",
    ),
    "loom.client._forward": (
        "DEFAULT_EVENT_LOG",
        "ForwardResult",
        "forward_events",
    ),
    "loom.client._keepalive": (
        "LeaseKeeper",
        "renew_interval",
    ),
    "loom.client._rebase": (
        "RebasedSpec",
        "RebaseOutcome",
        "rebase_change",
    ),
    "loom.client._retry": ("RetryPolicy",),
    "loom.client._state": (
        "REVISION_FILE",
        "LeaseStore",
        "state_dir",
    ),
    "loom.client._sync": (
        "LocalCopy",
        "archive_change",
        "local_copy",
        "pull_change",
        "push_change",
        "refresh_local_tasks",
    ),
    "loom.client._transfer": (
        "export_tree",
        "import_tree",
    ),
    "loom.errors": (
        "ArchivedConflict",
        "Conflict",
        "Forbidden",
        "LeaseConflict",
        "LoomError",
        "NotFound",
        "PreconditionRequired",
        "RevisionConflict",
        "StaleSpecBase",
        "Unauthorized",
        "Unavailable",
        "ValidationError",
    ),
    "loom.models": (
        "AllocateResult",
        "ArchiveResult",
        "ArtifactBundle",
        "AuditEvent",
        "AuthInfo",
        "ChangeDetail",
        "ChangeOverlap",
        "ChangeOverlaps",
        "ChangeSummary",
        "ClaimResult",
        "Diagnostic",
        "Health",
        "ImportChange",
        "ImportConflict",
        "ImportModule",
        "ImportResult",
        "ImportSpec",
        "IngestResult",
        "LeaseInfo",
        "ModuleDetail",
        "ModuleSummary",
        "OverlapPair",
        "Page",
        "Progress",
        "ProjectOverlaps",
        "ProjectSnapshot",
        "PushResult",
        "RawTasks",
        "Ready",
        "ReleaseResult",
        "SharedRequirement",
        "SpecContent",
        "SpecDocument",
        "SpecHistory",
        "SpecRevision",
        "SpecSummary",
        "SubModuleSummary",
        "TaskItem",
        "TaskMutationResult",
        "TasksInitResult",
        "TasksView",
        "WaveInfo",
    ),
}
_OWNER = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> object:
    module = _OWNER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
