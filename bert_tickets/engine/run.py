"""The IMP engine: iterative magnitude pruning with rewinding, level by level, then the ticket's evaluation.

Level k: rewind the encoder to θ0 (or an early-training rewind point), apply mask k, fine-tune with a fresh
head; mask k+1 is then pruned from what level k leaves (the method decides how: `bert_tickets.methods`). Each
level has its own folder (`bert_tickets.paths`); `metrics.json` is written last and marks it done, so a rerun
skips it and a killed run resumes.

The public surface of a run, for the command line, transfer, studies, workers and tests: what its folder holds
(`run_folder.RunFolder`: levels, seeds, done checks), and here `run`, `run_levels`, `evaluate_ticket`,
`run_seed_job` (one of the evaluation's independent fine-tunings; `seed_rounds` splits them over local workers),
`lock`, `level_mask`, `build_model` and `resources` (what the run loads: θ0, data, accelerator). The rest is
private; the methods (`bert_tickets.methods`) read `trained_prunable` and `resources` to make their masks.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from bert_tickets import paths, progress
from bert_tickets.config import Config, TrainingConfig, final_recipe, non_default_settings, reproduce_command, run_hash
from bert_tickets.engine import packed
from bert_tickets.engine.calibration import calibration_batches
from bert_tickets.engine.checkpoints import remove_checkpoint
from bert_tickets.engine.masks import (
    Mask,
    collapse_warning,
    full_mask,
    jaccard,
    load_mask,
    magnitude_mask,
    prunable_parameters,
    relative_drift,
    save_mask,
    sparsity_report,
)
from bert_tickets.engine.modeling import head_state_of
from bert_tickets.engine.precision import resolved_precision
from bert_tickets.engine.resources import RunResources
from bert_tickets.engine.run_folder import RunFolder
from bert_tickets.engine.training import FAILED_RULE, FitResult, encoder_state, expected_steps, fine_tune
from bert_tickets.errors import UserError
from bert_tickets.files import (
    atomic_write,
    check_output_location,
    copy_file,
    is_whole,
    read_json,
    read_json_if_exists,
    write_json,
)
from bert_tickets.locks import folder_lock, holds_lock, result_lock
from bert_tickets.provenance import data_source, model_source, package_version
from bert_tickets.ranks import barrier, is_main_process, log, rank0_sees
from bert_tickets.results import ARMS, Arm, FineTuningSummary, MetricSummary, TicketInfo, read_ticket_info
from bert_tickets.stats import MATCHING_RULE, failed_count, is_matching, mean_std
from bert_tickets.ticket import Ticket
from bert_tickets.workers import JobRounds


class ImpRun(RunFolder):
    """One engine run (model × task × method × recipe): trains what its folder still lacks. Any target sparsity
    along its schedule reuses its levels."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.resources = RunResources(self.config, self.task, self.root)
        self.said_unpackable = False  # "cannot be packed" is logged once per run

    # --- running -------------------------------------------------------------------------------------
    def run(self) -> Ticket:
        """Train what is missing (one process at a time per run folder), then evaluate the ticket. A finished run
        whose ticket covers the seeds asked is read as it is: nothing is written (a read-only or full disk is fine)."""
        if self.finished_ticket() is not None:
            return Ticket.load(self.ticket_dir())
        with self.lock():
            if not self.is_done():
                self.run_levels()
            return self.evaluate_ticket()

    def lock(self) -> AbstractContextManager[None]:
        """This run's folder to this process (and its local workers) while it trains; nothing for a finished run, or
        when this process already holds it (the inputs were checked when it took it)."""
        if self.is_done() or holds_lock(self.root):
            return nullcontext()
        check_output_location(self.root)
        _ = self.resources.data, self.resources.pretrained  # bad model or data fail before anything is written
        self.method.check(self)
        return folder_lock(self.root)

    def run_levels(self) -> None:
        if not self.is_done() and self.method.prunes_by_magnitude and self.config.pruning.scope == "global":
            self.resources.warn_magnitude_outliers()
        write_json(paths.config(self.root), {
            "run_hash": run_hash(self.config), "non_default": non_default_settings(self.config),
            "config": self.config.to_dict(), "bert_tickets_version": package_version()})
        for k in self.trained_levels:
            if k > 0:
                LevelTraining(self).train(k)
                continue
            dense = self.result_path("dense", self.seed)
            with result_lock(dense):  # level 0 is this seed's dense fine-tuning: other runs wait for it, then share it
                LevelTraining(self).train(0)
                if self.levels_are_evaluations and not rank0_sees(dense):
                    write_json(dense, {"seed": self.seed, **self.level_record(0)})
        barrier()  # what the main rank wrote is there for the others' done checks

    def run_seed_job(self, kind: Arm, seed: int) -> dict[str, Any]:
        """One seed of the final evaluation: the ticket's mask (or none, dense) on θ0 with a fresh head; with
        `training.pack` > 1, as a pack of one where it can be packed (every record of the folder alike)."""
        path = self.result_path(kind, seed)
        if (kind, seed) in packable_jobs(self, [(kind, seed)]):
            _seed_pack([PackEntry(self, kind, seed)])
            return read_json(path)
        with result_lock(path):  # dense seeds are shared between runs: the second to come waits and reuses
            return read_json(path) if rank0_sees(path) else self._seed_run(kind, seed, path)

    def _seed_run(self, kind: Arm, seed: int, path: Path) -> dict[str, Any]:
        if kind == "ticket" and not self.method.rewinds:
            chain = self.seed_chain(seed)
            chain.run()
            return write_json_record(path, {"seed": seed, **chain.level_record(len(self.sparsities) - 1)})
        level = len(self.sparsities) - 1 if kind == "ticket" else 0
        log(f"{kind}: seed {seed}")
        mask = self.level_mask(level) if level > 0 else None
        model = self.build_model(seed, rewound=level > 0)
        result = tracked_fine_tune(self, model, mask, kind, f"{kind}-seed{seed}", f"{kind} seed {seed}",
                                   {"sparsity": self.sparsities[level], "seed": seed}, path,
                                   mask_file=paths.mask(self.level_dir(level)) if level > 0 else None,
                                   training=self.final_training)
        check_zeros(result, level)
        if kind == "ticket":
            keep_finetuned(self, model, seed)
        return write_json_record(path, {"seed": seed, "sparsity": self.sparsities[level], **result.to_dict()})

    def seed_chain(self, seed: int) -> ImpRun:
        """A non-rewinding method's ticket from another seed is another whole chain of levels: the run of this
        config with that training seed (its own folder), whose last level is this run's ticket seed."""
        chain = copy.deepcopy(self.config)
        chain.training.seed, chain.pruning.seeds, chain.pruning.search_seed = seed, 1, None
        return ImpRun(chain)

    def evaluate_ticket(self) -> Ticket:
        folder, last = self.ticket_dir(), len(self.sparsities) - 1
        mask_path = paths.mask(self.level_dir(last))
        run_seed_packs(self)  # with training.pack > 1; the loop below then reads their records
        ticket_runs = [self.run_seed_job("ticket", s) for s in self.seeds]
        dense_runs = [self.run_seed_job("dense", s) for s in self.seeds]
        mask = load_mask(mask_path)
        copy_file(mask_path, paths.mask(folder))
        info = ticket_info(self, mask, ticket_runs, dense_runs)
        write_json(paths.ticket_info(folder), info)
        return Ticket(path=folder, info=info, mask=mask)

    # --- masks and models ----------------------------------------------------------------------------
    def level_mask(self, k: int) -> Mask:
        """Mask k: level 0 keeps everything; a later one is made once, by the method, then read from its file."""
        if k == 0:
            return full_mask(self.theta0_prunable())
        path = paths.mask(self.level_dir(k))
        if rank0_sees(path):  # the ranks decide together, or one would skip a barrier the others wait at
            return load_mask(path)
        started = time.perf_counter()
        mask = self.method.level_mask(self, k)  # on every rank alike (the main one saves it)
        if is_main_process():
            write_json(paths.mask_cost(self.level_dir(k)), {"seconds": round(time.perf_counter() - started, 3)})
        save_mask(path, mask, self.config.pruning.prunable, model_weights=self.resources.pretrained.encoder_weights)
        barrier()  # every rank has read the frontier before the level goes on (and may let it go)
        return mask

    def trained_prunable(self, k: int) -> dict[str, torch.Tensor]:
        """Level k's trained prunable weights; let go once level k+1 was made, they are trained again (the same
        seed, data order and recipe: the same weights) when a smaller target than before needs another level k+1."""
        if not rank0_sees(paths.trained_prunable(self.level_dir(k))):
            log(f"level {k}: training it again for the trained weights another level {k + 1} is pruned from")
            LevelTraining(self).train(k, frontier_only=True)
        return super().trained_prunable(k)

    @property
    def final_training(self) -> TrainingConfig:
        """The final fine-tunings' recipe (`training.final_max_steps`, `final_batch_size`); levels keep the run's."""
        return final_recipe(self.config.training)

    def theta0(self) -> dict[str, torch.Tensor]:
        return self.resources.pretrained.theta0

    def calibration_batches(self) -> list[dict[str, torch.Tensor]]:
        p, r = self.config.pruning, self.resources
        return calibration_batches(r.tokenizer, r.data.train, p.calibration, p.calibration_samples,
                                   self.config.data.max_length, self.seed)

    def method_file(self, name: str) -> Path:
        return self.root / name

    def theta0_prunable(self) -> dict[str, torch.Tensor]:
        return self.resources.theta0_prunable()

    def build_model(self, seed: int, rewound: bool = False, keep_head: bool = False) -> torch.nn.Module:
        """A task model: encoder θ0 (`rewound`: the rewind point, and whatever the method starts masked
        fine-tunings from), head fresh from `seed` (`keep_head`: the first level's, with `pruning.keep_head`)."""
        encoder, reinit = None, False
        if rewound and self.config.pruning.rewind_step > 0:
            encoder = load_file(str(paths.rewind_point(self.root)))
        if rewound:
            encoder, reinit = self.method.rewound_encoder(self, encoder, seed)
        head_path = paths.initial_head(self.root)
        head = load_file(str(head_path)) if self.config.pruning.keep_head and keep_head and head_path.exists() \
            else None
        return self.resources.pretrained.build(seed, encoder_state=encoder, head_state=head, reinit=reinit)

