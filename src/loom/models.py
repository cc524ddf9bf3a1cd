"""The bodies of the Loom HTTP API (API.md), as pydantic v2 models: one set for both sides.

``loom.client`` parses every response into these models, and the server's OpenAPI document
(``/api/v1/openapi.json``) describes its responses with the same models, so the client and
the document cannot drift (the server still renders its bodies directly, for speed; the
contract tests check that the bytes match these schemas).

Every model allows extra fields, so a newer server can add fields without breaking older
clients. ``model.model_dump(mode="json", by_alias=True)`` gives back the API's JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

__all__ = [
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
    "ErrorEnvelope",
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
    "NamedTokenCreated",
    "NamedTokenInfo",
    "NamedTokenList",
    "OverlapPair",
    "OverlapWarning",
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
    "SpecPair",
    "SpecRevision",
    "SpecSummary",
    "SubModuleSummary",
    "TaskItem",
    "TaskMutationResult",
    "TasksInitResult",
    "TasksView",
    "WaveInfo",
]

_T = TypeVar("_T")

# A change's spec delta on the wire: ``["capability", "markdown"]``. Documented as a
# two-string array (not JSON Schema's ``prefixItems``, which several OpenAPI tools, among
# them schemathesis' response validation, do not handle).
SpecPair = Annotated[
    tuple[str, str],
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}),
]


class _Model(BaseModel):
    """Base of every API model: unknown fields are kept, names may be given by alias."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    def to_json(self) -> dict[str, Any]:
        """The model as JSON-ready data, in the API's field names."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class Page(Generic[_T]):
    """One page of a paginated listing; ``next_cursor`` is None on the last page."""

    items: list[_T] = field(default_factory=list)
    next_cursor: str | None = None


# --- errors -------------------------------------------------------------------------------


class ErrorEnvelope(_Model):
    """The body of every non-2xx response (API.md §0); details vary by ``kind``."""

    error: str = Field(description="human readable message")
    code: str = Field(description="the coarse class (bad_request, conflict, ...)")
    kind: str = Field(description="the precise machine reason (lease_conflict, invalid_id, ...)")


# --- service routes ---------------------------------------------------------------------


class Health(_Model):
    """``GET /health``."""

    status: str
    version: str | None = None


class Ready(_Model):
    """``GET /ready`` (also returned, with ``status="not_ready"``, for its 503)."""

    status: str
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ready"


class AuthInfo(_Model):
    """``GET /auth/verify``."""

    valid: bool
    scope: str
    org: str | None = None
    repo: str | None = None
    project_id: str | None = None
    # Named tokens only: the token's name and its access (read, write, admin).
    token_name: str | None = None
    access: str | None = None


class NamedTokenInfo(_Model):
    """A named token as ``GET /api/v1/admin/tokens`` lists it (never its secret)."""

    name: str
    scope: str
    target: str  # ORG/REPO, ORG/* or * (the whole server)
    created: str
    expires: str | None = None
    last_used: str | None = None
    revoked: str | None = None
    state: str  # active, expired or revoked


class NamedTokenCreated(NamedTokenInfo):
    """``POST /api/v1/admin/tokens``: the token, with its secret (shown this once)."""

    token: str


class NamedTokenList(_Model):
    tokens: list[NamedTokenInfo]


# --- changes ------------------------------------------------------------------------------


class LeaseInfo(_Model):
    """The short lease view embedded in change listings and details."""

    holder: str
    expires_at: datetime
    fencing_token: int | None = None
    acquired_at: datetime | None = None


class Progress(_Model):
    """Task counts of one change."""

    total: int = 0
    complete: int = 0
    shelved: int = 0
    in_progress: int = 0
    pending: int = 0
    remaining: int = 0


class ChangeSummary(_Model):
    """One item of ``GET /changes``."""

    id: str
    module_id: str | None = None
    sub_module_id: str | None = None
    completed_tasks: int = 0
    shelved_tasks: int = 0
    in_progress_tasks: int = 0
    pending_tasks: int = 0
    total_tasks: int = 0
    has_proposal: bool = False
    has_design: bool = False
    has_specs: bool = False
    has_tasks: bool = False
    work_status: str = "draft"
    last_modified: datetime | None = None
    revision: str | None = None
    archived_at: datetime | None = None
    lease: LeaseInfo | None = None


class SpecContent(_Model):
    """A spec delta inside a change detail."""

    name: str
    content: str


class ChangeDetail(_Model):
    """``GET /changes/{id}``."""

    id: str
    module_id: str | None = None
    sub_module_id: str | None = None
    proposal: str | None = None
    design: str | None = None
    specs: list[SpecContent] = Field(default_factory=list)
    progress: Progress = Field(default_factory=Progress)
    last_modified: datetime | None = None
    revision: str | None = None
    work_status: str | None = None
    archived_at: datetime | None = None
    lease: LeaseInfo | None = None


class ArtifactBundle(_Model):
    """``GET /changes/{id}/sync``: every artifact of a change and its revision."""

    change_id: str
    proposal: str | None = None
    design: str | None = None
    tasks: str | None = None
    specs: list[SpecPair] = Field(default_factory=list)
    revision: str = ""
    # Per capability: the spec revision the delta was written against / the current one.
    spec_bases: dict[str, int] = Field(default_factory=dict)
    spec_revisions: dict[str, int] = Field(default_factory=dict)

    @field_validator("revision", mode="before")
    @classmethod
    def _revision_as_text(cls, value: Any) -> Any:
        return "" if value is None else str(value)


class PushResult(_Model):
    """``POST /changes/{id}/sync``."""

    change_id: str
    new_revision: str

    @property
    def overlaps(self) -> list[dict[str, Any]]:
        """Strong overlaps this push created, ``[{"change_id", "requirements": [...]}]`` (a
        warning; the server sends ``overlaps`` only when there are some)."""
        return list((self.model_extra or {}).get("overlaps") or [])

    @field_validator("new_revision", mode="before")
    @classmethod
    def _revision_as_text(cls, value: Any) -> Any:
        return str(value)


class ArchiveResult(_Model):
    """``POST /changes/{id}/archive``."""

    change_id: str
    archived_at: datetime


# --- tasks --------------------------------------------------------------------------------


class TaskItem(_Model):
    """One task of a change's ``tasks.md``."""

    id: str
    name: str
    wave: int | None = None
    status: str = "pending"
    updated_at: str | None = None
    dependencies: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    action: str = ""
    verify: str | None = None
    done_when: str | None = None
    requirements: list[str] = Field(default_factory=list)
    kind: str = "normal"
    header_line_index: int | None = None


