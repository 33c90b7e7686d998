"""One fine-tuning run on accelerate: AdamW with linear decay, masks enforced at every step, evaluation.

Task-agnostic: the task adapter supplies tokenized data and scores the gathered logits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bert_tickets.batching import LengthGroupedBatches, PaddedTensors, can_pre_pad
from bert_tickets.config import TrainingConfig
from bert_tickets.masks import MaskEnforcer, encoder_of
from bert_tickets.tasks import PreparedData, TaskAdapter
from bert_tickets.tracking import LogFn

StepCallback = Callable[[int, nn.Module], None]


@dataclass
class FitResult:
    metrics: dict[str, float]
    train_loss: float
    steps: int
    seconds: float
    revived_weights: int  # pruned weights found non-zero after training: must be 0
    trainable_parameters: int = 0
    tokens: int = 0  # non-padding training tokens seen
    precision: str = "no"  # the autocast actually used (training.mixed_precision "auto" resolved)
    step_ends: list[float] = field(default_factory=list)  # host clock after each step (no device sync)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "train_loss": self.train_loss, "steps": self.steps,
                "seconds": round(self.seconds, 2), "revived_weights": self.revived_weights,
                "trainable_parameters": self.trainable_parameters, "tokens": self.tokens,
                "precision": self.precision}


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively: a recent GPU, or a CPU with AVX-512 BF16 or AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolved_precision(training: TrainingConfig) -> str:
    # "auto" is bf16 autocast wherever bf16 is native. On this project's 2-core EPYC a MiniLM step took 0.72 s
    # against 0.95 s in fp32, with dev scores within seed noise (docs/RESULTS.md); emulated bf16 would be slower.
    if training.mixed_precision == "auto":
        return "bf16" if native_bf16() else "no"
    return training.mixed_precision


def make_accelerator(training: TrainingConfig) -> Accelerator:
    precision = resolved_precision(training)
    # pinned batches copied without blocking: the host never waits for the device to queue the next step
    non_blocking = DataLoaderConfiguration(non_blocking=torch.cuda.is_available())
    return Accelerator(mixed_precision=precision, dataloader_config=non_blocking,
                       gradient_accumulation_steps=training.gradient_accumulation_steps)


def total_steps(training: TrainingConfig, batches_per_epoch: int) -> int:
    if training.max_steps is not None:
        return training.max_steps
    return max(1, math.ceil(training.epochs * batches_per_epoch))


def fine_tune(model: nn.Module, data: PreparedData, task: TaskAdapter, tokenizer: Any,
              training: TrainingConfig, accelerator: Accelerator, seed: int,
              mask: Mapping[str, torch.Tensor] | None = None, on_step: StepCallback | None = None,
              desc: str = "fine-tuning", log: LogFn | None = None) -> FitResult:
    """Train `model` on `data.train` with `mask` held fixed, then score it on every evaluation split."""
    enforcer = MaskEnforcer(model, mask) if mask is not None else None  # before LoRA renames the layers
    if training.finetune == "lora":
        model = with_lora(model, training)
    multiple = 16 if accelerator.device.type == "cuda" else None  # few bucket lengths: few shapes on a GPU
    train_loader = training_batches(data.train, task.collator(tokenizer, train=True, pad_to_multiple_of=multiple),
                                    tokenizer, training, seed, multiple)
    steps = total_steps(training, math.ceil(len(train_loader) / training.gradient_accumulation_steps))
    optimizer, scheduler = _optimizer_and_schedule(model, training, steps, fused=accelerator.device.type == "cuda")
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if enforcer:
        enforcer.to(accelerator.device)

    start, step, micro_batches = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), device=accelerator.device)
    tokens, step_ends = torch.zeros((), dtype=torch.long, device=accelerator.device), []
    model.train()
    bar = tqdm(total=steps, desc=desc, disable=not accelerator.is_local_main_process, leave=False)
    while step < steps:
        for batch in train_loader:
            # accumulate: skips the gradient all-reduce until the last micro-batch; backward divides the loss
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    _optimizer_step(model, optimizer, scheduler, accelerator, enforcer, training.max_grad_norm)
            loss_sum += loss.detach()
            micro_batches += 1
            if "attention_mask" in batch:
                tokens += batch["attention_mask"].sum()
            if not accelerator.sync_gradients:
                continue
            step += 1
            step_ends.append(time.perf_counter())
            bar.update()
            if on_step:
                on_step(step, accelerator.unwrap_model(model))
            if step % 50 == 0 or step == steps:
                mean_loss = (loss_sum / micro_batches).item()
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                if log:
                    log({"train_loss": mean_loss}, step)
            if step >= steps:
                break
    bar.close()
    tokens_seen = int(tokens)  # the one wait for the device, once training is over
    seconds = time.perf_counter() - start
    scores = evaluate(model, data, task, task.collator(tokenizer, train=False, pad_to_multiple_of=multiple),
                      training.eval_batch_size, accelerator)
    if log:
        log({f"eval/{k}": v for k, v in scores.items()}, step)
    revived = enforcer.count_revived() if enforcer else 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.free_memory()  # drop the accelerator's references to this run's model and optimizer
    return FitResult(metrics=scores, train_loss=(loss_sum / max(micro_batches, 1)).item(), steps=step, seconds=seconds,
                     revived_weights=revived, trainable_parameters=trainable, tokens=tokens_seen,
                     precision=accelerator.mixed_precision, step_ends=step_ends)


def _optimizer_and_schedule(model: nn.Module, training: TrainingConfig, steps: int, fused: bool) -> tuple[Any, Any]:
    """AdamW (no weight decay on biases and LayerNorms) and a linear decay after the warm-up."""
    optimizer = torch.optim.AdamW(_param_groups(model, training.weight_decay), lr=training.learning_rate, fused=fused)
    return optimizer, get_linear_schedule_with_warmup(optimizer, round(training.warmup_ratio * steps), steps)


def _optimizer_step(model: nn.Module, optimizer: Any, scheduler: Any, accelerator: Accelerator,
                    enforcer: MaskEnforcer | None, max_grad_norm: float) -> None:
    """Mask the gradients, clip their global norm (over the masked gradients: what the step really uses), step.

    No re-masking of the weights afterwards: with zero gradients AdamW's moments stay zero where the mask is off,
    so its update there is 0 / (0 + eps) = 0 and decoupled weight decay scales 0: the zeros hold exactly
    (checked after training: `revived_weights`), at half the memory traffic of masking twice."""
    if enforcer:
        enforcer.mask_gradients()
    if max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def training_batches(dataset: Any, collator: Any, tokenizer: Any, training: TrainingConfig, seed: int,
                     multiple: int | None) -> DataLoader:
    """Pre-padded tensors and length-grouped batches where the task only pads; its own collator otherwise."""
    generator = torch.Generator().manual_seed(seed)
    if not can_pre_pad(collator, tokenizer, dataset):
        return DataLoader(dataset, batch_size=training.batch_size, shuffle=True, generator=generator,
                          collate_fn=collator)
    padded = PaddedTensors(dataset, tokenizer.pad_token_id, multiple)
    if training.group_by_length:
        sampler: Any = LengthGroupedBatches(padded.lengths, training.batch_size, generator)
    else:
        sampler = BatchSampler(RandomSampler(range(len(padded)), generator=generator), training.batch_size, False)
    # the loader draws its worker seed from `generator` first, as the plain shuffled loader does
    return DataLoader(range(len(padded)), batch_sampler=sampler, collate_fn=padded.collate, generator=generator,
                      pin_memory=torch.cuda.is_available())


@torch.no_grad()
def evaluate(model: nn.Module, data: PreparedData, task: TaskAdapter, collate: Any, batch_size: int,
             accelerator: Accelerator) -> dict[str, float]:
    model.eval()
    scores: dict[str, float] = {}
    for split, dataset in data.evals.items():
        loader = accelerator.prepare(DataLoader(dataset, batch_size=batch_size, collate_fn=collate))
        collected: dict[str, list[torch.Tensor]] = {}
        for batch in loader:
            outputs = task.eval_outputs(model(**batch), batch)
            outputs = {k: _pad_sequence_dim(accelerator, v) for k, v in outputs.items()}
            for key, value in accelerator.gather_for_metrics(outputs).items():
                collected.setdefault(key, []).append(value.cpu())
        arrays = {key: _concat_padded(values).numpy() for key, values in collected.items()}
        scores.update(task.score(split, arrays, data))
    model.train()
    return scores


def _pad_value(t: torch.Tensor) -> float:
    return -1e4 if t.is_floating_point() else -100  # a logit nothing picks / the ignored label


def _pad_sequence_dim(accelerator: Accelerator, t: torch.Tensor) -> torch.Tensor:
    """Dynamic padding gives each batch (and process) its own length: make them equal before gathering."""
    return accelerator.pad_across_processes(t, dim=1, pad_index=_pad_value(t)) if t.ndim > 1 else t


def _concat_padded(values: list[torch.Tensor]) -> torch.Tensor:
    if values[0].ndim > 1:
        width = max(v.shape[1] for v in values)
        values = [torch.nn.functional.pad(v, (0, width - v.shape[1]) if v.ndim == 2 else (0, 0, 0, width - v.shape[1]),
                                          value=_pad_value(v)) for v in values]
    return torch.cat(values)


def with_lora(model: nn.Module, training: TrainingConfig) -> nn.Module:
    """Freeze the (masked) backbone; train LoRA adapters on the attention projections and the whole task head."""
    from peft import LoraConfig, get_peft_model

    encoder = encoder_of(model)
    head = [name for name, child in model.named_children()
            if child is not encoder and next(child.parameters(), None) is not None]
    config = LoraConfig(r=training.lora_r, lora_alpha=training.lora_alpha, lora_dropout=training.lora_dropout,
                        target_modules=training.lora_targets, modules_to_save=head)
    return get_peft_model(model, config)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; biases and LayerNorm weights are exempt, as in the BERT recipe."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in encoder_of(model).state_dict().items()}


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