class LevelTraining:
    """How one level of a run is trained and recorded: its starting model, the fine-tuning, what later levels,
    seeds and releases keep of it, and its record (written last: it marks the level done)."""

    def __init__(self, run: ImpRun):
        self.run, self.pruning = run, run.config.pruning

    def train(self, k: int, frontier_only: bool = False) -> dict[str, Any]:
        """Train level k (its record marks it done); `frontier_only`: a done level again, for its trained weights."""
        folder, sparsity, rewind = self.run.level_dir(k), self.run.sparsities[k], self.pruning.rewind_step
        if not frontier_only and (done := read_json_if_exists(paths.metrics(folder))) is not None:
            log(f"level {k} (sparsity {sparsity:.2%}) already done: skipping")
            return done
        log(f"level {k}/{len(self.run.sparsities) - 1}: sparsity {sparsity:.2%}")
        mask = self.run.level_mask(k)
        self._let_go_of_frontier(k)
        model = self._level_model(k)
        capture = partial(capture_rewind_point, self.run.root, rewind) if k == 0 and rewind and not frontier_only \
            else None
        record_path = paths.trained_prunable(folder) if frontier_only else paths.metrics(folder)
        details = {"level": k, "sparsity": sparsity, "seed": self.run.seed}
        result = tracked_fine_tune(self.run, model, mask if k > 0 else None, "level", f"level{k}",
                                   f"level {k} ({sparsity:.0%})", details, record_path, on_step=capture,
                                   mask_file=paths.mask(folder) if k > 0 else None,
                                   lr_horizon=self.pruning.level_lr_horizon)
        check_zeros(result, k)
        if frontier_only:
            save_frontier(self.run, model, folder)
            remove_checkpoint(record_path)
            barrier()
            return read_json(paths.metrics(folder))
        if k == 0 and rewind and not paths.rewind_point(self.run.root).exists():
            raise UserError(f"rewind step {rewind} is beyond the {result.steps} training steps of a level")
        self._save_level_weights(k, model)
        return self._record_level(k, mask, result)

    def _let_go_of_frontier(self, k: int) -> None:
        """Once mask k exists, level k-1's trained weights are needed again only by a target off the grid (they are
        then trained again); on the grid a larger target reuses level k."""
        if k > 0 and is_main_process() and self.run.on_grid(k):
            paths.trained_prunable(self.run.level_dir(k - 1)).unlink(missing_ok=True)

    def _level_model(self, k: int) -> torch.nn.Module:
        """Level k's starting model: rewound (or trained on, for non-rewinding methods), its head as configured."""
        model = self.run.build_model(self.run.seed, rewound=k > 0, keep_head=k > 0)
        if k > 0 and self.pruning.carry_head:  # the authors' code rewinds the encoder only
            load_model(model, str(paths.trained_head(self.run.level_dir(k - 1))), strict=False)
        if self.pruning.keep_head and not paths.initial_head(self.run.root).exists():  # for later levels
            save_tensors(paths.initial_head(self.run.root), head_state_of(model))
        if k > 0 and not self.run.method.rewinds:  # go on from the last level's trained network
            load_model(model, str(paths.trained_model(self.run.level_dir(k - 1))))
        return model

    def _save_level_weights(self, k: int, model: torch.nn.Module) -> None:
        """What later levels, seeds or releases need of level k's trained network."""
        folder = self.run.level_dir(k)
        if self.run.method.trains_dense_level and (k + 1 < len(self.run.sparsities) or self.run.method.extendable):
            save_frontier(self.run, model, folder)
        if not self.run.method.rewinds:
            atomic_write(paths.trained_model(folder), lambda tmp: save_model(model, tmp))
        if self.pruning.carry_head:
            save_tensors(paths.trained_head(folder), {n: t.cpu().contiguous() for n, t in head_state_of(model).items()})
        if k == len(self.run.sparsities) - 1 and self.run.levels_are_evaluations:  # the last level is a ticket seed
            keep_finetuned(self.run, model, self.run.seed)

    def _record_level(self, k: int, mask: Mask, result: FitResult) -> dict[str, Any]:
        """Level k's sparsity report and metrics.json (written last: it marks the level done)."""
        folder, sparsity = self.run.level_dir(k), self.run.sparsities[k]
        record = {"level": k, "sparsity": sparsity, **result.to_dict()}
        if k > 0 and self.run.method.prunes_by_magnitude:  # how far the mask is from pruning θ0 once by magnitude
            record["jaccard_to_theta0_magnitude"] = self._jaccard_to_theta0_magnitude(mask, sparsity)
        report = sparsity_report(mask)
        if (warning := collapse_warning(report)) is not None:
            log(f"warning: level {k}: {warning}")
        write_json(paths.sparsity(folder), report)
        write_json_record(paths.metrics(folder), record)
        barrier()  # the other ranks go on to read what the main one wrote
        log(f"level {k} done: {self.run.task.primary_metric} {100 * result.metrics[self.run.task.primary_metric]:.2f} "
            f"in {result.seconds:.0f}s")
        return record

    def _jaccard_to_theta0_magnitude(self, mask: Mask, sparsity: float) -> float:
        theta0 = self.run.theta0_prunable()
        return jaccard(mask, magnitude_mask(theta0, full_mask(theta0), sparsity, self.pruning.scope))