class WaveInfo(_Model):
    """A wave of an enhanced-format task list and the waves it depends on."""

    wave: int
    depends_on: list[Any] = Field(default_factory=list)


class Diagnostic(_Model):
    """A problem found while parsing ``tasks.md``."""

    level: str
    message: str
    task_id: str | None = None
    line: int | None = None


class TasksView(_Model):
    """``GET /changes/{id}/tasks``."""

    change_id: str
    format: str = "checkbox"
    tasks: list[TaskItem] = Field(default_factory=list)
    waves: list[WaveInfo] = Field(default_factory=list)
    progress: Progress = Field(default_factory=Progress)
    ready: list[str] = Field(default_factory=list)
    blocked: dict[str, list[str]] = Field(default_factory=dict)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    revision: str | None = None


class RawTasks(_Model):
    """``GET /changes/{id}/tasks/raw``."""

    change_id: str
    content: str | None = None


class TasksInitResult(_Model):
    """``POST /changes/{id}/tasks/init``."""

    change_id: str
    existed: bool
    revision: str | None = None


class TaskMutationResult(_Model):
    """Result of start, complete, shelve, unshelve and add."""

    change_id: str
    task: TaskItem
    revision: str | None = None


# --- modules and specs ------------------------------------------------------------------


class SubModuleSummary(_Model):
    """A sub-module inside a module listing or detail."""

    id: str
    name: str
    change_count: int = 0
    description: str | None = None


class ModuleSummary(_Model):
    """One item of ``GET /modules``."""

    id: str
    name: str
    change_count: int = 0
    sub_modules: list[SubModuleSummary] = Field(default_factory=list)


class ModuleDetail(_Model):
    """``GET /modules/{id}`` and ``PUT /modules/{id}``."""

    id: str
    name: str
    description: str | None = None
    markdown: str | None = None
    changes: list[str] = Field(default_factory=list)
    sub_modules: list[SubModuleSummary] = Field(default_factory=list)


class SpecSummary(_Model):
    """One item of ``GET /specs``."""

    id: str
    path: str | None = None
    last_modified: datetime | None = None


class SpecDocument(_Model):
    """``GET /specs/{id}`` and ``PUT /specs/{id}``."""

    id: str
    path: str | None = None
    markdown: str
    last_modified: datetime | None = None
    revision: int | None = None
    change_id: str | None = None  # ?revision=N: the archived change that produced it


# --- import / export ----------------------------------------------------------------------


class ImportModule(_Model):
    """A module or sub-module in an import body."""

    id: str
    name: str
    markdown: str | None = None


