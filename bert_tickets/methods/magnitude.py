from __future__ import annotations

from typing import TYPE_CHECKING

from bert_tickets.methods.base import LevelContext, Method

if TYPE_CHECKING:
    from bert_tickets.engine.masks import Mask


class MagnitudePruning(Method):
    """θ0 itself pruned by magnitude, without any training."""

    name = "magnitude"
    label = "one-shot θ0 magnitude mask"
    help = "prune θ0 itself by magnitude (no training)"
    prunes_by_magnitude = True

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        from bert_tickets.engine.masks import magnitude_mask

        theta0 = run.theta0_prunable()
        return magnitude_mask(theta0, run.level_mask(0), run.sparsities[k], run.pruning.scope)