def tracked_fine_tune(run: ImpRun, model: torch.nn.Module, mask: Mask | None, job_type: str, name: str, desc: str,
                      details: dict[str, Any], result: Path, on_step: Any = None, mask_file: Path | None = None,
                      lr_horizon: float = 1.0, training: TrainingConfig | None = None) -> FitResult:
    """One fine-tuning of `model` (seed `details["seed"]`) by `training` (default: the run's recipe) whose record
    goes to `result` (its checkpoint beside it), tracked as one wandb run when tracking is on: its final scores in
    the run's summary, its mask (`mask_file`) as an artifact."""
    training = run.config.training if training is None else training
    r, task, method = run.resources, run.task, run.method
    # where training starts: the masked weights (pruning is not movement); the parameters themselves are kept,
    # since LoRA renames the layers it wraps
    params = prunable_parameters(model, run.config.pruning.prunable)
    start = masked_start(params, mask)
    steps = expected_steps(training, len(r.data.train))
    with r.tracker.run(f"{task.name}-{method.name}-{name}", job_type, **details) as track, \
            progress.fine_tuning(f"{task.name} {method.name} {desc}", steps) as status_step:
        fit = fine_tune(model, r.data, task, r.tokenizer, training, r.accelerator, details["seed"],
                        mask=mask, on_step=_both(on_step, status_step), desc=desc, log=track,
                        checkpoint=paths.checkpoint(result), lr_horizon=lr_horizon)
        fit.drift = relative_drift(start, params)
        if track is not None:
            sparsity, hash_ = details["sparsity"], run_hash(run.config)
            artifact = f"mask-{task.name}-{method.name}-{hash_}-{paths.sparsity_name(sparsity)}"
            track.close(fit.metrics, mask_file, artifact, {"task": task.name, "method": method.name,
                                                           "sparsity": sparsity, "run_hash": hash_,
                                                           "model": run.config.model.name})
        return fit


