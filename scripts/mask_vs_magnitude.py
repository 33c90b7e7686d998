"""How close each IMP ticket of a study is to one-shot global magnitude pruning of θ0 itself (no training).

For every finished IMP ticket at a sparsity, the Jaccard overlap of its kept weights with those of θ0 pruned
once by magnitude to the same sparsity (same prunable set and scope), and with a random mask for scale. High
overlap means fine-tuning moved the weights too little to change θ0's magnitude ranking: IMP then finds
nearly the same mask whatever the task. Prints a table and writes mask_vs_magnitude.csv in the study folder.

    python scripts/mask_vs_magnitude.py runs/studies/minilm-cpu [--sparsity 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir")
    parser.add_argument("--sparsity", type=float, help="default: the transfer sparsity, else the highest")
    args = parser.parse_args(argv)

    from bert_tickets import paths
    from bert_tickets.engine.masks import full_mask, load_mask, magnitude_mask, random_mask, select_prunable
    from bert_tickets.errors import UserError
    from bert_tickets.studies.jobs import TicketJob
    from bert_tickets.studies.plan import load_plan
    from bert_tickets.studies.report import mask_overlap, write_csv

    try:
        plan = load_plan(args.study_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    spec = plan.spec
    sparsity = args.sparsity or (spec.transfer.sparsity if spec.transfer else max(spec.sparsities))
    rows = []
    for task in dict.fromkeys(spec.tasks + spec.ticket_sources):
        job = TicketJob(task, sparsity)
        if plan.finished(job) is None:
            continue
        run = plan.engine_run(job)
        pruning = run.config.pruning
        theta0 = select_prunable(run.resources.pretrained.theta0, pruning.prunable)
        masks = {"ticket": load_mask(paths.mask(run.ticket_dir())),
                 "magnitude": magnitude_mask(theta0, full_mask(theta0), sparsity, pruning.scope),
                 "random": random_mask(theta0, sparsity, seed=0)}
        overlap = mask_overlap(masks)
        rows.append({"task": task, "sparsity": sparsity, "jaccard_theta0_magnitude": overlap[("ticket", "magnitude")],
                     "jaccard_random": overlap[("ticket", "random")]})
    if not rows:
        print(f"error: no finished IMP ticket at {sparsity:.0%} in {args.study_dir}", file=sys.stderr)
        return 2
    out = Path(args.study_dir) / "mask_vs_magnitude.csv"
    write_csv(out, rows)
    print(f"IMP tickets at {sparsity:.0%} against one-shot magnitude pruning of θ0 (Jaccard of kept weights):")
    for row in rows:
        print(f"  {row['task']:6s} θ0 magnitude {row['jaccard_theta0_magnitude']:.4f}   "
              f"random {row['jaccard_random']:.4f}")
    print(f"CSV: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
