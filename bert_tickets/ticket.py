"""A ticket: a mask plus the pre-trained weights it applies to, described by `ticket.json`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bert_tickets.errors import UserError
from bert_tickets.masks import Mask, apply_mask, load_mask
from bert_tickets.runs import read_json

MASK_FILE = "mask.safetensors"
INFO_FILE = "ticket.json"


@dataclass
class Ticket:
    path: Path
    info: dict[str, Any]
    mask: Mask

    @classmethod
    def load(cls, path: str | Path) -> Ticket:
        path = Path(path)
        if not (path / INFO_FILE).is_file():
            raise UserError(f"{path} is not a ticket folder (no {INFO_FILE})")
        return cls(path=path, info=read_json(path / INFO_FILE), mask=load_mask(path / MASK_FILE))

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def sparsity(self) -> float:
        return self.info["sparsity"]

    @property
    def model_name(self) -> str:
        return self.info["model"]

    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of any task model built on the same encoder; returns the model."""
        apply_mask(model, self.mask)
        return model

    def __repr__(self) -> str:
        return (f"Ticket(task={self.task!r}, sparsity={self.sparsity:.4f}, model={self.model_name!r}, "
                f"path='{self.path}')")