def run_seed_packs(run: ImpRun) -> None:
    """The evaluation's pending fine-tunings (ticket seeds of a rewinding method, dense seeds) in packs of up to
    `training.pack`, each trained as one computation (`bert_tickets.engine.packed`); nothing with `pack` 1, or where
    they cannot be packed (then one at a time, as always)."""
    _train_packs([PackEntry(run, kind, seed) for kind, seed in packable_jobs(run, run.seed_jobs())])


def pack_across_runs(runs: list[ImpRun]) -> None:
    """Several runs' evaluation fine-tunings packed together (a study's methods, sparsities and seeds on one task),
    so a pack fills up to `training.pack` members where one run has only its few seeds. Each run's levels come
    first (one after another by nature, under its folder's lock); then every pending packable fine-tuning of the
    runs, grouped by what a pack shares (model, task data, final recipe: what names the runs' shared dense folder,
    `dense_dir`, whose dense seeds are theirs alike), trains in packs. A member's
    record depends on its own seed, mask and starting weights only (`engine.packed`), whichever runs it shares a
    pack with. A dense seed two runs share is trained once."""
    entries: dict[Path, PackEntry] = {}
    for run in runs:
        if run.finished_ticket() is not None:
            continue
        with run.lock():
            if not run.is_done():
                run.run_levels()
        for kind, seed in packable_jobs(run, run.seed_jobs()):
            entries.setdefault(run.result_path(kind, seed), PackEntry(run, kind, seed))
    groups: dict[Path, list[PackEntry]] = {}
    for entry in entries.values():
        groups.setdefault(entry.run.dense_dir(), []).append(entry)
    for group in groups.values():
        _train_packs(group)


