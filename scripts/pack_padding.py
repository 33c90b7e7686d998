"""How much of a pack's computation is padding: every member's batch is padded to the pack's longest row, and K
members draw their length-grouped batches independently, so a pack's length is the longest of K draws. This counts
it, without training: the pack's batches are built exactly as training builds them (`DeviceBatches` over each
member's lone-run sampler, lengths in multiples of 16 as on a GPU), and it compares the tokens a step computes
(K x rows x length) with the real ones.

    python scripts/pack_padding.py --tasks sst2,rte --ks 1,4,16,64 --out docs/results/pack-padding.md

What it answers: what unpadding (attention and the matrix products over the real tokens only) could save, per task
and K — the ceiling of issue 36's item 6 before any kernel is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_finetune import emit_markdown, model_folder, prepare, training_config  # noqa: E402


def padding_share(task_name: str, k: int, args: argparse.Namespace) -> dict[str, float]:
    """Over `--steps` steps of a pack of K: computed tokens, real tokens, and each as a share."""
    from bert_tickets.engine.batching import PaddedTensors
    from bert_tickets.engine.device_batches import DeviceBatches
    from bert_tickets.engine.modeling import load_tokenizer
    from bert_tickets.engine.training import training_batches
    from bert_tickets.tasks import get_task

    task = get_task(task_name)
    tokenizer = load_tokenizer(model_folder("minilm", Path(args.scratch)))
    data = prepare(args, tokenizer, task_name)
    training = training_config(args, args.steps)
    collate = task.collator(tokenizer, train=True, pad_to_multiple_of=16, data=data)
    padded = PaddedTensors(data.train, tokenizer.pad_token_id, 16)
    loaders = [training_batches(data.train, collate, tokenizer, training, seed, 16, padded) for seed in range(k)]
    batches = DeviceBatches(padded, loaders, tokenizer.pad_token_id, torch.device("cpu"))
    computed = real = flat = 0
    for _, batch in zip(range(args.steps), batches, strict=False):
        computed += batch["input_ids"].numel()
        per_member = (batch["attention_mask"].sum(dim=1) * batch["real"]).reshape(k, -1).sum(dim=1)
        real += int(per_member.sum())
        flat += k * int(per_member.max())  # each member's real tokens in one row, padded to the longest row
    return {"computed": computed, "real": real, "real_share": real / computed, "flat_share": real / flat}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sst2,cola,mrpc,stsb,rte")
    parser.add_argument("--ks", default="1,4,16,64", help="pack sizes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-samples", type=int, default=0, help="0: the whole training set")
    parser.add_argument("--steps", type=int, default=200, help="steps counted per pack")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    parser.add_argument("--scratch", default="runs/bench")
    parser.add_argument("--out", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.ks = [int(k) for k in args.ks.split(",") if k]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lines = [f"# Real tokens in a pack's computation (batch {args.batch_size} a member, lengths in multiples of 16, "
             f"max length {args.max_length}, {args.steps} steps a pack)", "",
             f"`python scripts/pack_padding.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             "| task | " + " | ".join(f"K = {k}" for k in args.ks) + " |", "|---|" + "---|" * len(args.ks)]
    for task in args.tasks:
        shares = [padding_share(task, k, args) for k in args.ks]
        lines.append(f"| {task} | " + " | ".join(f"{100 * s['real_share']:.0f}% ({100 * s['flat_share']:.0f}%)"
                                                  for s in shares) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    note = ("Each cell: the real (non-padding) tokens as a share of the tokens the pack computes (every row padded to "
            "the pack's longest); in brackets, the share if each member's real tokens were laid end to end in one row "
            "padded to the longest member's (unpadding within the batched products, `torch.bmm` as now).")
    text = "\n".join(lines) + f"\n\n{note}\n"
    emit_markdown(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
