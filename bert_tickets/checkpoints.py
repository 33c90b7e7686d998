"""Resuming inside a fine-tuning: the training state (model, optimizer, scheduler, RNG, data position and the
running loss) saved with accelerate's `save_state` every `training.checkpoint_minutes` (or `checkpoint_steps`),
atomically, so a killed level restarts from its last checkpoint instead of step 0, with the same result as an
uninterrupted run. One checkpoint per fine-tuning, deleted once its result is written.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from bert_tickets import paths
from bert_tickets.config import TrainingConfig
from bert_tickets.ranks import barrier, is_main_process, log
from bert_tickets.runs import read_json, write_json

PROGRESS = "progress.json"  # written last: a checkpoint without it is incomplete

def _aside(folder: Path, suffix: str) -> Path:
    """`<folder>.new` (a checkpoint being written) or `<folder>.old` (the one it replaces, during the swap)."""
    return folder.with_name(folder.name + suffix)


def remove_checkpoint(result: Path) -> None:
    """Once a fine-tuning's record is written, its checkpoint (and any half-swapped copy) goes."""
    if is_main_process():
        folder = paths.checkpoint(result)
        for leftover in (folder, _aside(folder, ".new"), _aside(folder, ".old")):
            shutil.rmtree(leftover, ignore_errors=True)


class Checkpointer:
    def __init__(self, folder: Path | None, accelerator: Accelerator, training: TrainingConfig, clock_every: int):
        # the clock is read only every `clock_every` steps, where the training loop syncs with the device anyway:
        # under data parallel the ranks must agree on it (an all-reduce), which would otherwise cost a sync a step
        self.folder, self.accelerator, self.clock_every = folder, accelerator, clock_every
        self.every_steps, self.every_seconds = training.checkpoint_steps, 60 * training.checkpoint_minutes
        self.last = time.perf_counter()

    def resume_point(self) -> dict[str, Any] | None:
        """The progress of the last complete checkpoint, or None (a fresh start)."""
        if self.folder is None:
            return None
        old = _aside(self.folder, ".old")
        if not (self.folder / PROGRESS).exists() and (old / PROGRESS).exists() and is_main_process():
            os.replace(old, self.folder)  # killed between the two renames of a swap
        barrier()
        return read_json(self.folder / PROGRESS) if (self.folder / PROGRESS).exists() else None

    def restore(self) -> None:
        assert self.folder is not None
        self.accelerator.load_state(str(self.folder))

    def due(self, step: int) -> bool:
        if self.folder is None:
            return False
        if self.every_steps:
            return step % self.every_steps == 0
        if step % self.clock_every:
            return False
        due = time.perf_counter() - self.last >= self.every_seconds
        if self.accelerator.num_processes > 1:  # every rank must agree, or save_state waits forever
            flag = torch.tensor(int(due), device=self.accelerator.device)
            due = bool(self.accelerator.reduce(flag, reduction="sum").item())
        return due

    def save(self, progress: dict[str, Any]) -> None:
        """Write the state into `<folder>.new`, then swap it in: a kill at any point leaves one whole checkpoint."""
        assert self.folder is not None
        new, old = _aside(self.folder, ".new"), _aside(self.folder, ".old")
        if is_main_process():
            shutil.rmtree(new, ignore_errors=True)
        barrier()
        try:
            self.accelerator.save_state(str(new))
            if is_main_process():
                write_json(new / PROGRESS, progress)
        except BaseException:  # a full disk, a signal: no half-written checkpoint is left to fill the disk
            if is_main_process():
                shutil.rmtree(new, ignore_errors=True)
            raise
        if is_main_process():
            if self.folder.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.folder, old)
            os.replace(new, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        barrier()
        self.last = time.perf_counter()

    def log_resume(self, progress: dict[str, Any]) -> None:
        log(f"resuming at step {progress['step']} from {self.folder}")