@dataclass(frozen=True)
class PackEntry:
    """One fine-tuning of a run's evaluation, as a pack's member: the ticket's mask (or none, dense) from a seed."""

    run: ImpRun
    kind: Arm
    seed: int

    @property
    def path(self) -> Path:
        return self.run.result_path(self.kind, self.seed)

    @property
    def level(self) -> int:
        return len(self.run.sparsities) - 1 if self.kind == "ticket" else 0

    def name(self, alone: bool) -> str:
        """Its name in the logs: with its run's method and sparsity where the pack holds other runs' members."""
        own = f"{self.kind} seed {self.seed}"
        if alone or self.kind == "dense":
            return own
        return f"{self.run.method.name} {paths.sparsity_percent(self.run.sparsities[self.level])}% {own}"


def _train_packs(entries: list[PackEntry]) -> None:
    """The entries in packs of up to `training.pack` (fewer where the device's memory would not hold them)."""
    if not entries:
        return
    run = entries[0].run
    training, pretrained = run.final_training, run.resources.pretrained
    parameters = sum(t.numel() for t in pretrained.theta0.values())
    size = packed.pack_limit(training.pack, parameters, pretrained.config, training, run.config.data.max_length,
                             run.resources.accelerator.device)
    for first in range(0, len(entries), size):
        _seed_pack(entries[first:first + size])


