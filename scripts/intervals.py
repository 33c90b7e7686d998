"""Intervals and verdict robustness from a study's committed per-seed scores (its report's transfer.csv), for studies
whose run folders are gone: every paired difference with n, its 95% t-interval, t, p and the exact sign test's p,
and whether each matching verdict survives leaving out any one seed.

    python scripts/intervals.py docs/results/minilm-cpu [--margin 1]

Writes <folder>/intervals.csv and <folder>/verdicts.csv. The same statistics as the report (`bert_tickets.stats`).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from bert_tickets.stats import matching_over, paired, robust_matching
from bert_tickets.studies.report import write_csv
from bert_tickets.studies.transfer_tables import source_label
from bert_tickets.tasks import get_task

OWN = "own ticket"
WITHIN = {True: "yes", False: "no", None: "not resolved"}  # the whole interval inside ±margin; outside; neither


def per_seed(folder: Path) -> dict[tuple[str, str], dict[int, float]]:
    """(source, target) -> seed -> the target's primary score, from the report's transfer.csv."""
    scores: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    with (folder / "transfer.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["metric"] == get_task(row["target"]).primary_metric:
                scores[(row["source"], row["target"])][int(row["seed"])] = float(row["value"])
    return scores


def label(source: str, target: str) -> str:
    """A row of the matrix as the report names it; the target's own ticket as such."""
    return OWN if source == target else "dense" if source == "dense" else source_label(source)


def interval_rows(scores: dict[tuple[str, str], dict[int, float]], margin: float) -> list[dict]:
    rows = []
    for target in sorted({t for _, t in scores}):
        arms = {s: v for (s, t), v in scores.items() if t == target}
        comparisons = [(s, "dense") for s in arms if s != "dense"]
        comparisons += [(s, target) for s in arms if s not in ("dense", target)]
        comparisons += [(s, "magnitude") for s in arms if s not in ("dense", "magnitude", "random", target)]
        for a, b in comparisons:
            if b not in arms:
                continue
            diff = paired(arms[a], arms[b])
            rows.append({"target": target, "metric": get_task(target).primary_metric, "arm": label(a, target),
                         "minus": label(b, target), **diff.columns("difference"),
                         f"within_{margin:g}_points": WITHIN[diff.within(margin / 100)]})
    return rows


def verdict_rows(scores: dict[tuple[str, str], dict[int, float]]) -> list[dict]:
    """Each arm's matching verdict over all seeds, and with each seed left out of both arms (the same seeds)."""
    rows = []
    for (source, target), values in sorted(scores.items()):
        dense = scores.get(("dense", target))
        if source == "dense" or dense is None:
            continue
        seeds = sorted(set(values) & set(dense))
        verdicts = {"all": matching_over(values, dense, seeds)}
        verdicts |= {f"without_seed_{s}": matching_over(values, dense, [k for k in seeds if k != s]) for s in seeds}
        rows.append({"target": target, "arm": label(source, target), "seeds": len(seeds), **verdicts,
                     "robust": robust_matching(values, dense)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a committed report folder holding transfer.csv")
    parser.add_argument("--margin", type=float, default=1.0, help="the equivalence margin, in points (× 100)")
    args = parser.parse_args()
    scores = per_seed(args.folder)
    for name, rows in (("intervals.csv", interval_rows(scores, args.margin)), ("verdicts.csv", verdict_rows(scores))):
        write_csv(args.folder / name, rows)
        print(args.folder / name)


if __name__ == "__main__":
    main()
