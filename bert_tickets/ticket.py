"""A ticket: a mask plus the pre-trained weights it applies to, described by `ticket.json`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bert_tickets import paths
from bert_tickets.engine.masks import Mask, apply_mask, load_mask
from bert_tickets.errors import UserError
from bert_tickets.results import TicketInfo, read_ticket_info

# Settings that describe how a ticket was found, not how it is fine-tuned on another task; and those with effects
# outside the run (tracking sends data to a service, kept models fill a disk): a ticket.json, perhaps downloaded,
# never switches them on for whoever reads it.
NOT_INHERITED = ("data.", "pruning.", "output_dir", "training.report_to", "training.wandb_project", "training.study",
                 "training.keep_finetuned")


@dataclass
class Ticket:
    path: Path
    info: TicketInfo
    mask: Mask

    @classmethod
    def load(cls, path: str | Path) -> Ticket:
        path = Path(path)
        if not paths.ticket_info(path).is_file():
            raise UserError(f"{path} is not a ticket folder (no {paths.TICKET_INFO})")
        return cls(path=path, info=read_ticket_info(paths.ticket_info(path)), mask=load_mask(paths.mask(path)))

    @classmethod
    def from_pretrained(cls, source: str | Path, revision: str | None = None) -> Ticket:
        """A ticket folder, or a released ticket on the Hub (`owner/name`, at `revision`): only its mask and
        ticket.json are downloaded (the usual Hub cache, token and offline settings apply)."""
        path = Path(source)
        if path.exists() or str(source).count("/") != 1:
            return cls.load(path)
        from huggingface_hub import hf_hub_download

        try:  # both land in the same snapshot folder of the cache
            folder = Path(hf_hub_download(str(source), paths.TICKET_INFO, revision=revision)).parent
            hf_hub_download(str(source), paths.MASK, revision=revision)
        except Exception as exc:  # offline, not found, auth: the library's own words, on one line
            message = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise UserError(f"{source!r} is no folder here, and the Hub could not give it: {message}") from None
        return cls.load(folder)

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def sparsity(self) -> float:
        return self.info["sparsity"]

    @property
    def model_name(self) -> str:
        return self.info["model"]

    def inherited_settings(self) -> dict[str, Any]:
        """What a run on this ticket starts from: its model and fine-tuning recipe, its mask and sparsity."""
        config = self.info.get("config", {})
        inherited = {k: v for k, v in config.items() if not k.startswith(NOT_INHERITED)}
        return inherited | {"model.name": self.model_name, "pruning.ticket": str(self.path.resolve()),
                            "pruning.sparsity": self.sparsity}

    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of any task model built on the same encoder; returns the model."""
        apply_mask(model, self.mask)
        return model

    def __repr__(self) -> str:
        return (f"Ticket(task={self.task!r}, sparsity={self.sparsity:.4f}, model={self.model_name!r}, "
                f"path='{self.path}')")