def packable_jobs(run: ImpRun, jobs: list[tuple[Arm, int]]) -> list[tuple[Arm, int]]:
    """Those of `jobs` that train packed: all of a rewinding method's, and dense ones, with `training.pack` > 1,
    unless the task, recipe or launch cannot be packed (said once per run)."""
    training, r = run.final_training, run.resources
    if training.pack <= 1:
        return []
    pretrained = r.pretrained
    reason = packed.why_not_packable(pretrained.model_class, pretrained.config, run.task, training,
                                     r.accelerator.num_processes)
    if reason:
        if not run.said_unpackable:
            log(f"training.pack {training.pack}: one fine-tuning at a time ({reason} cannot be packed)")
            run.said_unpackable = True
        return []
    return [(kind, seed) for kind, seed in jobs if kind == "dense" or run.method.rewinds]


def _seed_pack(entries: list[PackEntry]) -> None:
    """One pack: each member's record is written as its lone run would write it (plus `pack_size`); a member whose
    record fails to be written does not keep the others' from being written. The data, recipe and device are the
    first member's run's (the same for every member: `pack_across_runs` groups them by `dense_dir`)."""
    with ExitStack() as locks:
        for path in sorted(entry.path for entry in entries):  # one order: no deadlock
            locks.enter_context(result_lock(path))
        entries = [entry for entry in entries if not rank0_sees(entry.path)]
        if not entries:
            return
        members = [packed.Member(e.run.build_model(e.seed, rewound=e.level > 0), e.seed,
                                 e.run.level_mask(e.level) if e.level > 0 else None) for e in entries]
        params = [prunable_parameters(m.model, e.run.config.pruning.prunable)  # trained in place
                  for m, e in zip(members, entries, strict=True)]
        starts = [masked_start(p, m.mask) for p, m in zip(params, members, strict=True)]
        run = entries[0].run
        alone = all(e.run is run for e in entries)
        names = ", ".join(e.name(alone) for e in entries)
        log(f"{len(entries)} fine-tunings packed: {names}")
        r = run.resources
        steps = expected_steps(run.final_training, len(r.data.train))
        label = f"{run.task.name} {run.method.name if alone else 'study'} {names}"
        with progress.fine_tuning(label, steps, len(entries)) as on_step:
            fits = packed.fine_tune_packed(members, r.data, run.task, r.tokenizer, run.final_training,
                                           r.accelerator, on_step=on_step, desc=names,
                                           checkpoint=paths.checkpoint(entries[0].path))
        failures = []
        for entry, member, start, trained, fit in zip(entries, members, starts, params, fits, strict=True):
            try:
                fit.drift = relative_drift(start, trained)
                check_zeros(fit, entry.level)
                if entry.kind == "ticket":
                    keep_finetuned(entry.run, member.model, entry.seed)
                write_json_record(entry.path, {"seed": entry.seed, "sparsity": entry.run.sparsities[entry.level],
                                               **fit.to_dict()})
            except Exception as error:  # noqa: BLE001 - the other members' records are still written
                failures.append(error)
        if failures:
            raise failures[0]


def masked_start(params: dict[str, torch.Tensor], mask: Mask | None) -> dict[str, torch.Tensor]:
    """Where training starts, for the drift: a copy of the prunable weights, masked (pruning is not movement)."""
    return {n: p.detach().cpu() * mask[n] if mask is not None and n in mask else p.detach().cpu().clone()
            for n, p in params.items()}


