from __future__ import annotations

from typing import TYPE_CHECKING

from bert_tickets.methods.base import LevelContext, Method

if TYPE_CHECKING:
    from bert_tickets.engine.masks import Mask


class RandomPruning(Method):
    """A uniformly random mask at the same sparsity, on θ0 (the random-pruning control)."""

    name = "random"
    label = "random pruning (θ0)"
    help = "a random mask at the same sparsity, on θ0"

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        from bert_tickets.engine.masks import random_mask

        return random_mask(run.theta0_prunable(), run.sparsities[k], seed=run.seed)
