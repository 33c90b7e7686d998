"""One fine-tuning run on accelerate: AdamW with linear decay, masks enforced at every step, evaluation.

Task-agnostic: the task adapter supplies tokenized data and scores the gathered logits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bert_tickets.config import TrainingConfig
from bert_tickets.engine.batching import LengthGroupedBatches, PaddedTensors, can_pre_pad
from bert_tickets.engine.checkpoints import Checkpointer
from bert_tickets.engine.masks import MaskEnforcer, encoder_of
from bert_tickets.engine.precision import resolved_precision
from bert_tickets.errors import UserError
from bert_tickets.ranks import world_size
from bert_tickets.tasks import PreparedData, TaskAdapter
from bert_tickets.tracking import LogFn

StepCallback = Callable[[int, nn.Module], None]
SYNC_EVERY = 50  # steps between reads from the device in the training loop (the running loss, the checkpoint clock)


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
    final_learning_rate: float = 0.0  # the scheduler's last rate: a check that the schedule ran its course
    processes: int = 1  # data-parallel processes that shared each global batch
    step_ends: list[float] = field(default_factory=list)  # host clock after each step (no device sync)
    final_train_loss: float | None = None  # mean loss over the last quarter of the steps
    chance_loss: float | None = None  # the loss of the best constant prediction (None: not defined for the task)
    eval_loss: dict[str, float] = field(default_factory=dict)  # per evaluation split, where the model gives one
    drift: dict[str, float] = field(default_factory=dict)  # ||θ_T − θ_start|| / ||θ_start|| of the prunable weights
    pack_size: int = 1  # fine-tunings trained as one computation (bert_tickets.engine.packed); `seconds` is the pack's
    pack_step: str = "eager"  # how a packed step was launched (engine.step_graph); recorded where not eager
    primary_metric: str | None = None  # the task's metric that verdicts read
    chance_score: float | None = None  # the best constant prediction's score in it, on the same examples
    # with training.eval_every_steps: every scoring made, {step, metrics}, the last one after training; `metrics`
    # is the one `reported` names (final, or the best primary score among them)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    reported: str = "final"

    @property
    def failed(self) -> bool | None:
        score = self.metrics.get(self.primary_metric) if self.primary_metric else None
        return failed_to_learn(self.final_train_loss, self.chance_loss, score, self.chance_score)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "eval_loss": self.eval_loss, "train_loss": self.train_loss,
                "final_train_loss": self.final_train_loss, "chance_loss": self.chance_loss,
                "chance_score": self.chance_score, "failed": self.failed,
                "drift": self.drift,
                "steps": self.steps,
                "seconds": round(self.seconds, 2), "revived_weights": self.revived_weights,
                "trainable_parameters": self.trainable_parameters, "tokens": self.tokens,
                "precision": self.precision, "final_learning_rate": self.final_learning_rate,
                "processes": self.processes, **({"pack_size": self.pack_size} if self.pack_size > 1 else {}),
                **({"pack_step": self.pack_step} if self.pack_step != "eager" else {}),
                **({"evaluations": self.evaluations, "reported": self.reported} if self.evaluations else {})}


# A fine-tuning "failed" when it learned nothing its dev score can tell from a constant: its primary dev score is
# within 10% of the way from the best constant prediction's (the training set's majority class; 0 for correlations)
# to a perfect score, or the loss of its last quarter of steps is still within 10% of the best constant
# prediction's loss (the training labels' entropy, or their variance for regression). Such a run says nothing about
# its mask (Mosbach et al. 2021: BERT fine-tuning on small data fails so for some seeds whatever the mask). It is
# an outcome: verdicts count it (`stats.is_matching`), and no mean leaves it out.
FAILED_FRACTION_OF_CHANCE = 0.9
FAILED_SCORE_MARGIN = 0.1
FAILED_RULE = (f"failed: the primary dev score is below the best constant prediction's (majority class; 0 for "
               f"correlations) + {FAILED_SCORE_MARGIN:g} x (1 − that score), or the mean training loss over the last "
               f"quarter of the steps is >= {FAILED_FRACTION_OF_CHANCE} x the loss of the best constant prediction "
               "(label entropy; label variance for regression)")


def failed_to_learn(final_train_loss: float | None, chance_loss: float | None, score: float | None = None,
                    chance_score: float | None = None) -> bool | None:
    """Whether a fine-tuning learned nothing (FAILED_RULE); None where neither rule can be applied."""
    verdicts = []
    if final_train_loss is not None and chance_loss is not None and chance_loss > 0:
        verdicts.append(final_train_loss >= FAILED_FRACTION_OF_CHANCE * chance_loss)
    if score is not None and chance_score is not None and math.isfinite(chance_score):
        verdicts.append(not score >= chance_score + FAILED_SCORE_MARGIN * (1 - chance_score))  # NaN: failed
    return bool(any(verdicts)) if verdicts else None


def chance_score(task: TaskAdapter, data: PreparedData) -> float | None:
    """The best constant prediction's primary dev score on the evaluation examples used (None: not defined)."""
    scores = task.constant_scores(data)
    return None if scores is None else scores.get(task.primary_metric)


