"""The IMP engine: iterative magnitude pruning with rewinding, level by level, then the ticket's evaluation.

Level k: rewind the encoder to θ0 (or an early-training rewind point), apply mask k, fine-tune with a fresh
head, then prune the smallest surviving trained weights to get mask k+1. Each level has its own folder;
`metrics.json` is written last and marks it done, so a rerun skips it and a killed run resumes.
"""

from __future__ import annotations

import copy
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from bert_tickets import __version__
from bert_tickets.config import NEEDS_TICKET, Config, dense_hash, non_default_settings, reproduce_command, run_hash
from bert_tickets.errors import UserError
from bert_tickets.masks import (
    Mask,
    collapse_warning,
    fit_mask,
    full_mask,
    load_mask,
    magnitude_mask,
    magnitude_outliers,
    prunable_parameters,
    random_mask,
    save_mask,
    select_prunable,
    sparsity_report,
)
from bert_tickets.modeling import Pretrained, head_state_of, load_pretrained, load_tokenizer, shuffled_weights
from bert_tickets.runs import atomic_write, log, read_json, read_json_if_exists, write_json
from bert_tickets.tasks import get_task
from bert_tickets.ticket import INFO_FILE, MASK_FILE, Ticket
from bert_tickets.tracking import Tracker
from bert_tickets.training import FitResult, encoder_state, fine_tune, make_accelerator, mean_std

TRAINED_FILE = "trained_prunable.safetensors"  # kept at the last level only, to extend the run later
WEIGHTS = {  # what the ticket's mask was fine-tuned from, per method
    "imp": "θ0 (pre-trained)", "oneshot": "θ0 (pre-trained)", "magnitude": "θ0 (pre-trained)",
    "random": "θ0 (pre-trained)", "ticket": "θ0 (pre-trained)", "reinit": "random re-initialisation",
    "shuffle": "θ0 with each prunable matrix's weights shuffled within the matrix",
    "standard": "no rewinding: each level trained on from the last (scores are of the pruned, trained network)",
}
TRAINED_MODEL_FILE = "trained_model.safetensors"  # standard pruning: each level's trained network, to go on from


def sparsity_schedule(target: float, rate: float, schedule: str = "linear") -> list[float]:
    """Sparsity of each level, starting with the dense level 0. `linear`: each level prunes `rate` of the
    original weights (the paper's code); `geometric`: `rate` of the weights that remain."""
    levels = [0.0]
    while levels[-1] < target - 1e-9:
        k = len(levels)
        nxt = k * rate if schedule == "linear" else 1.0 - (1.0 - rate) ** k
        levels.append(min(round(nxt, 10), target))
    return levels


def run_dir(config: Config) -> Path:
    return Path(config.output_dir) / get_task(config.data.task).name / f"{config.pruning.method}_{run_hash(config)}"


