"""Benchmark: read the whole corpus and parse every tasks.md, spec delta and module.md.

Usage (from the repository root)::

    .venv/bin/python bench/parse_corpus.py [ITO_DIR] [--repeat N]

``ITO_DIR`` defaults to ``../shared/corpus/ito-dotdir``. The corpus is read in place and
never written. Each of the N runs (default 5) times ``read_tree`` plus
``parse_tasks``/``apply_delta`` (which validates each delta)/``parse_module_md`` over everything it
returned; the best and median wall times are printed with the counts. Target (PRODUCT.md §4):
parsing the whole corpus in under 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from loom.domain.modules import parse_module_md
from loom.domain.specs import apply_delta
from loom.domain.tasks import parse_tasks
from loom.errors import ValidationError
from loom.tree import read_tree

TARGET_SECONDS = 2.0


def _run(ito_dir: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    tree = read_tree(ito_dir)
    specs = {spec.id: spec.markdown for spec in tree.specs}
    counts["changes"] = len(tree.changes)
    counts["archived"] = sum(c.archived_on is not None for c in tree.changes)
    counts["specs"] = len(tree.specs)
    counts["modules"] = len(tree.modules)
    counts["skipped files"] = len(tree.skipped)
    for change in tree.changes:
        if change.tasks is not None:
            result = parse_tasks(change.tasks)
            counts["tasks.md"] += 1
            counts["tasks"] += len(result.tasks)
            counts["diagnostics"] += len(result.diagnostics)
        for capability, delta in change.specs:
            counts["deltas"] += 1
            try:  # apply_delta validates the delta first, then merges it
                apply_delta(specs.get(capability), delta, capability)
                counts["deltas merged"] += 1
            except ValidationError:
                counts["deltas rejected"] += 1
    for module in tree.modules:
        counts["checklist entries"] += len(parse_module_md(module.markdown).changes)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("ito_dir", nargs="?", default="../shared/corpus/ito-dotdir")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    ito_dir = Path(args.ito_dir)
    if not ito_dir.is_dir():
        print(f"not a directory: {ito_dir}", file=sys.stderr)
        return 2
    times: list[float] = []
    counts: Counter[str] = Counter()
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        counts = _run(ito_dir)
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    print(f"corpus: {ito_dir}")
    for key, value in counts.items():
        print(f"  {key:18} {value}")
    print(
        f"runs: {len(times)}  best: {best:.3f} s  median: {median:.3f} s  "
        f"(target < {TARGET_SECONDS:.1f} s: {'ok' if median < TARGET_SECONDS else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