def chance_loss(train: Any) -> float | None:
    """The training loss of the best constant prediction: the entropy of the label distribution for a classifier
    (cross-entropy), the labels' variance for a regressor (MSE); None for tasks without one label per example."""
    if "labels" not in getattr(train, "column_names", []):
        return None
    labels = np.asarray(train["labels"])
    if labels.ndim != 1 or len(labels) == 0 or labels.dtype == object:
        return None  # masked-LM: a label per token
    if np.issubdtype(labels.dtype, np.floating):
        return float(labels.var())
    counts = np.bincount(labels.astype(np.int64))
    p = counts[counts > 0] / len(labels)
    return float(-(p * np.log(p)).sum())


def make_accelerator(training: TrainingConfig) -> Accelerator:
    """One accelerator per run. Data parallel keeps the one-process recipe: `training.batch_size` is the global
    batch, split over the processes (`split_batches`), so an epoch has as many optimizer steps as on one process
    and the scheduler steps once per optimizer step. The precision is the run's own (`resolved_precision`)."""
    precision = resolved_precision(training)
    _forget_other_precision(precision)
    # pinned batches copied without blocking: the host never waits for the device to queue the next step
    loading = DataLoaderConfiguration(split_batches=True, non_blocking=torch.cuda.is_available())
    accelerator = Accelerator(mixed_precision=precision, dataloader_config=loading,
                              gradient_accumulation_steps=training.gradient_accumulation_steps)
    if accelerator.num_processes != world_size():  # each process would train everything alone
        raise UserError(f"launched as {world_size()} processes (WORLD_SIZE), but accelerate sees "
                        f"{accelerator.num_processes}: on CPU use `accelerate launch --cpu` (or set "
                        "ACCELERATE_USE_CPU=1), on GPUs `accelerate launch` or torchrun with one process per GPU")
    for name in ("batch_size", "eval_batch_size"):
        if getattr(training, name) % accelerator.num_processes:
            raise UserError(f"training.{name} ({getattr(training, name)}) is the global batch: it must divide "
                            f"evenly over the {accelerator.num_processes} processes")
    return accelerator


def _forget_other_precision(precision: str) -> None:
    """accelerate keeps one precision per process (`AcceleratorState`, a singleton) and refuses an Accelerator
    that asks for another. Runs here are sequential and each builds its own Accelerator, so the precision part of
    that state is dropped before a run that needs another one; `PartialState` (devices, the process group of a
    multi-process launch) is kept as accelerate set it up. Models already prepared keep their own autocast."""
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, precision):
        AcceleratorState._reset_state(reset_partial_state=False)


def bucket_multiple(device: torch.device) -> int | None:
    """Sequence lengths rounded up to multiples of 16 on a GPU (few bucket lengths: few shapes); exact elsewhere."""
    return 16 if device.type == "cuda" else None


def expected_steps(training: TrainingConfig, train_examples: int) -> int:
    """The optimizer steps a fine-tuning will take, before its loader exists (for progress reports; the batch is
    the global one, so the count is the same in every process)."""
    batches = math.ceil(train_examples / training.batch_size)
    return total_steps(training, math.ceil(batches / training.gradient_accumulation_steps))


def total_steps(training: TrainingConfig, batches_per_epoch: int) -> int:
    if training.max_steps is not None:
        return training.max_steps
    return max(1, math.ceil(training.epochs * batches_per_epoch))