class ImpRun:
    """One IMP study (model × task × recipe); any target sparsity along its schedule reuses its levels."""

    def __init__(self, config: Config):
        self.config = config.validate()
        self.task = get_task(config.data.task)
        self.root = run_dir(config)
        self.seed = config.training.seed
        p = config.pruning
        self.method = p.method
        iterative = p.method in ("imp", "standard")
        self.sparsities = sparsity_schedule(p.sparsity, p.rate, p.schedule) if iterative else [0.0, p.sparsity]
        # magnitude, random and given masks need no training to be found: their dense level 0 is never trained
        self.trained_levels = list(range(0 if p.method in ("imp", "oneshot", "standard") else 1, len(self.sparsities)))

    # --- lazily loaded, so a finished run touches neither model nor data ---------------------------
    @cached_property
    def pretrained(self) -> Pretrained:
        pretrained = load_pretrained(self.config.model.name, self.task, self.tokenizer)
        log(f"loaded {self.config.model.name}")
        if (note := pretrained.describe_head()) is not None:
            log(note)
        return pretrained

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.config.model.name)

    @cached_property
    def data(self):
        return self.task.prepare(self.tokenizer, self.config.data, seed=self.seed)

    @cached_property
    def accelerator(self):
        return make_accelerator(self.config.training)

    @cached_property
    def tracker(self) -> Tracker:
        t = self.config.training
        settings = non_default_settings(self.config) | {
            "task": self.task.name, "model": self.config.model.name, "method": self.method,
            "run_hash": run_hash(self.config), "run_dir": str(self.root)}
        return Tracker(enabled=t.report_to == "wandb" and self.accelerator.is_main_process,
                       project=t.wandb_project, study=t.study or f"{self.task.name}/{self.root.name}",
                       settings=settings, directory=self.root)

    # --- folders ---------------------------------------------------------------------------------
    def level_dir(self, k: int) -> Path:
        return self.root / f"level_{k:02d}_sparsity_{self.sparsities[k]:.4f}"

    def ticket_dir(self) -> Path:
        return self.root / "tickets" / f"sparsity_{self.config.pruning.sparsity:.4f}"

    # --- the study -------------------------------------------------------------------------------
    def run(self) -> Ticket:
        self.run_levels()
        return self.evaluate_ticket()

    def run_levels(self) -> None:
        if not self.is_done():
            _ = self.data, self.pretrained  # fail on bad model or data before anything is logged or written
            self._warn_magnitude_outliers()
        self._write_config()
        for k in self.trained_levels:
            self.run_level(k)
        if 0 in self.trained_levels and not self.result_path("dense", self.seed).exists():
            # level 0 is the dense fine-tuning of this seed: share it with every method's run
            level0 = read_json(self.level_dir(0) / "metrics.json")
            write_json(self.result_path("dense", self.seed), {"seed": self.seed, **level0})

    def seed_jobs(self, pending_only: bool = True) -> list[tuple[str, int]]:
        """The evaluation's fine-tunings, (kind, seed): independent, so they can run in parallel."""
        return [(kind, s) for s in self.seeds for kind in ("ticket", "dense")
                if not (pending_only and self.result_path(kind, s).exists())]

    def fine_tunings(self) -> dict[Path, int]:
        """Every fine-tuning this run implies, keyed by the file its result goes to (runs sharing a dense seed
        share its key), with how many fine-tunings each takes: another seed of `standard` is a chain of levels."""
        chain = len(self.trained_levels) if self.method == "standard" else 1
        implied = {self.level_dir(k) / "metrics.json": 1 for k in self.trained_levels}
        if 0 in self.trained_levels:  # this seed's dense result is a copy of level 0: no training of its own
            implied[self.result_path("dense", self.seed)] = 0
        for kind, seed in self.seed_jobs(pending_only=False):
            implied.setdefault(self.result_path(kind, seed), chain if kind == "ticket" else 1)
        return implied

    def run_seed_job(self, kind: str, seed: int) -> None:
        self._seed_run(kind, seed, len(self.sparsities) - 1 if kind == "ticket" else 0)

    def finished_ticket(self) -> dict[str, Any] | None:
        """The ticket.json of a finished run that covers the run's seeds; None otherwise. Never trains. (A
        ticket.json over fewer seeds, written by a run asking for fewer, counts as unfinished.)"""
        path = self.ticket_dir() / INFO_FILE
        if not (self.is_done() and path.exists()):
            return None
        info = read_json(path)
        return info if set(self.seeds) <= set(info.get("seeds", [])) else None

    def is_done(self) -> bool:
        levels = [self.level_dir(k) / "metrics.json" for k in self.trained_levels]
        seeds = [self.result_path(kind, s) for kind in ("ticket", "dense") for s in self.seeds]
        return all(p.exists() for p in levels + seeds)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.config.pruning.seeds)]

    def dense_dir(self) -> Path:
        """Dense fine-tunings depend on model, data and recipe only: every method's run shares them."""
        return self.root.parent / f"dense_{dense_hash(self.config)}"

    def result_path(self, kind: str, seed: int) -> Path:
        """Where one seed of the final evaluation lives; the run's own seed of a ticket is its last level."""
        if kind == "dense":
            return self.dense_dir() / f"seed_{seed}.json"
        last = len(self.sparsities) - 1
        if seed == self.seed and last in self.trained_levels:
            return self.level_dir(last) / "metrics.json"
        return self.ticket_dir() / "seeds" / f"seed_{seed}.json"

    def _write_config(self) -> None:
        write_json(self.root / "config.json", {
            "run_hash": run_hash(self.config), "non_default": non_default_settings(self.config),
            "config": self.config.to_dict(), "bert_tickets_version": __version__})

    def run_level(self, k: int) -> dict[str, Any]:
        folder = self.level_dir(k)
        done = read_json_if_exists(folder / "metrics.json")
        if done is not None:
            log(f"level {k} (sparsity {self.sparsities[k]:.2%}) already done: skipping")
            return done
        log(f"level {k}/{len(self.sparsities) - 1}: sparsity {self.sparsities[k]:.2%}")
        mask = self.level_mask(k)
        model = self._build(self.seed, rewound=k > 0, keep_head=k > 0)
        if self.method == "standard" and k > 0:  # no rewinding: go on from the last level's trained network
            load_model(model, str(self.level_dir(k - 1) / TRAINED_MODEL_FILE))
        on_step = self._rewind_capture if k == 0 and self.config.pruning.rewind_step > 0 else None
        name = f"{self.task.name}-{self.method}-level{k}"
        with self.tracker.run(name, "level", level=k, sparsity=self.sparsities[k], seed=self.seed) as track:
            result = fine_tune(model, self.data, self.task, self.tokenizer, self.config.training,
                               self.accelerator, self.seed, mask=mask if k > 0 else None, on_step=on_step,
                               desc=f"level {k} ({self.sparsities[k]:.0%})", log=track)
        self._check_zeros(result, k)
        if k == 0 and self.config.pruning.rewind_step > 0 and not self._rewind_path.exists():
            raise UserError(f"rewind step {self.config.pruning.rewind_step} is beyond the {result.steps} "
                            "training steps of a level")
        if k + 1 < len(self.sparsities) or self.method == "imp":
            trained = {n: p.detach().cpu().contiguous()
                       for n, p in prunable_parameters(model, self.config.pruning.prunable).items()}
            if k + 1 < len(self.sparsities):
                self._prune_next(k, trained, mask)
            else:  # the IMP frontier: keep what a later, sparser target needs to prune from here
                atomic_write(folder / TRAINED_FILE, lambda tmp: save_file(trained, tmp))
        if self.method == "standard":
            atomic_write(folder / TRAINED_MODEL_FILE, lambda tmp: save_model(model, tmp))
        record = {"level": k, "sparsity": self.sparsities[k], **result.to_dict()}
        report = sparsity_report(mask)
        if (warning := collapse_warning(report)) is not None:
            log(f"warning: level {k}: {warning}")
        write_json(folder / "sparsity.json", report)
        write_json(folder / "metrics.json", record)
        log(f"level {k} done: {self._primary(result.metrics)} in {result.seconds:.0f}s")
        return record

    def level_mask(self, k: int) -> Mask:
        if k == 0:
            params = select_prunable(self.pretrained.theta0, self.config.pruning.prunable)
            if not params:
                raise UserError("no encoder weights match the prunable patterns "
                                f"{self.config.pruning.prunable} for {self.config.model.name}")
            return full_mask(params)
        path = self.level_dir(k) / MASK_FILE
        if not path.exists() and self.method in ("magnitude", "random", *NEEDS_TICKET):
            mask = self._mask_without_training(self.sparsities[k])
            save_mask(path, mask)
            return mask
        if not path.exists():
            trained = self.level_dir(k - 1) / TRAINED_FILE
            if not trained.exists():
                raise RuntimeError(f"{path} is missing: delete {self.level_dir(k - 1)} and rerun")
            return self._prune_next(k - 1, load_file(str(trained)), self.level_mask(k - 1))
        return load_mask(path)

    def _mask_without_training(self, sparsity: float) -> Mask:
        if self.method in NEEDS_TICKET:
            mask = Ticket.load(self.config.pruning.ticket).mask
            fit_mask(self._build(self.seed), mask)  # a clear error now if it was found on another architecture
            if abs(sparsity_report(mask)["sparsity"] - sparsity) > 1e-3:
                raise UserError(f"the ticket's sparsity is {sparsity_report(mask)['sparsity']:.4f}, not {sparsity}")
            return mask
        theta0 = select_prunable(self.pretrained.theta0, self.config.pruning.prunable)
        if self.method == "magnitude":
            return magnitude_mask(theta0, self.level_mask(0), sparsity, self.config.pruning.scope)
        return random_mask(theta0, sparsity, seed=self.seed)

    def _prune_next(self, k: int, trained: dict[str, torch.Tensor], mask: Mask) -> Mask:
        """Mask k+1 from level k's trained weights; the frontier's saved weights are no longer needed."""
        nxt = magnitude_mask(trained, mask, self.sparsities[k + 1], self.config.pruning.scope)
        save_mask(self.level_dir(k + 1) / MASK_FILE, nxt)
        (self.level_dir(k) / TRAINED_FILE).unlink(missing_ok=True)
        return nxt

    def evaluate_ticket(self) -> Ticket:
        folder, last = self.ticket_dir(), len(self.sparsities) - 1
        mask_path = self.level_dir(last) / MASK_FILE
        ticket_runs = [self._seed_run("ticket", s, last) for s in self.seeds]
        dense_runs = [self._seed_run("dense", s, 0) for s in self.seeds]
        mask = load_mask(mask_path)
        atomic_write(folder / MASK_FILE, lambda tmp: shutil.copyfile(mask_path, tmp))
        info = self._ticket_info(mask, ticket_runs, dense_runs, self.seeds)
        write_json(folder / INFO_FILE, info)
        return Ticket(path=folder, info=info, mask=mask)

    def _seed_run(self, kind: str, seed: int, level: int) -> dict[str, Any]:
        """One seed of the final evaluation: `level`'s mask on θ0 with a fresh head."""
        path = self.result_path(kind, seed)
        if (done := read_json_if_exists(path)) is not None:
            return done
        if kind == "ticket" and self.method == "standard":  # another seed is another whole chain of levels
            chain = copy.deepcopy(self.config)
            chain.training.seed, chain.pruning.seeds = seed, 1
            other = ImpRun(chain)
            other.run()
            record = {"seed": seed, **read_json(other.level_dir(len(self.sparsities) - 1) / "metrics.json")}
            write_json(path, record)
            return record
        log(f"{kind}: seed {seed}")
        mask = self.level_mask(level) if level > 0 else None
        model = self._build(seed, rewound=level > 0)
        name = f"{self.task.name}-{self.method}-{kind}-seed{seed}"
        with self.tracker.run(name, kind, sparsity=self.sparsities[level], seed=seed) as track:
            result = fine_tune(model, self.data, self.task, self.tokenizer, self.config.training,
                               self.accelerator, seed, mask=mask, desc=f"{kind} seed {seed}", log=track)
        self._check_zeros(result, level)
        record = {"seed": seed, "sparsity": self.sparsities[level], **result.to_dict()}
        write_json(path, record)
        return record

    def _ticket_info(self, mask: Mask, ticket_runs: list[dict], dense_runs: list[dict],
                     seeds: list[int]) -> dict[str, Any]:
        ticket, dense = _summarise(ticket_runs), _summarise(dense_runs)
        primary = self.task.primary_metric
        matching = ticket[primary]["mean"] >= dense[primary]["mean"] - dense[primary]["std"]
        p = self.config.pruning
        report = sparsity_report(mask)
        return {
            "task": self.task.name, "model": self.config.model.name, "method": self.method,
            "sparsity": report["sparsity"], "target_sparsity": p.sparsity, "scope": p.scope,
            "per_matrix_sparsity": report["per_matrix"], "collapsed_matrices": report["collapsed"],
            "collapse_rule": report["collapse_rule"],
            "schedule": p.schedule, "rate": p.rate, "levels": self.sparsities, "rewind_step": p.rewind_step,
            "weights": WEIGHTS[self.method] if not p.rewind_step else f"rewound to training step {p.rewind_step}",
            "prunable": p.prunable, "source_ticket": p.ticket, "pooler_in_mask": any("pooler" in n for n in mask),
            "pooler_rule": "a mask without a pooler entry leaves a model's pooler dense; a pooler entry is skipped "
                           "for models without a pooler",
            "mask_keys": "encoder parameter names (model.base_model)",
            "seeds": seeds, "primary_metric": primary, "matching": bool(matching),
            "matching_rule": "ticket mean >= dense mean - one dense standard deviation (Chen et al. 2020)",
            "metrics": {"ticket": ticket, "dense": dense},
            "run_dir": str(self.root), "run_hash": run_hash(self.config),
            "config": non_default_settings(self.config), "command": reproduce_command(self.config),
            "bert_tickets_version": __version__,
        }

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def _rewind_path(self) -> Path:
        return self.root / "rewind_point.safetensors"

    @property
    def _head_path(self) -> Path:
        return self.root / "initial_head.safetensors"

    def _build(self, seed: int, rewound: bool = False, keep_head: bool = False) -> torch.nn.Module:
        encoder = None
        if rewound and self.config.pruning.rewind_step > 0:
            encoder = load_file(str(self._rewind_path))
        head = None
        if self.config.pruning.keep_head and keep_head and self._head_path.exists():
            head = load_file(str(self._head_path))
        reinit = rewound and self.method == "reinit"
        if rewound and self.method == "shuffle":
            names = list(select_prunable(self.pretrained.theta0, self.config.pruning.prunable))
            encoder = shuffled_weights(encoder if encoder is not None else self.pretrained.theta0, names, seed)
        model = self.pretrained.build(seed, encoder_state=encoder, head_state=head, reinit=reinit)
        if self.config.pruning.keep_head and not self._head_path.exists():
            state = head_state_of(model)
            atomic_write(self._head_path, lambda tmp: save_file(state, tmp))
        return model

    def _warn_magnitude_outliers(self) -> None:
        """Before any pruning: a matrix of tiny weights is what one global magnitude threshold empties first."""
        if self.config.pruning.scope != "global" or self.method not in ("imp", "oneshot", "magnitude", "standard"):
            return
        params = select_prunable(self.pretrained.theta0, self.config.pruning.prunable)
        for name, mean in magnitude_outliers(params).items():
            log(f"warning: {name} has mean |w| {mean:.4f}, far below the other prunable matrices: one global "
                "magnitude threshold will prune it first (a layer the checkpoint never trained?)")

    def _rewind_capture(self, step: int, model: torch.nn.Module) -> None:
        if step == self.config.pruning.rewind_step:
            state = encoder_state(model)
            atomic_write(self._rewind_path, lambda tmp: save_file(state, tmp))

    def _check_zeros(self, result: FitResult, level: int) -> None:
        if result.revived_weights:
            raise RuntimeError(f"level {level}: {result.revived_weights} pruned weights became non-zero")

    def _primary(self, metrics: dict[str, float]) -> str:
        key = self.task.primary_metric
        return f"{key} {100 * metrics[key]:.2f}"


def _summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = runs[0]["metrics"].keys()
    out = {}
    for name in names:
        values = [r["metrics"][name] for r in runs]
        mean, std = mean_std(values)
        out[name] = {"mean": mean, "std": std, "values": values}
    return out


def find_ticket(config: Config) -> Ticket:
    """Find (or reuse) the IMP ticket that `config` describes and evaluate it next to dense."""
    return ImpRun(config).run()
