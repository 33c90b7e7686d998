"""A ticket's mask in anyone's training: `KeepMask`, a `transformers.TrainerCallback`.

    from transformers import Trainer
    from bert_tickets import KeepMask, Ticket

    ticket = Ticket.from_pretrained("owner/minilm-sst2-50")       # or a local ticket folder
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[KeepMask(ticket)])
    trainer.train()                                                 # the pruned weights end exactly zero

The weights are masked when training begins; each pruned weight's gradient is masked in the backward pass (so the
clipped gradient norm and AdamW's moments never see it), and the weights are masked again after every optimizer
step, so nothing a scheduler, weight decay or a fused optimizer does revives them. At the end, any pruned weight
that is not exactly zero is an error. A masked dense checkpoint is no faster and no smaller in memory: the zeros
are still stored and multiplied unless sparse kernels are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from bert_tickets.engine.masks import MaskEnforcer


class KeepMask(TrainerCallback):
    """Keeps a ticket's pruned weights exactly zero through a `transformers.Trainer` run (see the module), with
    the engine's own `MaskEnforcer` (the pairing of mask and parameters, the masking and the revived count)."""

    def __init__(self, mask: Any):
        """`mask`: a Ticket, a ticket folder or Hub repository id, or a mapping of encoder parameter names to
        boolean tensors (True = kept)."""
        self.mask = _as_mask(mask)
        self.enforcer: MaskEnforcer | None = None
        self.hooks: list[Any] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.enforcer = MaskEnforcer(model, self.mask)  # masks the weights once
        if self.enforcer.params:
            self.enforcer.to(self.enforcer.params[0].device)
        self.hooks = [param.register_hook(lambda grad, keep=keep: grad * keep)
                      for param, keep in zip(self.enforcer.params, self.enforcer.masks, strict=True)]

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.enforcer is not None
        with torch.no_grad():
            torch._foreach_mul_(self.enforcer.params, self.enforcer.masks)  # type: ignore[arg-type]  # torch's stub lists one overload

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        if revived := self.revived():
            raise RuntimeError(f"KeepMask: {revived} pruned weights are not zero after training")

    def revived(self) -> int:
        """How many pruned weights are not exactly zero (0 after every step)."""
        return self.enforcer.count_revived() if self.enforcer is not None else 0


def _as_mask(mask: Any) -> Mapping[str, torch.Tensor]:
    from bert_tickets.ticket import Ticket

    if isinstance(mask, Ticket):
        return mask.mask
    if isinstance(mask, str | Path):
        return Ticket.from_pretrained(str(mask)).mask
    return mask
