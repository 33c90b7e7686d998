"""Process ranks of a data-parallel launch (`accelerate launch`, torchrun): who writes, who waits, and what rank 0
sees. One process alone is rank 0 of 1."""

from __future__ import annotations

import os
from pathlib import Path

from bert_tickets.logs import LOGGER


def is_main_process() -> bool:
    """Under `accelerate launch` / torchrun (RANK set), only rank 0 writes run files, logs and prints; the other
    ranks train alongside it and read what it wrote (run folders on a file system every node sees)."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def barrier() -> None:
    """Data parallel: every rank waits here for the others (nothing to wait for in one process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def rank0_sees(path: Path) -> bool:
    """Whether `path` exists, as rank 0 sees it: it writes the run files, so another rank may see one earlier, and
    the ranks must take the same branch (or one skips a collective step the others wait at)."""
    if world_size() == 1:
        return path.exists()
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list([path.exists()], from_process=0)[0])


def log(message: str) -> None:
    """What the toolkit says on stderr: the `bert_tickets` logger at INFO (bert_tickets/logs.py), main process only."""
    if is_main_process():
        LOGGER.info(message)
