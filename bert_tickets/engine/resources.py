"""What a run loads, lazily: a finished run touches neither model nor data."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from bert_tickets.config import Config, flat_settings, non_default_settings, run_hash
from bert_tickets.engine.masks import magnitude_outliers, select_prunable
from bert_tickets.engine.modeling import Pretrained, load_pretrained, load_tokenizer
from bert_tickets.engine.training import make_accelerator
from bert_tickets.errors import UserError
from bert_tickets.ranks import log
from bert_tickets.tasks import TaskAdapter
from bert_tickets.tracking import Tracker


class RunResources:
    def __init__(self, config: Config, task: TaskAdapter, root: Path):
        self.config, self.task, self.root = config, task, root

    @cached_property
    def pretrained(self) -> Pretrained:
        pretrained = load_pretrained(self.config.model.name, self.task, self.tokenizer, self.config.model.revision)
        if self.config.data.max_length > pretrained.max_length:
            raise UserError(f"data.max_length {self.config.data.max_length} is more than {self.config.model.name} "
                            f"takes ({pretrained.max_length} positions)")
        log(f"loaded {self.config.model.name}")
        if (note := pretrained.describe_head()) is not None:
            log(note)
        return pretrained

    @cached_property
    def tokenizer(self) -> Any:
        return load_tokenizer(self.config.model.name, self.config.model.revision)

    @cached_property
    def data(self) -> Any:
        with self.accelerator.main_process_first():  # one tokenization; the other ranks read its cache
            return self.task.prepare(self.tokenizer, self.config.data, seed=self.config.training.seed)

    @cached_property
    def accelerator(self) -> Any:
        return make_accelerator(self.config.training)

    @cached_property
    def tracker(self) -> Tracker:
        t = self.config.training
        settings = flat_settings(self.config) | {  # every setting, resolved: defaults, recipe, preset, overrides
            "task": self.task.name, "model": self.config.model.name, "method": self.config.pruning.method,
            "run_hash": run_hash(self.config), "run_dir": str(self.root),
            "changed_settings": sorted(non_default_settings(self.config))}
        project = t.wandb_project or os.environ.get("WANDB_PROJECT") or "bert-tickets"  # as Trainer users set it
        return Tracker(report_to=t.report_to if self.accelerator.is_main_process else "none",
                       project=project, study=t.study or f"{self.task.name}/{self.root.name}",
                       settings=settings, directory=self.root)

    @property
    def loaded_commit(self) -> str | None:
        """The Hub commit θ0 was loaded from, if this process loaded it (a finished run loads nothing)."""
        loaded = self.__dict__.get("pretrained")  # the cached_property's value, only once it was used
        return loaded.commit if loaded is not None else None

    def theta0_prunable(self) -> dict[str, torch.Tensor]:
        """θ0's prunable matrices (with those the task's model lacks: masked LM's pooler), or one clear error when
        the patterns select none."""
        params = select_prunable(self.pretrained.theta0, self.config.pruning.prunable)
        params |= self.theta0_prunable_beyond_model()
        if not params:
            raise UserError("no encoder weights match the prunable patterns "
                            f"{self.config.pruning.prunable} for {self.config.model.name}")
        return params

    def theta0_prunable_beyond_model(self) -> dict[str, torch.Tensor]:
        """Prunable θ0 weights the task's model has no place for: never trained, so every level's frontier holds
        them as θ0 (masked LM's pooler, `modeling.checkpoint_pooler`)."""
        return select_prunable(self.pretrained.theta0_beyond_model, self.config.pruning.prunable)

    def warn_magnitude_outliers(self) -> None:
        """Before any pruning: a matrix of tiny weights is what one global magnitude threshold empties first."""
        for name, mean in magnitude_outliers(self.theta0_prunable()).items():
            log(f"warning: {name} has mean |w| {mean:.4f}, far below the other prunable matrices: one global "
                "magnitude threshold will prune it first (a layer the checkpoint never trained?)")