def fine_tune(model: nn.Module, data: PreparedData, task: TaskAdapter, tokenizer: Any,
              training: TrainingConfig, accelerator: Accelerator, seed: int,
              mask: Mapping[str, torch.Tensor] | None = None, on_step: StepCallback | None = None,
              desc: str = "fine-tuning", log: LogFn | None = None, checkpoint: Path | None = None,
              lr_horizon: float = 1.0) -> FitResult:
    """Train `model` on `data.train` with `mask` held fixed, then score it on every evaluation split. With a
    `checkpoint` folder, the training state is saved there now and then and a rerun resumes from it. The learning
    rate decays linearly over `lr_horizon` times the steps (1: to 0 at the last step)."""
    enforcer = MaskEnforcer(model, mask) if mask is not None else None  # before LoRA renames the layers
    if training.finetune == "lora":
        model = with_lora(model, training)
    multiple = bucket_multiple(accelerator.device)
    collate = task.collator(tokenizer, train=True, pad_to_multiple_of=multiple, data=data)
    train_loader = training_batches(data.train, collate, tokenizer, training, seed, multiple)
    steps = total_steps(training, math.ceil(len(train_loader) / training.gradient_accumulation_steps))
    optimizer, scheduler = _optimizer_and_schedule(model, training, steps, fused=accelerator.device.type == "cuda",
                                                   horizon=lr_horizon)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if enforcer:
        enforcer.to(accelerator.device)
    eval_collate = task.collator(tokenizer, train=False, pad_to_multiple_of=multiple)

    def score_now() -> dict[str, float]:
        with torch.no_grad():
            return evaluate(model, data, task, eval_collate, training.eval_batch_size, accelerator)

    loop = LoneLoop(accelerator, model, optimizer, scheduler, enforcer, training, steps, score_now)
    loop.run(train_loader, Checkpointer(checkpoint, accelerator, training, SYNC_EVERY), on_step, desc, log)
    # the one wait for the device, once training is over; data parallel: over every process's share of the batches
    tokens_seen = int(accelerator.reduce(loop.tokens, reduction="sum"))
    train_loss = accelerator.reduce(loop.loss_sum / max(loop.micro_batches, 1), reduction="mean").item()
    final_loss = accelerator.reduce(loop.tail_loss_sum / max(loop.tail_batches, 1), reduction="mean").item()
    eval_losses: dict[str, float] = {}
    scores = evaluate(model, data, task, eval_collate, training.eval_batch_size, accelerator, losses=eval_losses)
    if log:
        log({f"eval/{k}": v for k, v in scores.items()}, loop.step)
    evaluations = [*loop.evaluations, {"step": loop.step, "metrics": scores}] if training.eval_every_steps else []
    scores = reported_scores(evaluations, task.primary_metric, training.reported_score) if evaluations else scores
    revived = enforcer.count_revived() if enforcer else 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.free_memory()  # drop the accelerator's references to this run's model and optimizer
    return FitResult(metrics=scores, train_loss=train_loss, steps=loop.step, seconds=loop.seconds,
                     revived_weights=revived, trainable_parameters=trainable, tokens=tokens_seen,
                     precision=accelerator.mixed_precision, step_ends=loop.step_ends,
                     final_learning_rate=scheduler.get_last_lr()[0], processes=accelerator.num_processes,
                     final_train_loss=final_loss if loop.tail_batches else None, chance_loss=chance_loss(data.train),
                     eval_loss=eval_losses, primary_metric=task.primary_metric, chance_score=chance_score(task, data),
                     evaluations=evaluations, reported=training.reported_score)


def reported_scores(evaluations: list[dict[str, Any]], primary: str, reported: str) -> dict[str, float]:
    """The scores a fine-tuning reports: the last evaluation's (`final`), or the one with the best primary score
    (`best`, the earliest of equals; a NaN score never wins)."""
    if reported == "final":
        return evaluations[-1]["metrics"]
    scored = [e for e in evaluations if not math.isnan(e["metrics"][primary])] or evaluations
    return max(scored, key=lambda e: e["metrics"][primary])["metrics"]


