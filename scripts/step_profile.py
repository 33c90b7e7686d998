"""Where a packed fine-tuning step's time goes: `torch.profiler` over a few steps of K packed MiniLM fine-tunings on
SST-2, summarised as Markdown (issue 36's first measurement; every later change says what it removed from it).

    python scripts/step_profile.py --k 16 --out docs/results/step-profile/gpu.md       # on a GPU
    python scripts/step_profile.py --k 2 --batch-size 16 --out docs/results/step-profile/cpu.md

What it reports per step: wall time (the host's view: Python, launches, waits), device time (the kernels' own time,
CUDA only), kernel launches (device kernels on CUDA; aten operator calls on a CPU, where an operator runs in place of
a kernel), and the host frames that take the most time themselves. Steps are timed after `--warmup` untimed ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_finetune import emit_markdown, magnitude_mask_of, model_folder, prepare, training_config  # noqa: E402


def profiled_pack(args: argparse.Namespace) -> tuple[Any, list[float]]:
    """K packed fine-tunings with the profiler stepping at every optimizer step; (profiler, step end times)."""
    from bert_tickets.engine.modeling import load_pretrained, load_tokenizer
    from bert_tickets.engine.packed import Member, fine_tune_packed
    from bert_tickets.engine.training import make_accelerator
    from bert_tickets.tasks import PreparedData, get_task

    folder = model_folder(args.model, Path(args.scratch))
    task, tokenizer = get_task("sst2"), load_tokenizer(folder)
    data = prepare(args, tokenizer)
    pretrained = load_pretrained(folder, task, tokenizer)
    mask = magnitude_mask_of(pretrained, args.sparsity) if args.sparsity else None
    members = [Member(pretrained.build(seed), seed, mask) for seed in range(args.k)]
    steps = args.warmup + args.steps
    training = training_config(args, steps, args.precision)
    training.pack_unpad = args.unpad
    cuda = torch.cuda.is_available()
    prof = profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])])
    ends: list[float] = []

    def on_step(step: int) -> None:  # the profiler covers the steps after the warm-up ones, whole
        if cuda:
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
        if step == args.warmup:
            prof.start()
        elif step == steps:
            prof.stop()

    fine_tune_packed(members, PreparedData(data.train, {}, {}), task, tokenizer, training,
                     make_accelerator(training), on_step=on_step, step_mode=args.step_mode)
    return prof, ends[args.warmup:]


def summary(prof: Any, ends: list[float], args: argparse.Namespace) -> str:
    """The profile as Markdown: per-step host and device time, launches, and the top host frames."""
    cuda = torch.cuda.is_available()
    events = prof.key_averages()
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    wall_ms = 1000 * statistics.median(gaps) if gaps else float("nan")
    device_us = sum(e.self_device_time_total for e in events) if cuda else 0.0
    if cuda:
        launches = sum(e.count for e in events if e.device_type.name == "CUDA")
    else:
        launches = sum(e.count for e in events if e.key.startswith("aten::"))
    per_step = max(args.steps, 1)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    lines = [f"# Packed step profile: {device}, K = {args.k}, batch {args.batch_size}, length {args.max_length}, "
             f"{args.model}, {args.step_mode} step{', unpadded' if args.unpad else ''}",
             "", f"`python scripts/step_profile.py {' '.join(sys.argv[1:])}` (torch {torch.__version__})", "",
             "| per step | value |", "|---|---|",
             f"| wall time (median) | {wall_ms:.1f} ms |",
             f"| device time (kernels) | {device_us / 1000 / per_step:.1f} ms |" if cuda else
             "| device time (kernels) | – (CPU: the wall time is the host's) |",
             f"| {'kernel launches' if cuda else 'aten operator calls'} | {launches / per_step:.0f} |",
             f"| samples/s | {args.k * args.batch_size / (wall_ms / 1000):.0f} |",
             "", "Top operators by the host time they take themselves (self CPU, over the profiled steps):", "",
             "| operator | calls/step | self CPU ms/step |", "|---|---|---|"]
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
    lines += [f"| `{e.key}` | {e.count / per_step:.0f} | {e.self_cpu_time_total / 1000 / per_step:.2f} |" for e in top]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "bert-base"], default="minilm")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--k", type=int, default=16, help="packed fine-tunings")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocator, compilation)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--sparsity", type=float, default=0.0, help="each member masked by θ0's magnitude")
    parser.add_argument("--precision", default=None, help="bf16 or no (default: bf16 where native)")
    parser.add_argument("--step-mode", choices=["eager", "compiled", "graph"], default="eager",
                        help="how the step is launched (training.pack_step; graph: one CUDA graph per shape)")
    parser.add_argument("--unpad", action="store_true", help="the real tokens only (training.pack_unpad)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--scratch", default="runs/bench")
    parser.add_argument("--out", default=None, help="write the Markdown here too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prof, ends = profiled_pack(args)
    text = summary(prof, ends, args)
    emit_markdown(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
