"""A run folder, read-only: where an engine run keeps each level, seed and ticket, and what is done.

The study, the transfer matrix and the report ask it (never training); `bert_tickets.engine.run.ImpRun` extends it with
the training that fills the folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from bert_tickets import paths
from bert_tickets.config import Config, PruningConfig, dense_hash, final_recipe, run_hash
from bert_tickets.errors import UserError
from bert_tickets.files import is_whole, read_json
from bert_tickets.methods import get_method, validated
from bert_tickets.results import ARMS, Arm, TicketInfo
from bert_tickets.tasks import get_task, task_for

KINDS = ARMS  # the evaluation's two arms, each fine-tuned once per seed


def sparsity_schedule(target: float, rate: float, schedule: str = "linear") -> list[float]:
    """Sparsity of each level, starting with the dense level 0. `linear`: each level prunes `rate` of the
    original weights (the paper's code); `geometric`: `rate` of the weights that remain."""
    levels = [0.0]
    while levels[-1] < target - 1e-9:
        levels.append(min(grid_sparsity(len(levels), rate, schedule), target))
    return levels


def grid_sparsity(k: int, rate: float, schedule: str = "linear") -> float:
    """Level k's sparsity on the schedule's own grid (a target between two grid points cuts its last level short)."""
    return round(k * rate if schedule == "linear" else 1.0 - (1.0 - rate) ** k, 10)


def run_dir(config: Config) -> Path:
    return paths.run(config.output_dir, get_task(config.data.task).name, config.pruning.method, run_hash(config))


class RunFolder:
    """An engine run's folder, read-only: its levels along the sparsity schedule, where each level, seed and the
    ticket live (`bert_tickets.paths`), and what is done. Never loads a model and never trains."""

    def __init__(self, config: Config):
        self.config = validated(config)
        self.task = task_for(config.data)  # bound to the user's own files, for task custom
        self.method = get_method(config.pruning.method)
        self.root = run_dir(config)
        p = config.pruning
        # the levels' seed (the mask search); the evaluation's seeds count up from training.seed either way, so two
        # searches are compared seed by seed and share their dense runs
        self.seed = config.training.seed if p.search_seed is None else p.search_seed
        self.sparsities = sparsity_schedule(p.sparsity, p.rate, p.schedule) if self.method.iterative \
            else [0.0, p.sparsity]
        # a level is also one of the evaluation's fine-tunings (level 0 dense, the last level the ticket) unless the
        # levels train by another recipe than the evaluation (the authors' schedule, a carried head) or the
        # evaluation is packed (a packed member's dropout stream is not a lone level's)
        t = config.training
        self.levels_are_evaluations = (p.level_lr_horizon == 1 and not p.carry_head and t.pack == 1
                                       and final_recipe(t) == t)
        # a mask found without training (magnitude, random, a given ticket) needs no dense level 0
        self.trained_levels = list(range(0 if self.method.trains_dense_level else 1, len(self.sparsities)))

    @property
    def pruning(self) -> PruningConfig:
        return self.config.pruning

    def level_dir(self, k: int) -> Path:
        return paths.level(self.root, k, self.sparsities[k])

    def on_grid(self, k: int) -> bool:
        """Level k is the schedule's own: any larger target reuses it. A level cut short by its target (0.6 with a
        rate of 0.25), and a one-shot method's single level, are one target's alone: another target makes another
        level k from level k-1's trained weights, so those are kept."""
        p = self.config.pruning
        return self.method.iterative and self.sparsities[k] == grid_sparsity(k, p.rate, p.schedule)

    def ticket_dir(self) -> Path:
        return paths.ticket(self.root, self.config.pruning.sparsity)

    def dense_dir(self) -> Path:
        """Dense fine-tunings depend on model, data and recipe only: every method's run shares them."""
        return paths.dense(self.root, dense_hash(self.config))

    def result_path(self, kind: Arm, seed: int) -> Path:
        """Where one seed of the final evaluation lives; the run's own seed of a ticket is its last level."""
        if kind == "dense":
            return paths.dense_seed(self.dense_dir(), seed)
        last = len(self.sparsities) - 1
        if seed == self.seed and last in self.trained_levels and self.levels_are_evaluations:
            return paths.metrics(self.level_dir(last))
        return paths.ticket_seed(self.ticket_dir(), seed)

    def level_record(self, k: int) -> dict[str, Any]:
        """A finished level's metrics.json."""
        return read_json(paths.metrics(self.level_dir(k)))

    @property
    def seeds(self) -> list[int]:
        return [self.config.training.seed + i for i in range(self.config.pruning.seeds)]

    def is_done(self) -> bool:
        levels = [paths.metrics(self.level_dir(k)) for k in self.trained_levels]
        return all(is_whole(p) for p in levels + [self.result_path(kind, s) for kind in KINDS for s in self.seeds])

    def finished_ticket(self) -> TicketInfo | None:
        """The ticket.json of a finished run that covers the run's seeds; None otherwise. Never trains. (A
        ticket.json over fewer seeds, written by a run asking for fewer, counts as unfinished.)"""
        path = paths.ticket_info(self.ticket_dir())
        if not (self.is_done() and path.exists()):
            return None
        try:
            info = read_json(path)
        except UserError:  # damaged: recomputed by the run
            return None
        return info if set(self.seeds) <= set(info.get("seeds", [])) else None

    def seed_jobs(self, pending_only: bool = True) -> list[tuple[Arm, int]]:
        """The evaluation's fine-tunings, (kind, seed): independent, so they can run in parallel."""
        return [(kind, s) for s in self.seeds for kind in KINDS
                if not (pending_only and is_whole(self.result_path(kind, s)))]

    def trained_prunable(self, k: int) -> dict[str, torch.Tensor]:
        """Level k's trained prunable weights, the frontier that mask k+1 is pruned from."""
        return load_file(str(paths.trained_prunable(self.level_dir(k))))

    def fine_tunings(self) -> dict[Path, int]:
        """Every fine-tuning this run implies, keyed by the file its result goes to (runs sharing a dense seed
        share its key), with how many fine-tunings each takes (another seed of some methods is a chain of levels)."""
        chain = 1 if self.method.rewinds else len(self.trained_levels)
        implied = {paths.metrics(self.level_dir(k)): 1 for k in self.trained_levels}
        if 0 in self.trained_levels and self.levels_are_evaluations:  # this seed's dense result is level 0's
            implied[self.result_path("dense", self.seed)] = 0
        for kind, seed in self.seed_jobs(pending_only=False):
            implied.setdefault(self.result_path(kind, seed), chain if kind == "ticket" else 1)
        return implied


@dataclass
class FineTunings:
    """The fine-tunings some runs imply (shared runs counted once), those still to train, and how long the trained
    ones took (their records' seconds): what `--plan`'s estimate and the progress bar's time left start from."""

    total: int
    pending: int
    recorded_seconds: list[float]

    def estimate(self) -> float | None:
        """Seconds the pending fine-tunings take in one process at the recorded mean; None with no record."""
        if not self.recorded_seconds:
            return None
        return self.pending * sum(self.recorded_seconds) / len(self.recorded_seconds)


def count_fine_tunings(runs: Iterable[RunFolder]) -> FineTunings:
    """Never trains; reads the records that exist (a damaged one is simply not counted as a duration)."""
    implied: dict[Path, int] = {}
    for run in runs:
        for path, count in run.fine_tunings().items():
            implied[path] = min(count, implied.get(path, count))  # 0 where a run gets it as a by-product
    recorded: list[float] = []
    pending = 0
    for path, count in implied.items():
        if not path.exists():
            pending += count
        elif count:
            with suppress(UserError, KeyError, TypeError, ValueError):
                recorded += [float(read_json(path)["seconds"])] * count  # a chain: its last level's record
    return FineTunings(sum(implied.values()), pending, recorded)