def _both(first: Any, second: Any) -> Any:
    """Two per-step callbacks (step, model) as one; either may be None."""
    if first is None or second is None:
        return first if second is None else second

    def each_step(step: int, model: torch.nn.Module) -> None:
        first(step, model)
        second(step, model)

    return each_step


def keep_finetuned(run: ImpRun, model: torch.nn.Module, seed: int) -> None:
    """With `training.keep_finetuned`, a ticket seed's whole fine-tuned task model, for `push --fine-tuned`."""
    if run.config.training.keep_finetuned:
        atomic_write(paths.finetuned(run.ticket_dir(), seed), lambda tmp: save_model(model, tmp))


def save_frontier(run: ImpRun, model: torch.nn.Module, folder: Path) -> None:
    """A level's trained prunable weights: what the next level's mask is pruned from (with the θ0 weights the model
    has no place for, untrained: masked LM's pooler)."""
    params = prunable_parameters(model, run.config.pruning.prunable)
    frontier = {n: p.detach().cpu().contiguous() for n, p in params.items()}
    save_tensors(paths.trained_prunable(folder), frontier | run.resources.theta0_prunable_beyond_model())


@dataclass(frozen=True)
class SeedJob:
    """One fine-tuning of a run's evaluation: the ticket's mask (or none, dense) from one seed."""

    kind: Arm
    seed: int

    def run(self, run: ImpRun) -> None:
        run.run_seed_job(self.kind, self.seed)

    def is_done(self, run: ImpRun) -> bool:
        return is_whole(run.result_path(self.kind, self.seed))  # as `seed_jobs` counts it

    def __str__(self) -> str:
        return f"{self.kind} seed {self.seed}"


def seed_rounds(run: ImpRun) -> JobRounds[SeedJob]:
    """A run's evaluation seeds for local workers, once its levels are done (one after another by nature)."""

    def levels_first() -> bool:
        if run.finished_ticket() is not None:  # a finished rerun writes nothing, whatever --workers says
            return False
        run.run_levels()
        return bool(run.seed_jobs())

    units = [[SeedJob(kind, seed)] for kind, seed in run.seed_jobs(pending_only=False)]
    return JobRounds(run, {"seeds": units}, paths.workers(run.root), before=levels_first)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def capture_rewind_point(root: Path, rewind_step: int, step: int, model: torch.nn.Module) -> None:
    """Called after every training step of level 0: at `rewind_step`, the encoder is what later levels rewind to."""
    if rewind_step and step == rewind_step:
        save_tensors(paths.rewind_point(root), encoder_state(model))


def check_zeros(result: FitResult, level: int) -> None:
    """Masked weights stay exactly zero through training (the enforcer counts any that revived)."""
    if not math.isfinite(result.train_loss):  # NaN weights are "non-zero" too: say what really happened
        raise UserError(f"level {level}: training diverged (loss {result.train_loss}); lower the learning rate")
    if result.revived_weights:
        raise RuntimeError(f"level {level}: {result.revived_weights} pruned weights became non-zero")


def write_json_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A fine-tuning's record; its checkpoint is no longer needed."""
    write_json(path, record)
    remove_checkpoint(path)
    return record