class ImportSpec(_Model):
    """A capability spec in an import body."""

    id: str
    markdown: str


class ImportChange(_Model):
    """A change in an import body; ``archived_at`` None means active."""

    id: str
    proposal: str | None = None
    design: str | None = None
    tasks: str | None = None
    specs: list[SpecPair] = Field(default_factory=list)
    metadata: str | None = None
    archived_at: datetime | None = None


class ProjectSnapshot(_Model):
    """The whole state of a project: the body of ``POST /import`` and of ``GET /export``."""

    modules: list[ImportModule] = Field(default_factory=list)
    specs: list[ImportSpec] = Field(default_factory=list)
    changes: list[ImportChange] = Field(default_factory=list)


class ImportConflict(_Model):
    """An item that ``create-only`` import left alone because it differs."""

    kind: str
    id: str
    reason: str = ""


class ImportResult(_Model):
    """``POST /import``; also the sum over several chunked requests."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: list[ImportConflict] = Field(default_factory=list)

    def __add__(self, other: ImportResult) -> ImportResult:
        return ImportResult(
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            conflicts=[*self.conflicts, *other.conflicts],
        )


# --- leases ---------------------------------------------------------------------------------


class ClaimResult(_Model):
    """A lease: result of claim, heartbeat, get lease, and allocate."""

    change_id: str
    holder: str
    acquired_at: datetime | None = None
    expires_at: datetime
    ttl_seconds: int | None = None
    fencing_token: int

    @property
    def overlaps(self) -> list[str]:
        """Allocation only: the busy changes this one shares a requirement with (the server
        sends ``overlaps`` only when there are some)."""
        return [str(c) for c in (self.model_extra or {}).get("overlaps") or []]


class ReleaseResult(_Model):
    """``POST /changes/{id}/release``."""

    change_id: str
    released: bool


class AllocateResult(_Model):
    """``POST /allocate``: the lease taken, or None when no change is available."""

    claim: ClaimResult | None = None


# --- events ---------------------------------------------------------------------------------


class AuditEvent(_Model):
    """One audit event (``ito-server.md`` §6.1); ``seq`` is set on events read back."""

    v: int = 1
    ts: str
    entity: str
    entity_id: str
    scope: str | None = None
    op: str
    from_: Any = Field(default=None, alias="from")
    to: Any = None
    actor: str
    by: str
    meta: Any = None
    count: int | None = None
    ctx: dict[str, Any] = Field(default_factory=dict)
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as sent or stored: only the fields it actually has."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class IngestResult(_Model):
    """``POST /events``."""

    accepted: int
    duplicates: int


# --- overlaps and spec history (docs/overlaps.md) ------------------------------------------


class SharedRequirement(_Model):
    """A requirement two changes touch: ``ops`` this change's operations, ``other_ops`` the
    other's (``a_ops``/``b_ops`` in a project-wide pair)."""

    capability: str
    requirement: str
    ops: list[str] = Field(default_factory=list)
    other_ops: list[str] = Field(default_factory=list)
    a_ops: list[str] = Field(default_factory=list)
    b_ops: list[str] = Field(default_factory=list)


class ChangeOverlap(_Model):
    """One change overlapping the asked one."""

    change_id: str
    strength: str  # strong | weak
    requirements: list[SharedRequirement] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    work_status: str | None = None
    lease: dict[str, str] | None = None


class ChangeOverlaps(_Model):
    """``GET /changes/{id}/overlaps``."""

    change_id: str
    overlaps: list[ChangeOverlap] = Field(default_factory=list)


class OverlapPair(_Model):
    """One item of ``GET /overlaps``: changes ``a`` and ``b`` in canonical order."""

    a: str
    b: str
    strength: str
    requirements: list[SharedRequirement] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    a_status: str | None = None
    b_status: str | None = None
    a_lease: dict[str, str] | None = None
    b_lease: dict[str, str] | None = None


class ProjectOverlaps(_Model):
    """``GET /overlaps``."""

    overlaps: list[OverlapPair] = Field(default_factory=list)


class OverlapWarning(_Model):
    """A strong overlap a push created (``PushResult.overlaps``)."""

    change_id: str
    requirements: list[dict[str, str]] = Field(default_factory=list)


class SpecRevision(_Model):
    revision: int
    change_id: str | None = None
    source: str
    at: datetime
    deleted: bool = False


class SpecHistory(_Model):
    """``GET /specs/{id}/history``: oldest first."""

    id: str
    revisions: list[SpecRevision] = Field(default_factory=list)
