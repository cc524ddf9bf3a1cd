"""Wave dependency resolution and the relational checks of an enhanced file (§4.6)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from loom.domain.tasks._enhanced import WaveSource
from loom.domain.tasks._model import TaskDiagnostic, TaskItem, TaskStatus, WaveInfo

__all__ = ["CHECKPOINT_DEP", "build_waves", "find_cycle", "relational_diagnostics"]

CHECKPOINT_DEP = "Checkpoint"
"""A dependency literally named ``Checkpoint`` is skipped by validation and gating (as Ito)."""

_U32_MAX = 2**32 - 1


def _show(text: str) -> str:
    return text if len(text) <= 100 else text[:100] + "…"


def build_waves(
    sources: dict[int, WaveSource], diagnostics: list[TaskDiagnostic]
) -> tuple[WaveInfo, ...]:
    """Turn the scanned waves into :class:`WaveInfo` values, appending wave diagnostics.

    A missing ``Depends On`` line is an error; the wave is then taken to depend on every
    lower-numbered wave (Ito's behaviour, kept so readiness stays sensible).
    """
    numbers = sorted(sources)
    known = set(numbers)
    out: list[WaveInfo] = []
    for w in numbers:
        src = sources[w]
        at = (
            src.depends_on_line_index
            if src.depends_on_line_index is not None
            else src.header_line_index
        ) + 1
        deps: set[int] = set()
        raw = src.depends_on_raw
        if raw is None:
            diagnostics.append(
                TaskDiagnostic(
                    "error", f"Wave {w}: missing Depends On line", None, src.header_line_index + 1
                )
            )
            deps = {n for n in numbers if n < w}
        elif not raw:
            diagnostics.append(TaskDiagnostic("error", f"Wave {w}: Depends On is empty", None, at))
        elif raw.lower() != "none":
            for part in raw.split(","):
                p = part.strip()
                if not p:
                    continue
                q = p[5:].strip() if p.lower().startswith("wave ") else p
                # (At most 10 digits: int() refuses strings over 4,300 digits.)
                if q.isascii() and q.isdigit() and len(q) <= 10 and int(q) <= _U32_MAX:
                    deps.add(int(q))
                else:
                    diagnostics.append(
                        TaskDiagnostic(
                            "error", f"Wave {w}: invalid Depends On entry '{_show(p)}'", None, at
                        )
                    )
        for d in sorted(deps):
            if d == w:
                diagnostics.append(
                    TaskDiagnostic("error", f"Wave {w}: cannot depend on itself", None, at)
                )
            elif d not in known:
                diagnostics.append(
                    TaskDiagnostic("error", f"Wave {w}: depends on missing Wave {d}", None, at)
                )
        out.append(
            WaveInfo(
                wave=w,
                depends_on=tuple(sorted(deps)),
                header_line_index=src.header_line_index,
                depends_on_line_index=src.depends_on_line_index,
            )
        )
    return tuple(out)


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """The first cycle found by a depth-first walk (nodes in first-seen order), or None.

    Returns the path with the start node repeated at the end: ``["a", "b", "a"]``.
    """
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    state: dict[str, int] = {}  # 1 = on the stack, 2 = finished
    for root in graph:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            nexts = graph[node]
            if i == len(nexts):
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            stack[-1] = (node, i + 1)
            nxt = nexts[i]
            mark = state.get(nxt)
            if mark == 1:
                return [*path[path.index(nxt) :], nxt]
            if mark is None:
                state[nxt] = 1
                stack.append((nxt, 0))
                path.append(nxt)
    return None


def relational_diagnostics(
    tasks: Sequence[TaskItem], waves: Sequence[WaveInfo]
) -> list[TaskDiagnostic]:
    """Duplicate ids, bad task dependencies, dependency cycles and wave cycles."""
    out: list[TaskDiagnostic] = []
    by_id: dict[str, TaskItem] = {}
    for t in tasks:
        if t.id in by_id:
            out.append(
                TaskDiagnostic("error", f"Duplicate task id: {t.id}", t.id, t.header_line_index + 1)
            )
        else:
            by_id[t.id] = t

    edges: dict[tuple[str, str], None] = {}
    for t in tasks:
        line = t.header_line_index + 1
        for dep in t.dependencies:
            if not dep or dep == CHECKPOINT_DEP:
                continue
            if dep == t.id:
                out.append(TaskDiagnostic("error", "Task cannot depend on itself", t.id, line))
                continue
            target = by_id.get(dep)
            if target is None:
                out.append(TaskDiagnostic("error", f"Missing dependency: {_show(dep)}", t.id, line))
                continue
            if (t.id, dep) in edges:
                continue
            edges[(t.id, dep)] = None
            if target.wave != t.wave:
                out.append(
                    TaskDiagnostic(
                        "error",
                        f"Cross-wave dependency not allowed: {t.id} depends on {dep}",
                        t.id,
                        line,
                    )
                )
            if target.status is TaskStatus.SHELVED and t.status is not TaskStatus.SHELVED:
                # A warning, not Ito's error: an error would refuse every mutation,
                # including the "unshelve" that repairs the situation.
                out.append(TaskDiagnostic("warning", f"Dependency is shelved: {dep}", t.id, line))

    cycle = find_cycle(edges)
    if cycle is not None:
        out.append(TaskDiagnostic("error", f"Dependency cycle detected: {' -> '.join(cycle)}"))
    known = {w.wave for w in waves}
    wave_edges = [
        (str(w.wave), str(d)) for w in waves for d in w.depends_on if d != w.wave and d in known
    ]
    wave_cycle = find_cycle(wave_edges)
    if wave_cycle is not None:
        out.append(
            TaskDiagnostic("error", f"Wave dependency cycle detected: {' -> '.join(wave_cycle)}")
        )
    return out
