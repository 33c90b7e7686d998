"""Dev scores of dense fine-tunings in bf16 autocast against fp32, same recipe and seeds, side by side.

Takes a study spec and one of its tasks; the dense runs go to the study's own run folder, so the seeds a study
already trained in either precision (fp32, its default on a CPU; bf16 on a GPU) are reused and only the other one
trains. Each precision runs in a process of its own (one clean process per precision, as a user would run it).
Prints a table and writes it as JSON next to the runs.

    python scripts/precision_check.py minilm-cpu stsb --study-dir runs/studies/minilm-cpu --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

PRECISIONS = ("bf16", "no")


def dense_seeds(spec_source: str, task: str, study_dir: str, precision: str, seeds: int) -> list[dict[str, Any]]:
    """The dense fine-tunings of `task` under the study's recipe in one precision, trained where missing."""
    from bert_tickets.engine.run import ImpRun
    from bert_tickets.files import read_json
    from bert_tickets.studies.plan import StudyPlan
    from bert_tickets.studies.spec import parse_spec, read_spec_text

    plan = StudyPlan(parse_spec(read_spec_text(spec_source), spec_source), Path(study_dir))
    # the run hash holds the resolved precision: "no" here is the same run folder as the study's fp32 default
    setting = {"training.mixed_precision": precision}
    run = ImpRun(plan.spec.config_for(task, plan.runs_dir, **{"pruning.seeds": seeds}, **setting))
    records = []
    for seed in run.seeds:
        if not run.result_path("dense", seed).exists():
            run.run_seed_job("dense", seed)
        records.append(read_json(run.result_path("dense", seed)))
    return records


def summary(records: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    scores = [100 * r["metrics"][metric] for r in records]
    # no timings: a study's runs may have shared the cores with other workers (speed: scripts/bench_finetune.py)
    return {"precision": records[0].get("precision"), "seeds": [r["seed"] for r in records], "scores": scores,
            "mean": statistics.mean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="a study preset name or YAML file")
    parser.add_argument("task")
    parser.add_argument("--study-dir", required=True, help="the study folder (its runs/ are reused)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    from bert_tickets.engine.precision import native_bf16
    from bert_tickets.files import write_json
    from bert_tickets.tasks import get_task
    from bert_tickets.workers import in_new_process

    if not native_bf16():
        print("this machine has no native bf16: nothing to compare", file=sys.stderr)
        return 2
    metric = get_task(args.task).primary_metric
    # each precision in a clean process of its own (its own allocator and thread state, as a user would run it)
    rows = {p: summary(in_new_process(dense_seeds, args.spec, args.task, args.study_dir, p, args.seeds), metric)
            for p in PRECISIONS}
    bf16, fp32 = rows["bf16"], rows["no"]
    print(f"{args.task} dense, {metric} x 100, seeds {bf16['seeds']}:")
    for name, row in (("bf16 autocast", bf16), ("fp32", fp32)):
        print(f"  {name:14s} {row['mean']:.2f} ± {row['std']:.2f}  ({', '.join(f'{s:.2f}' for s in row['scores'])})")
    noise = max(bf16["std"], fp32["std"])
    verdict = "within" if abs(bf16["mean"] - fp32["mean"]) <= noise else "outside"
    print(f"  difference of means {bf16['mean'] - fp32['mean']:+.2f}: {verdict} seed noise (larger std {noise:.2f})")
    out = Path(args.study_dir) / f"precision_{args.task}.json"
    write_json(out, {"task": args.task, "metric": metric, "bf16": bf16, "fp32": fp32,
                     "within_seed_noise": verdict == "within"})
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
