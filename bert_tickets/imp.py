"""The IMP engine: iterative magnitude pruning with rewinding, level by level, then the ticket's evaluation.

Level k: rewind the encoder to θ0 (or an early-training rewind point), apply mask k, fine-tune with a fresh
head; mask k+1 is then pruned from what level k leaves (the method decides how: `bert_tickets.methods`). Each
level has its own folder (`bert_tickets.paths`); `metrics.json` is written last and marks it done, so a rerun
skips it and a killed run resumes.

The public surface of a run, for the command line, transfer, studies, workers and tests: what its folder holds
(`bert_tickets.run_folder.RunFolder`: levels, seeds, done checks), and here `run`, `run_levels`, `evaluate_ticket`,
`run_seed_job` (one of the evaluation's independent fine-tunings; `SeedWork` splits them over local workers),
`lock`, `level_mask`, `build_model` and `resources` (what the run loads: θ0, data, accelerator). The rest is
private; the methods (`bert_tickets.methods`) read `trained_prunable` and `resources` to make their masks.
"""

from __future__ import annotations

import copy
import math
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from bert_tickets import __version__, paths
from bert_tickets.checkpoints import remove_checkpoint
from bert_tickets.config import Config, non_default_settings, reproduce_command, run_hash
from bert_tickets.errors import UserError
from bert_tickets.masks import (
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
from bert_tickets.modeling import head_state_of
from bert_tickets.provenance import data_source, model_source
from bert_tickets.resources import RunResources
from bert_tickets.run_folder import RunFolder
from bert_tickets.runs import (
    atomic_write,
    barrier,
    check_output_location,
    copy_file,
    folder_lock,
    holds_lock,
    is_main_process,
    is_whole,
    log,
    rank0_sees,
    read_json,
    read_json_if_exists,
    result_lock,
    write_json,
)
from bert_tickets.stats import MATCHING_RULE, is_matching, mean_std
from bert_tickets.ticket import Ticket
from bert_tickets.training import FAILED_RULE, FitResult, encoder_state, fine_tune


class ImpRun(RunFolder):
    """One engine run (model × task × method × recipe): trains what its folder still lacks. Any target sparsity
    along its schedule reuses its levels."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.resources = RunResources(self.config, self.task, self.root)

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
            "config": self.config.to_dict(), "bert_tickets_version": __version__})
        for k in self.trained_levels:
            if k > 0:
                self._run_level(k)
                continue
            dense = self.result_path("dense", self.seed)
            with result_lock(dense):  # level 0 is this seed's dense fine-tuning: other runs wait for it, then share it
                self._run_level(0)
                if self.levels_are_evaluations and not rank0_sees(dense):
                    write_json(dense, {"seed": self.seed, **self.level_record(0)})
        barrier()  # what the main rank wrote is there for the others' done checks

    def run_seed_job(self, kind: str, seed: int) -> dict[str, Any]:
        """One seed of the final evaluation: the ticket's mask (or none, dense) on θ0 with a fresh head."""
        path = self.result_path(kind, seed)
        with result_lock(path):  # dense seeds are shared between runs: the second to come waits and reuses
            return read_json(path) if rank0_sees(path) else self._seed_run(kind, seed, path)

    def _seed_run(self, kind: str, seed: int, path: Path) -> dict[str, Any]:
        if kind == "ticket" and not self.method.rewinds:  # another seed is another whole chain of levels
            chain = copy.deepcopy(self.config)
            chain.training.seed, chain.pruning.seeds, chain.pruning.search_seed = seed, 1, None
            other = ImpRun(chain)
            other.run()
            return write_json_record(path, {"seed": seed, **other.level_record(len(self.sparsities) - 1)})
        level = len(self.sparsities) - 1 if kind == "ticket" else 0
        log(f"{kind}: seed {seed}")
        mask = self.level_mask(level) if level > 0 else None
        model = self.build_model(seed, rewound=level > 0)
        result = self._fine_tune(model, mask, kind, f"{kind}-seed{seed}", f"{kind} seed {seed}",
                                 {"sparsity": self.sparsities[level], "seed": seed}, path,
                                 mask_file=paths.mask(self.level_dir(level)) if level > 0 else None)
        check_zeros(result, level)
        if kind == "ticket":
            self._keep_finetuned(model, seed)
        return write_json_record(path, {"seed": seed, "sparsity": self.sparsities[level], **result.to_dict()})

    def evaluate_ticket(self) -> Ticket:
        folder, last = self.ticket_dir(), len(self.sparsities) - 1
        mask_path = paths.mask(self.level_dir(last))
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
            return full_mask(self.resources.theta0_prunable())
        path = paths.mask(self.level_dir(k))
        if rank0_sees(path):  # the ranks decide together, or one would skip a barrier the others wait at
            return load_mask(path)
        mask = self.method.level_mask(self, k)  # on every rank alike (the main one saves it)
        save_mask(path, mask, self.config.pruning.prunable)
        barrier()  # every rank has read the frontier before it goes
        if is_main_process() and self.on_grid(k):  # the frontier has moved on: a larger target reuses level k
            paths.trained_prunable(self.level_dir(k - 1)).unlink(missing_ok=True)
        return mask

    def trained_prunable(self, k: int) -> dict[str, torch.Tensor]:
        """Level k's trained prunable weights; let go once level k+1 was made, they are trained again (the same
        seed, data order and recipe: the same weights) when a smaller target than before needs another level k+1."""
        if not rank0_sees(paths.trained_prunable(self.level_dir(k))):
            log(f"level {k}: training it again for the trained weights another level {k + 1} is pruned from")
            self._run_level(k, frontier_only=True)
        return super().trained_prunable(k)

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

    # --- private -------------------------------------------------------------------------------------
    def _run_level(self, k: int, frontier_only: bool = False) -> dict[str, Any]:
        """Train level k (its record marks it done); `frontier_only`: a done level again, for its trained weights."""
        folder, sparsity, rewind = self.level_dir(k), self.sparsities[k], self.config.pruning.rewind_step
        if not frontier_only and (done := read_json_if_exists(paths.metrics(folder))) is not None:
            log(f"level {k} (sparsity {sparsity:.2%}) already done: skipping")
            return done
        log(f"level {k}/{len(self.sparsities) - 1}: sparsity {sparsity:.2%}")
        mask = self.level_mask(k)
        model = self.build_model(self.seed, rewound=k > 0, keep_head=k > 0)
        if k > 0 and self.config.pruning.carry_head:  # the authors' code rewinds the encoder only
            load_model(model, str(paths.trained_head(self.level_dir(k - 1))), strict=False)
        if self.config.pruning.keep_head and not paths.initial_head(self.root).exists():  # kept for later levels
            save_tensors(paths.initial_head(self.root), head_state_of(model))
        if k > 0 and not self.method.rewinds:  # go on from the last level's trained network
            load_model(model, str(paths.trained_model(self.level_dir(k - 1))))
        capture = partial(capture_rewind_point, self.root, rewind) if k == 0 and rewind and not frontier_only else None
        record_path = paths.trained_prunable(folder) if frontier_only else paths.metrics(folder)
        result = self._fine_tune(model, mask if k > 0 else None, "level", f"level{k}", f"level {k} ({sparsity:.0%})",
                                 {"level": k, "sparsity": sparsity, "seed": self.seed}, record_path,
                                 on_step=capture, mask_file=paths.mask(folder) if k > 0 else None,
                                 lr_horizon=self.config.pruning.level_lr_horizon)
        check_zeros(result, k)
        if frontier_only:
            self._save_frontier(model, folder)
            remove_checkpoint(record_path)
            barrier()
            return read_json(paths.metrics(folder))
        if k == 0 and rewind and not paths.rewind_point(self.root).exists():
            raise UserError(f"rewind step {rewind} is beyond the {result.steps} training steps of a level")
        if self.method.trains_dense_level and (k + 1 < len(self.sparsities) or self.method.extendable):
            self._save_frontier(model, folder)
        if not self.method.rewinds:
            atomic_write(paths.trained_model(folder), lambda tmp: save_model(model, tmp))
        if self.config.pruning.carry_head:
            save_tensors(paths.trained_head(folder), {n: t.cpu().contiguous() for n, t in head_state_of(model).items()})
        if k == len(self.sparsities) - 1 and self.levels_are_evaluations:  # the last level is a ticket seed
            self._keep_finetuned(model, self.seed)
        record = {"level": k, "sparsity": sparsity, **result.to_dict()}
        if k > 0 and self.method.prunes_by_magnitude:  # how far the mask is from pruning θ0 once by magnitude
            record["jaccard_to_theta0_magnitude"] = self._jaccard_to_theta0_magnitude(mask, sparsity)
        report = sparsity_report(mask)
        if (warning := collapse_warning(report)) is not None:
            log(f"warning: level {k}: {warning}")
        write_json(paths.sparsity(folder), report)
        write_json_record(paths.metrics(folder), record)
        barrier()  # the other ranks go on to read what the main one wrote
        log(f"level {k} done: {self.task.primary_metric} {100 * result.metrics[self.task.primary_metric]:.2f} "
            f"in {result.seconds:.0f}s")
        return record

    def _keep_finetuned(self, model: torch.nn.Module, seed: int) -> None:
        """With `training.keep_finetuned`, a ticket seed's whole fine-tuned task model, for `push --fine-tuned`."""
        if self.config.training.keep_finetuned:
            atomic_write(paths.finetuned(self.ticket_dir(), seed), lambda tmp: save_model(model, tmp))

    def _save_frontier(self, model: torch.nn.Module, folder: Path) -> None:
        trained = {n: p.detach().cpu().contiguous()
                   for n, p in prunable_parameters(model, self.config.pruning.prunable).items()}
        save_tensors(paths.trained_prunable(folder), trained)

    def _jaccard_to_theta0_magnitude(self, mask: Mask, sparsity: float) -> float:
        theta0 = self.resources.theta0_prunable()
        return jaccard(mask, magnitude_mask(theta0, full_mask(theta0), sparsity, self.config.pruning.scope))

    def _fine_tune(self, model: torch.nn.Module, mask: Mask | None, job_type: str, name: str, desc: str,
                   details: dict[str, Any], result: Path, on_step: Any = None,
                   mask_file: Path | None = None, lr_horizon: float = 1.0) -> FitResult:
        """One fine-tuning of `model` (seed `details["seed"]`) whose record goes to `result` (its checkpoint beside
        it), tracked as one wandb run when tracking is on: its final scores in the run's summary, and its mask
        (`mask_file`) as an artifact."""
        r = self.resources
        prunable = self.config.pruning.prunable
        # where training starts: the masked weights (pruning is not movement); the parameters themselves are kept,
        # since LoRA renames the layers it wraps
        params = prunable_parameters(model, prunable)
        start = {n: p.detach().cpu() * mask[n] if mask is not None and n in mask else p.detach().cpu().clone()
                 for n, p in params.items()}
        with r.tracker.run(f"{self.task.name}-{self.method.name}-{name}", job_type, **details) as track:
            fit = fine_tune(model, r.data, self.task, r.tokenizer, self.config.training, r.accelerator,
                            details["seed"], mask=mask, on_step=on_step, desc=desc, log=track,
                            checkpoint=paths.checkpoint(result), lr_horizon=lr_horizon)
            fit.drift = relative_drift(start, params)
            if track is not None:
                sparsity, hash_ = details["sparsity"], run_hash(self.config)
                artifact = f"mask-{self.task.name}-{self.method.name}-{hash_}-{paths.sparsity_name(sparsity)}"
                track.close(fit.metrics, mask_file, artifact,
                            {"task": self.task.name, "method": self.method.name, "sparsity": sparsity,
                             "run_hash": hash_, "model": self.config.model.name})
            return fit


class SeedWork:
    """A run's evaluation seeds for local workers (`bert_tickets.workers.LocalWork`), once its levels are done."""

    def __init__(self, run: ImpRun):
        self.run, self.workers_dir = run, paths.workers(run.root)

    def rounds(self) -> dict[str, list[tuple[str, int]]]:
        return {"seeds": self.run.seed_jobs(pending_only=False)}

    def run_unit(self, unit: tuple[str, int]) -> None:
        self.run.run_seed_job(*unit)

    def is_done(self, unit: tuple[str, int]) -> bool:
        return is_whole(self.run.result_path(*unit))  # as `seed_jobs` counts it

    def before_workers(self) -> bool:
        if self.run.finished_ticket() is not None:  # a finished rerun writes nothing, whatever --workers says
            return False
        self.run.run_levels()  # one after another by nature; the seeds' fine-tunings are independent
        return bool(self.run.seed_jobs())


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


def ticket_info(run: ImpRun, mask: Mask, ticket_runs: list[dict], dense_runs: list[dict]) -> dict[str, Any]:
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
        "prunable": p.prunable, "source_ticket": p.ticket, "pooler_in_mask": any("pooler" in n for n in mask),
        "pooler_rule": "a mask without a pooler entry leaves a model's pooler dense; a pooler entry is skipped "
                       "for models without a pooler",
        "mask_keys": "encoder parameter names (model.base_model)",
        "seeds": run.seeds, "primary_metric": primary, "matching": matching, "matching_rule": MATCHING_RULE,
        "metrics": {"ticket": ticket, "dense": dense},
        "runs": {kind: [_run_summary(r, seed) for r, seed in zip(runs, run.seeds, strict=True)]
                 for kind, runs in (("ticket", ticket_runs), ("dense", dense_runs))},
        "failed_rule": FAILED_RULE,
        "model_source": model_source(config.model.name, config.model.revision, _loaded_commit(run)),
        "data_source": data_source(run.task, config.data),
        "run_dir": str(run.root), "run_hash": run_hash(config),
        "config": non_default_settings(config), "command": reproduce_command(config),
        "bert_tickets_version": __version__,
    }


def _loaded_commit(run: ImpRun) -> str | None:
    """The Hub commit θ0 was loaded from, if this process loaded it (a finished run loads nothing)."""
    loaded = vars(run.resources).get("pretrained")  # a cached_property, filled only once used
    return loaded.commit if loaded is not None else None


def _run_summary(record: dict[str, Any], seed: int) -> dict[str, Any]:
    """What the report needs of one fine-tuning beside its scores: did it learn, its losses, how far it moved (a
    level's record, which is also a seed's result, names no seed of its own)."""
    keys = ("failed", "train_loss", "final_train_loss", "chance_loss", "eval_loss", "drift")
    return {"seed": seed, **{key: record.get(key) for key in keys}}


def _summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in runs[0]["metrics"]:
        values = [r["metrics"][name] for r in runs]
        mean, std = mean_std(values)
        out[name] = {"mean": mean, "std": std, "values": values}
    return out


def find_ticket(config: Config) -> Ticket:
    """Find (or reuse) the ticket that `config` describes and evaluate it next to dense."""
    return ImpRun(config).run()
