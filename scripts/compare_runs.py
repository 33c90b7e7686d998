"""Compare two output folders made by the same commands (e.g. before and after a refactor): the same files,
JSON records equal but for timings and the folders' own paths, safetensors (masks, weights) bit-identical, and
every other file (reports, CSV, PNG, model cards) byte-identical once each folder's own path is replaced.

    python scripts/compare_runs.py runs-before runs-after
    python scripts/compare_runs.py --within 1e-4 runs-eager runs-graph    # numbers within a relative tolerance

With `--within REL`, for two ways of computing the same thing that round differently (an eager and a compiled or
captured packed step): every number in the JSON records within REL relatively (or 1e-6 absolutely), tensors too,
`pack_step` (which says how the step ran) ignored, and other files not compared.

Runs on a given ticket (ticket, reinit, shuffle) are named by a hash that includes the ticket's absolute path,
so they are paired by task and method, and their run hashes may differ. Exit status 1 if anything else differs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

TIMINGS = {"seconds", "step_ends"}
TICKET_RUN = re.compile(r"^([\w-]+)/(ticket|reinit|shuffle)_[0-9a-f]{10}/")
PATH_HASHED = {"run_hash", "run_dir"}  # of runs on a ticket: they follow the ticket's absolute path


def _files(root: Path) -> dict[str, Path]:
    return {TICKET_RUN.sub(r"\1/\2_<hash>/", str(p.relative_to(root))): p
            for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")  # results only: no locks, no worker logs
            and "workers" not in p.relative_to(root).parts}


def _normalised(value: Any, root: Path, skip: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _normalised(v, root, skip) for k, v in value.items() if k not in skip}
    if isinstance(value, list):
        return [_normalised(v, root, skip) for v in value]
    return value.replace(str(root), "<root>") if isinstance(value, str) else value


def compare(first: Path, second: Path, within: float | None = None) -> list[str]:
    """One line per difference; empty when the two folders hold the same results (within `within`, relatively)."""
    a, b = _files(first), _files(second)
    problems = [f"only in {first}: {name}" for name in sorted(a.keys() - b.keys())]
    problems += [f"only in {second}: {name}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        if name.endswith(".json"):
            skip = TIMINGS | (PATH_HASHED if "_<hash>/" in name else set()) | (WITHIN_SKIP if within else set())
            x, y = (_normalised(json.loads(p.read_text()), root, skip)
                    for p, root in ((a[name], first), (b[name], second)))
            if not (_close(x, y, within) if within else x == y):
                problems.append(f"records differ: {name}")
        elif name.endswith(".safetensors"):
            x, y = load_file(str(a[name])), load_file(str(b[name]))
            same = (lambda s, t: torch.allclose(s.float(), t.float(), rtol=within, atol=1e-6)) if within \
                else torch.equal
            if x.keys() != y.keys() or any(not same(x[k], y[k]) for k in x):
                problems.append(f"tensors differ: {name}")
        elif within:
            continue
        elif _bytes(a[name], first) != _bytes(b[name], second):
            problems.append(f"files differ: {name}")
    return problems


WITHIN_SKIP = {"pack_step"}  # says how a packed step ran: what a --within comparison compares across


def _close(x: Any, y: Any, rel: float) -> bool:
    """Equal, numbers within `rel` relatively (or 1e-6 absolutely), in the same structure."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k], rel) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_close(s, t, rel) for s, t in zip(x, y, strict=True))
    numbers = (int, float)
    if isinstance(x, numbers) and isinstance(y, numbers) and not isinstance(x, bool) and not isinstance(y, bool):
        return math.isclose(x, y, rel_tol=rel, abs_tol=1e-6)
    return x == y


def _bytes(path: Path, root: Path) -> bytes:
    return path.read_bytes().replace(str(root.resolve()).encode(), b"<root>").replace(str(root).encode(), b"<root>")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--within", type=float, default=None, help="numbers and tensors within this relative "
                        "tolerance instead of equal (other than JSON and safetensors files: not compared)")
    args = parser.parse_args(argv)
    first, second = args.first, args.second
    if not (first.is_dir() and second.is_dir()):
        print("usage: compare_runs.py [--within REL] FIRST_DIR SECOND_DIR", file=sys.stderr)
        return 2
    problems = compare(first, second, args.within)
    names = _files(first)
    counts = {ext: len([n for n in names if n.endswith(ext)]) for ext in (".json", ".safetensors")}
    print("\n".join(problems))
    print(f"{counts['.json']} JSON records, {counts['.safetensors']} safetensors files and "
          f"{len(names) - sum(counts.values())} other files in {first}: {len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
