"""Resuming inside a fine-tuning: the training state (model, optimizer, scheduler, RNG, data position and the
running loss) saved with accelerate's `save_state` (a pack's: `packed.PackedLoop.save_state`) every
`training.checkpoint_minutes` (or `checkpoint_steps`), atomically, so a killed level restarts from its last
checkpoint instead of step 0, with the same result as an uninterrupted run. One checkpoint per fine-tuning (or
pack), deleted once its result is written. `progress.json` holds the SHA-256 of every file of the checkpoint: one
that is damaged or partial (a truncated file, a missing one, a checkpoint from before the digests) is discarded with
one line, and its fine-tuning starts again from step 0, which gives the uninterrupted result.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from bert_tickets import paths
from bert_tickets.config import TrainingConfig
from bert_tickets.errors import UserError
from bert_tickets.files import read_json, sha256, write_json
from bert_tickets.ranks import barrier, is_main_process, log

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


class TrainingState(Protocol):
    """What a checkpoint saves and restores: accelerate's state (a lone fine-tuning) or a pack's (`PackedLoop`)."""

    def save_state(self, output_dir: str) -> Any: ...

    def load_state(self, input_dir: str) -> Any: ...


class Checkpointer:
    def __init__(self, folder: Path | None, accelerator: Accelerator, training: TrainingConfig, clock_every: int,
                 state: TrainingState | None = None, identity: dict[str, Any] | None = None):
        # the clock is read only every `clock_every` steps, where the training loop syncs with the device anyway:
        # under data parallel the ranks must agree on it (an all-reduce), which would otherwise cost a sync a step
        self.folder, self.accelerator, self.clock_every = folder, accelerator, clock_every
        self.state: TrainingState = accelerator if state is None else state
        # what else a checkpoint must have been saved by (a pack: its members); another one is discarded
        self.identity = identity
        self.every_steps, self.every_seconds = training.checkpoint_steps, 60 * training.checkpoint_minutes
        self.last = time.perf_counter()

    def resume_point(self) -> dict[str, Any] | None:
        """The progress of the last complete checkpoint, or None (a fresh start)."""
        if self.folder is None:
            return None
        old = _aside(self.folder, ".old")
        if not (self.folder / PROGRESS).exists() and (old / PROGRESS).exists() and is_main_process():
            os.replace(old, self.folder)  # killed between the two renames of a swap
        if is_main_process():
            progress = self._verified()
            if progress is None:
                shutil.rmtree(self.folder, ignore_errors=True)  # a damaged one (or nothing)
        barrier()
        if is_main_process():
            return progress
        # the main rank removed a damaged one: what is there now is whole
        return read_json(self.folder / PROGRESS) if (self.folder / PROGRESS).exists() else None

    def _verified(self) -> dict[str, Any] | None:
        """The checkpoint's progress if every file it lists is there with its recorded digest; None (after one
        line saying why) for a damaged one, and quietly for none."""
        assert self.folder is not None
        if not self.folder.exists():
            return None
        try:
            progress = read_json(self.folder / PROGRESS)
            files = progress["files"]
            bad = next((name for name, digest in sorted(files.items())
                        if not (self.folder / name).is_file() or sha256(self.folder / name) != digest), None)
        except (UserError, OSError, KeyError, TypeError, AttributeError):
            bad = PROGRESS
        if bad is None and progress.get("identity") == self.identity:
            return progress
        why = f"is damaged ({bad})" if bad is not None else "was saved by other fine-tunings (another pack)"
        log(f"checkpoint {self.folder} {why}: discarded, the fine-tuning starts again from step 0")
        return None

    def restore(self) -> None:
        assert self.folder is not None
        self.state.load_state(str(self.folder))

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
            self.state.save_state(str(new))
            barrier()  # every rank's files are written before the main one reads their digests
            if is_main_process():
                files = {str(f.relative_to(new)): sha256(f) for f in sorted(new.rglob("*")) if f.is_file()}
                identity = {"identity": self.identity} if self.identity is not None else {}
                write_json(new / PROGRESS, {**progress, **identity, "files": files})
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