class TrainingLoop:
    """The one training loop of every fine-tuning, lone (`LoneLoop`) or packed (`packed.PackedLoop`): it steps over
    the batches, shows the bar and logs the running loss, scores what is due, saves checkpoints and resumes from one
    (the data order replayed batch by batch, then the state restored, so a resumed run ends as an unbroken one),
    and records when each step ended. A subclass trains one batch (`train_batch`) and says what its state is
    beyond the loop's own (`state_progress`, `restore_progress`) and which model the step callbacks see."""

    def __init__(self, accelerator: Accelerator, training: TrainingConfig, steps: int,
                 score_now: Callable[[], dict[str, float]] | None = None):
        self.accelerator, self.training, self.steps = accelerator, training, steps
        self.score_now = score_now  # scores the evaluation splits, every training.eval_every_steps
        self.evaluations: list[dict[str, Any]] = []  # {step, metrics}, kept in checkpoints
        self.step = self.micro_batches = 0
        self.tail_from = steps - max(1, steps // 4)  # steps completed before the last quarter begins
        self.step_ends: list[float] = []
        self.seconds, self.earlier_seconds = 0.0, 0.0

    # --- what a kind of loop defines ---------------------------------------------------------------
    def train_batch(self, batch: dict[str, torch.Tensor]) -> bool:
        """One batch forward and backward; True when it completed an optimizer step."""
        raise NotImplementedError

    def mean_loss(self) -> float:
        """The running training loss so far (a read from the device)."""
        raise NotImplementedError

    def callback_model(self) -> nn.Module:
        raise NotImplementedError

    def state_progress(self) -> dict[str, Any]:
        """What a checkpoint's progress.json keeps of this loop beyond the steps, batches, seconds and scores."""
        return {}

    def restore_progress(self, progress: dict[str, Any]) -> None:
        """Take back what `state_progress` kept."""

    # --- the loop ------------------------------------------------------------------------------------
    def run(self, loader: Any, checkpoints: Checkpointer, on_step: StepCallback | None, desc: str,
            log: LogFn | None) -> None:
        resume = checkpoints.resume_point()
        skip = resume["micro_batches"] if resume else 0  # the data position: batches already trained on
        start = time.perf_counter()
        bar = tqdm(total=self.steps, desc=desc, disable=not self.accelerator.is_local_main_process, leave=False)
        try:  # the bar is cleared however training ends, so an error message starts its own line
            while self.step < self.steps:
                for batch in loader:
                    if self.micro_batches < skip:  # replay the data order (its generator), not the training
                        self.micro_batches += 1
                        if self.micro_batches == skip:
                            self._resume(resume or {}, checkpoints, bar)
                        continue
                    if not self.train_batch(batch):
                        continue
                    self._after_step(bar, on_step, log)
                    if self.step >= self.steps:
                        break
                    self._score_if_due()
                    if checkpoints.due(self.step):
                        self.seconds = self.earlier_seconds + time.perf_counter() - start
                        checkpoints.save(self.progress())
        finally:
            bar.close()
        self.seconds = self.earlier_seconds + time.perf_counter() - start

    def _after_step(self, bar: Any, on_step: StepCallback | None, log: LogFn | None) -> None:
        self.step_ends.append(time.perf_counter())
        bar.update()
        if on_step:
            on_step(self.step, self.callback_model())
        if self.step % SYNC_EVERY == 0 or self.step == self.steps:
            mean_loss = self.mean_loss()
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            if log:
                log({"train_loss": mean_loss}, self.step)

    def _score_if_due(self) -> None:
        every = self.training.eval_every_steps
        if every and self.score_now is not None and self.step % every == 0:
            self.evaluations.append({"step": self.step, "metrics": self.score_now()})

    def progress(self) -> dict[str, Any]:
        return {"step": self.step, "micro_batches": self.micro_batches, **self.state_progress(),
                "seconds": self.seconds, "evaluations": self.evaluations}

    def _resume(self, progress: dict[str, Any], checkpoints: Checkpointer, bar: Any) -> None:
        checkpoints.restore()  # after the replay: the RNG states are the checkpoint's, as in an unbroken run
        checkpoints.log_resume(progress)
        self.step, self.earlier_seconds = progress["step"], progress["seconds"]
        self.evaluations = progress.get("evaluations", [])
        self.restore_progress(progress)
        bar.update(self.step)


class LoneLoop(TrainingLoop):
    """One fine-tuning through accelerate: its running loss and tokens on the device (read at the end or at a
    checkpoint), gradient accumulation, data parallel, mixed precision."""

    def __init__(self, accelerator: Accelerator, model: nn.Module, optimizer: Any, scheduler: Any,
                 enforcer: MaskEnforcer | None, training: TrainingConfig, steps: int,
                 score_now: Callable[[], dict[str, float]] | None = None):
        super().__init__(accelerator, training, steps, score_now)
        self.model, self.optimizer, self.scheduler, self.enforcer = model, optimizer, scheduler, enforcer
        self.unwrapped = accelerator.unwrap_model(model)  # what `with_sdpa_mask` reads the attention kind from
        self.loss_sum = torch.zeros((), device=accelerator.device)
        self.tail_loss_sum = torch.zeros((), device=accelerator.device)  # the last quarter of the steps
        self.tail_batches = 0
        self.tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)

    def run(self, loader: Any, checkpoints: Checkpointer, on_step: StepCallback | None, desc: str,
            log: LogFn | None) -> None:
        self.model.train()
        super().run(loader, checkpoints, on_step, desc, log)

    def train_batch(self, batch: dict[str, torch.Tensor]) -> bool:
        accelerator = self.accelerator
        inputs = with_sdpa_mask(self.unwrapped, batch)
        # accumulate: skips the gradient all-reduce until the last micro-batch; backward divides the loss
        with accelerator.accumulate(self.model):
            loss = self.model(**inputs).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                _optimizer_step(self.model, self.optimizer, self.scheduler, accelerator, self.enforcer,
                                self.training.max_grad_norm)
        self.loss_sum += loss.detach()
        if self.step >= self.tail_from:
            self.tail_loss_sum += loss.detach()
            self.tail_batches += 1
        self.micro_batches += 1
        if "attention_mask" in batch:
            self.tokens += batch["attention_mask"].sum()
        if accelerator.sync_gradients:
            self.step += 1
        return accelerator.sync_gradients

    def mean_loss(self) -> float:
        return (self.loss_sum / self.micro_batches).item()

    def callback_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def state_progress(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum.item(), "tail_loss_sum": self.tail_loss_sum.item(),
                "tail_batches": self.tail_batches, "tokens": int(self.tokens.item())}

    def restore_progress(self, progress: dict[str, Any]) -> None:
        self.loss_sum.fill_(progress["loss_sum"])
        self.tail_loss_sum.fill_(progress.get("tail_loss_sum", 0.0))  # checkpoints from before it was kept: 0
        self.tail_batches = progress.get("tail_batches", 0)
        self.tokens.fill_(progress["tokens"])