def ticket_info(run: ImpRun, mask: Mask, ticket_runs: list[dict], dense_runs: list[dict]) -> TicketInfo:
    """ticket.json: the ticket's scores next to dense over the same seeds, and how it was found."""
    ticket, dense = _summarise(ticket_runs), _summarise(dense_runs)
    primary = run.task.primary_metric
    matching = is_matching(ticket[primary], dense[primary])
    p, config = run.config.pruning, run.config
    report = sparsity_report(mask)
    return {
        "task": run.task.name, "model": config.model.name, "method": run.method.name,
        "sparsity": report["sparsity"], "target_sparsity": p.sparsity, "scope": p.scope,
        "per_matrix_sparsity": report["per_matrix"], "collapsed_matrices": report["collapsed"],
        "collapse_rule": report["collapse_rule"],
        "schedule": p.schedule, "rate": p.rate, "levels": run.sparsities, "rewind_step": p.rewind_step,
        "weights": run.method.weights if not p.rewind_step else f"rewound to training step {p.rewind_step}",
        "prunable": p.prunable, "source_ticket": p.ticket, "mask_found_on": mask_origin(p.ticket),
        "evaluation_examples": {split: {"scored": scored, "of": whole}
                                for split, (scored, whole) in run.resources.data.eval_sizes.items()},
        "pooler_in_mask": any("pooler" in n for n in mask),
        "pooler_rule": "a mask without a pooler entry leaves a model's pooler dense; a pooler entry is skipped "
                       "for models without a pooler",
        "mask_keys": "encoder parameter names (model.base_model)",
        "precision": resolved_precision(config.training),
        "mask_cost": mask_cost(run),
        "seeds": run.seeds, "primary_metric": primary, "matching": matching, "matching_rule": MATCHING_RULE,
        "metrics": {"ticket": ticket, "dense": dense},
        "runs": {arm: [_run_summary(r, seed) for r, seed in zip(runs, run.seeds, strict=True)]
                 for arm, runs in zip(ARMS, (ticket_runs, dense_runs), strict=True)},
        "failed_rule": FAILED_RULE,
        "model_source": model_source(config.model.name, config.model.revision, run.resources.loaded_commit),
        "data_source": data_source(run.task, config.data),
        "run_dir": str(run.root), "run_hash": run_hash(config),
        "config": non_default_settings(config), "command": reproduce_command(config),
        "bert_tickets_version": package_version(),
    }


def mask_cost(run: ImpRun) -> dict[str, Any] | None:
    """What finding the mask cost on this run's machine: the fine-tuning steps and seconds of the levels it was
    pruned from (the last level fine-tunes the mask, it does not find it) and the seconds spent making the masks
    (calibration, scoring, sorting); None for a given ticket's mask (its cost is its source's)."""
    if run.method.needs_ticket:
        return None
    last = len(run.sparsities) - 1
    trained = [run.level_record(k) for k in run.trained_levels if k < last]
    made = [record["seconds"] for k in range(1, last + 1)
            if (record := read_json_if_exists(paths.mask_cost(run.level_dir(k)))) is not None]
    # timings under "seconds", as in every record (what comparisons of two identical runs leave out)
    return {"levels_trained": len(trained), "fine_tuning_steps": sum(r["steps"] for r in trained),
            "seconds": {"fine_tuning": round(sum(r["seconds"] for r in trained), 2),
                        "making_masks": None if len(made) < last else round(sum(made), 3)}}


def mask_origin(source_ticket: str | None) -> dict[str, Any] | None:
    """Where a given ticket's mask was found (its task, method and sparsity; through any chain of evaluations of it),
    so that a release of an evaluation names both tasks; None for a mask this run found."""
    if source_ticket is None:
        return None
    info = read_ticket_info(paths.ticket_info(Path(source_ticket)))  # its description only, not its mask
    return info.get("mask_found_on") or {"task": info["task"], "method": info["method"], "sparsity": info["sparsity"]}


def _run_summary(record: dict[str, Any], seed: int) -> FineTuningSummary:
    """What the report needs of one fine-tuning beside its scores: did it learn, its losses, how far it moved (a
    level's record, which is also a seed's result, names no seed of its own)."""
    keys = ("failed", "train_loss", "final_train_loss", "chance_loss", "chance_score", "eval_loss", "drift")
    return cast(FineTuningSummary, {"seed": seed, **{key: record.get(key) for key in keys}})


def _summarise(runs: list[dict[str, Any]]) -> dict[str, MetricSummary]:
    """Per metric: mean and std over every seed, the values, and how many of the runs failed to learn (the same
    count under each metric: the verdicts read it beside the scores)."""
    out: dict[str, MetricSummary] = {}
    failed = failed_count(runs)
    for name in runs[0]["metrics"]:
        values = [r["metrics"][name] for r in runs]
        mean, std = mean_std(values)
        out[name] = MetricSummary(mean=mean, std=std, values=values, failed=failed)
    return out
