"""A committed study's per-seed dev scores judged again by the dev-score half of `training.FAILED_RULE` (a score
within 10% of the way from the best constant prediction's to perfect), beside the failures its records counted by
the training-loss half, and what that does to each arm's "matching" verdict.

    python scripts/recount_failures.py docs/results/minilm-cpu --data-dir ../shared/data/glue

Reads the study's `table2.csv` (arms) and `transfer.csv` / `transfer_paired.csv` (cells); the constant
prediction's score comes from the task's own files (the training set's majority class, scored on the dev set).
Writes `failure_recount.csv` into the study folder and prints it. The training-loss failures are per arm counts
in those CSVs (not per seed), so an arm's failures under both rules are at least the larger of the two counts.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def failed_by_score(values: list[float], chance: float) -> int:
    from bert_tickets.engine.training import failed_to_learn

    return sum(bool(failed_to_learn(None, None, v, chance)) for v in values)


def arms(study: Path) -> list[dict[str, Any]]:
    """One row per arm of table2.csv and per transfer cell: task, arm, metric, seeds' values, recorded failures."""
    rows = []
    for r in csv.DictReader((study / "table2.csv").open()):
        rows.append({"table": "table2", "task": r["task"], "arm": r["method"], "metric": r["metric"],
                     "values": [float(v) for v in r["values"].split()], "failed_by_loss": int(r["failed"] or 0),
                     "matching_before": r["matching"]})
    if (study / "transfer.csv").exists():
        values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for r in csv.DictReader((study / "transfer.csv").open()):
            values[(r["source"], r["target"], r["metric"])].append(float(r["value"]))
        for r in csv.DictReader((study / "transfer_paired.csv").open()):
            rows.append({"table": "transfer", "task": r["target"], "arm": f"mask from {r['source']}",
                         "metric": r["metric"], "values": values[(r["source"], r["target"], r["metric"])],
                         "failed_by_loss": int(r["failed"] or 0), "matching_before": r["matching"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a committed study report folder (table2.csv, transfer.csv)")
    parser.add_argument("--data-dir", required=True, help="the GLUE folder the study read")
    args = parser.parse_args(argv)
    from bert_tickets.stats import is_matching, mean_std

    if not (args.study / "table2.csv").is_file():
        print(f"recount_failures: no table2.csv in {args.study}", file=sys.stderr)
        return 2
    rows = arms(args.study)
    chance = {task: _constant_score(task, args.data_dir) for task in {r["task"] for r in rows}}
    dense = {r["task"]: r for r in rows if r["arm"] == "dense"}
    out = []
    for r in rows:
        by_score = failed_by_score(r["values"], chance[r["task"]])
        failed = max(by_score, r["failed_by_loss"])  # at least: the loss rule's seeds are not in the CSVs
        reference = dense[r["task"]]
        dense_failed = max(failed_by_score(reference["values"], chance[r["task"]]), reference["failed_by_loss"])
        mean, std = mean_std(r["values"])
        dense_mean, dense_std = mean_std(reference["values"])
        now = None if r["arm"] == "dense" else is_matching(
            {"mean": mean, "values": r["values"], "failed": failed},
            {"mean": dense_mean, "std": dense_std, "values": reference["values"], "failed": dense_failed})
        out.append({"table": r["table"], "task": r["task"], "arm": r["arm"], "metric": r["metric"],
                    "constant_score": round(chance[r["task"]], 4), "seeds": len(r["values"]),
                    "values": " ".join(f"{v:.4f}" for v in r["values"]), "failed_by_loss": r["failed_by_loss"],
                    "failed_by_score": by_score, "failed_at_least": failed,
                    "matching_before": r["matching_before"], "matching_now": "" if now is None else str(now)})
    target = args.study / "failure_recount.csv"
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    for row in out:
        print(" | ".join(str(v) for v in row.values()))
    print(f"CSV: {target}")
    return 0


def _constant_score(task_name: str, data_dir: str) -> float:
    """The task's own constant prediction on its raw files (`tasks.base.raw_constant_score`), every dev example."""
    from bert_tickets.tasks import get_task
    from bert_tickets.tasks.base import raw_constant_score

    return raw_constant_score(get_task(task_name), data_dir)


if __name__ == "__main__":
    sys.exit(main())
