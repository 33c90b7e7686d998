from __future__ import annotations

from typing import TYPE_CHECKING

from bert_tickets.masks import Mask, random_mask
from bert_tickets.methods.base import Method

if TYPE_CHECKING:
    from bert_tickets.imp import ImpRun


class RandomPruning(Method):
    """A uniformly random mask at the same sparsity, on θ0 (the random-pruning control)."""

    name = "random"
    label = "random pruning (θ0)"
    help = "a random mask at the same sparsity, on θ0"

    def level_mask(self, run: ImpRun, k: int) -> Mask:
        return random_mask(run.resources.theta0_prunable(), run.sparsities[k], seed=run.seed)
