"""Request bodies. Unknown fields are ignored (Ito compatibility)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from loom.api.contract import HOLDER, ID_GRAMMARS, MODULE_FILTER, SPEC_PAIR_IN

__all__ = [
    "PLAIN_TEXT",
    "AddTaskBody",
    "AllocateBody",
    "ClaimBody",
    "CompleteBody",
    "EventsBody",
    "ImportBody",
    "ImportChangeIn",
    "ImportModuleIn",
    "ImportSpecIn",
    "ModulePut",
    "ReleaseBody",
    "ShelveBody",
    "SpecPut",
    "SyncPush",
    "is_plain_json_text",
]


# Grammars the handlers check themselves (400 invalid_id ...), declared in the document
# only: ``WithJsonSchema`` changes the schema, never the validation.
SpecPairIn = Annotated[tuple[str, str], WithJsonSchema(SPEC_PAIR_IN)]
Holder = Annotated[str, WithJsonSchema(HOLDER)]
ChangeId = Annotated[str, WithJsonSchema(ID_GRAMMARS["change_id"])]
ModuleFilter = Annotated[str, WithJsonSchema(MODULE_FILTER)]
Wave = Annotated[StrictInt, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 9999})]


def _unstorable(value: object) -> str | None:
    """What makes a string in ``value`` unstorable, if anything: PostgreSQL text cannot hold
    NUL, and no UTF-8 database can hold a lone surrogate (both were 500s)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "an unpaired surrogate"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


# Validation context for a body whose raw JSON is ASCII and has no ``\u`` escape: it cannot
# hold a NUL (JSON forbids raw control characters) or a lone surrogate, so the walk is skipped.
PLAIN_TEXT: Final = {"plain_text": True}


def is_plain_json_text(raw: bytes) -> bool:
    return raw.isascii() and b"\\u" not in raw


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Events are checked one by one by the domain (400 invalid_event naming the index).
    _check_text: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is PLAIN_TEXT:
            return data  # the caller saw the raw JSON: ASCII without \u escapes
        if cls._check_text and isinstance(data, dict):
            problem = _unstorable({k: v for k, v in data.items() if k in cls.model_fields})
            if problem is not None:
                raise ValueError(f"text must not contain {problem}")
        return data


class SyncPush(_Body):
    proposal: str | None = None
    design: str | None = None
    tasks: str | None = None
    specs: list[SpecPairIn]
    revision: str | None = None
    # Per capability: the spec revision the delta was written against (pull's spec_bases).
    spec_bases: dict[str, StrictInt] | None = None


class CompleteBody(_Body):
    note: str | None = Field(default=None, max_length=10_000)


class ShelveBody(_Body):
    reason: str | None = Field(default=None, max_length=10_000)


class AddTaskBody(_Body):
    title: str = Field(max_length=500)
    wave: Wave | None = None  # range checked by the route: 400 invalid_wave


class ClaimBody(_Body):
    holder: Holder
    ttl_seconds: StrictInt | None = None


class ReleaseBody(_Body):
    holder: Holder


class AllocateBody(_Body):
    holder: Holder
    ttl_seconds: StrictInt | None = None
    module: ModuleFilter | None = None
    changes: list[ChangeId] | None = Field(default=None, max_length=10_000)
    avoid_overlap: Literal["prefer", "strict", "off"] = "prefer"


class ModulePut(_Body):
    name: str
    description: str | None = None
    markdown: str | None = None


class SpecPut(_Body):
    markdown: str


class ImportModuleIn(_Body):
    id: str
    name: str
    markdown: str | None = None
    description: str | None = None


class ImportSpecIn(_Body):
    id: str
    markdown: str


class ImportChangeIn(_Body):
    id: str
    proposal: str | None = None
    design: str | None = None
    tasks: str | None = None
    specs: list[SpecPairIn] = []
    metadata: str | None = None
    archived_at: str | None = None


class ImportBody(_Body):
    mode: Literal["create-only", "overwrite"] = "create-only"
    modules: list[ImportModuleIn] = []
    specs: list[ImportSpecIn] = []
    changes: list[ImportChangeIn] = []


class EventsBody(_Body):
    _check_text: ClassVar[bool] = False

    events: list[Any]
    idempotency_key: str = ""