def with_sdpa_mask(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with its padding mask as the 4D boolean mask transformers builds for sdpa attention. Given so, the
    model does not first ask whether any token is padding (`padding_mask.all()` in transformers' masking utils), a
    read that makes the host wait for the device at every step. Other attention implementations: unchanged."""
    config = getattr(model, "config", None)
    mask = batch.get("attention_mask")
    if getattr(config, "_attn_implementation", None) != "sdpa" or mask is None or mask.ndim != 2:
        return batch
    return with_4d_mask(batch)


def with_4d_mask(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with its 2D padding mask as transformers' 4D boolean one (rows, 1, 1, keys; True = attend)."""
    return {**batch, "attention_mask": batch["attention_mask"][:, None, None, :].bool()}


def _optimizer_and_schedule(model: nn.Module, training: TrainingConfig, steps: int, fused: bool,
                            horizon: float = 1.0) -> tuple[Any, Any]:
    """AdamW (no weight decay on biases and LayerNorms) and a linear decay after the warm-up, over `horizon` times
    the steps that will run (the authors' IMP levels stop a tenth of the way along theirs)."""
    optimizer = torch.optim.AdamW(_param_groups(model, training.weight_decay), lr=training.learning_rate, fused=fused)
    return optimizer, linear_schedule(optimizer, training, max(steps, round(horizon * steps)))


def linear_schedule(optimizer: Any, training: TrainingConfig, scheduled: int) -> Any:
    """The recipe's learning rate: a linear warm-up over `training.warmup_steps` steps, if set, else over
    `training.warmup_ratio` of `scheduled` steps, then a linear decay to 0 at step `scheduled`."""
    warmup = training.warmup_steps or round(training.warmup_ratio * scheduled)
    return get_linear_schedule_with_warmup(optimizer, min(warmup, scheduled), scheduled)


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
                     multiple: int | None, padded: PaddedTensors | None = None) -> DataLoader:
    """Pre-padded tensors (`padded`, when fine-tunings share them) and length-grouped batches where the task only
    pads; its own collator otherwise."""
    generator = torch.Generator().manual_seed(seed)
    if not can_pre_pad(collator, tokenizer, dataset):
        return DataLoader(dataset, batch_size=training.batch_size, shuffle=True, generator=generator,
                          collate_fn=collator)
    padded = padded or PaddedTensors(dataset, tokenizer.pad_token_id, multiple)
    if training.group_by_length:
        sampler: Any = LengthGroupedBatches(padded.lengths, training.batch_size, generator)
    else:
        sampler = BatchSampler(RandomSampler(range(len(padded)), generator=generator), training.batch_size, False)
    # the loader draws its worker seed from `generator` first, as the plain shuffled loader does
    indices: Any = range(len(padded))  # the batches index the padded tensors: any sized sequence serves
    return DataLoader(indices, batch_sampler=sampler, collate_fn=padded.collate, generator=generator,
                      pin_memory=torch.cuda.is_available())


EVAL_BAR_FROM = 2000  # examples: smaller dev sets take seconds, a bar would only flicker


@torch.no_grad()
def evaluate(model: nn.Module, data: PreparedData, task: TaskAdapter, collate: Any, batch_size: int,
             accelerator: Accelerator, losses: dict[str, float] | None = None) -> dict[str, float]:
    """Every evaluation split's scores; `losses` gets each split's mean loss where the model computes one (the
    batches carry labels). Under data parallel the last batch's padding copies count in the loss (not the scores)."""
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    scores: dict[str, float] = {}
    for split, dataset in data.evals.items():
        loader = accelerator.prepare(DataLoader(dataset, batch_size=batch_size, collate_fn=collate))
        collected: dict[str, list[torch.Tensor]] = {}
        loss_sum, loss_count = torch.zeros((), device=accelerator.device), 0
        shown = accelerator.is_local_main_process and len(dataset) >= EVAL_BAR_FROM
        for batch in tqdm(loader, desc=f"evaluating {split}", leave=False, disable=not shown):
            output = model(**with_sdpa_mask(unwrapped, batch))
            if getattr(output, "loss", None) is not None:
                n = len(next(iter(batch.values())))
                loss_sum += output.loss.detach().float() * n
                loss_count += n
            outputs = task.eval_outputs(output, batch)
            outputs = {k: _pad_sequence_dim(accelerator, v) for k, v in outputs.items()}
            for key, value in accelerator.gather_for_metrics(outputs).items():
                collected.setdefault(key, []).append(value.cpu())
        arrays = {key: _concat_padded(values).numpy() for key, values in collected.items()}
        scores.update(task.score(split, arrays, data))
        if losses is not None and loss_count:
            total = accelerator.reduce(torch.stack([loss_sum, torch.tensor(float(loss_count), device=loss_sum.device)]),
                                       reduction="sum")
            losses[split] = (total[0] / total[1]).item()
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
    """Freeze the (masked) backbone; train LoRA adapters on the attention projections and the task head's own
    weights. The head is trained in place rather than through PEFT's `modules_to_save`, which copies whole modules:
    a masked-LM head's decoder is the word-embedding matrix (tied), and copying it would untie it and train a
    30522 x H matrix. Weights the head shares with the encoder stay tied and frozen."""
    from peft import LoraConfig, get_peft_model

    encoder_params = {id(p) for p in encoder_of(model).parameters()}
    head = [p for p in model.parameters() if id(p) not in encoder_params]
    config = LoraConfig(r=training.lora_r, lora_alpha=training.lora_alpha, lora_dropout=training.lora_dropout,
                        target_modules=training.lora_targets)
    model = get_peft_model(model, config)
    for param in head:
        param.requires_grad_(True)
    return model


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; biases and LayerNorm weights are exempt, as in the BERT recipe."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in encoder_of(model).state_dict().items()}
