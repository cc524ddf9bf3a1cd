"""The enhanced ``tasks.md`` template written by ``tasks init`` (ito-domain.md §4.11)."""

from __future__ import annotations

from datetime import date

from loom.domain.tasks._text import iso_day

__all__ = ["tasks_template"]

_DIVIDER = "_" * 70

_TEMPLATE = """\
# Tasks for: {cid}

## Execution Notes

- **Tool**: Any (OpenCode, Codex, Claude Code)
- **Mode**: Sequential (or parallel if tool supports)
- **Template**: Enhanced task format with waves, verification, and status tracking
- **Tracking**: Prefer the tasks CLI to drive status updates and pick work

```bash
ito tasks status {cid}
ito tasks next {cid}
ito tasks start {cid} 1.1
ito tasks complete {cid} 1.1
ito tasks shelve {cid} 1.1
ito tasks unshelve {cid} 1.1
ito tasks show {cid}
```

{divider}

## Wave 1

- **Depends On**: None

### Task 1.1: [Task Name]

- **Files**: `path/to/file.rs`
- **Dependencies**: None
- **Action**:
  [Describe what needs to be done]
- **Verify**: `cargo test --workspace`
- **Done When**: [Success criteria]
- **Updated At**: {day}
- **Status**: [ ] pending

{divider}

## Checkpoints

### Checkpoint: Review Implementation

- **Type**: checkpoint (requires human approval)
- **Dependencies**: All Wave 1 tasks
- **Action**: Review the implementation before proceeding
- **Done When**: User confirms implementation is correct
- **Updated At**: {day}
- **Status**: [ ] pending
"""


def tasks_template(change_id: str, today: date) -> str:
    """The enhanced template for ``change_id``, dated ``today`` (the caller's UTC date).

    It parses to tasks ``1.1`` and ``Checkpoint`` (kind checkpoint) in one wave, without
    errors or warnings.
    """
    return _TEMPLATE.format(cid=change_id, day=iso_day(today), divider=_DIVIDER)
