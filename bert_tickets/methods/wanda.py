from __future__ import annotations

from typing import TYPE_CHECKING

from bert_tickets.methods.base import LevelContext, Method, State

if TYPE_CHECKING:
    import torch

    from bert_tickets.engine.masks import Mask


class WandaPruning(Method):
    """θ0 pruned once by Wanda's score |W_ij| · ‖X_j‖₂ over calibration inputs (Sun et al. 2024): no training."""

    name = "wanda"
    label = "Wanda mask (θ0)"
    help = "prune θ0 once by |W|·‖X‖ over calibration inputs (Wanda; pruning.calibration, wanda_group)"

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        from bert_tickets.engine.calibration import input_statistics
        from bert_tickets.engine.masks import encoder_of
        from bert_tickets.engine.pruners import wanda_mask, wanda_scores

        theta0, encoder = run.theta0_prunable(), encoder_of(run.build_model(run.seed))
        inside = in_model(theta0, encoder)
        norms = input_statistics(encoder, run.calibration_batches(), inside, gram=False)
        mask = wanda_mask(wanda_scores(theta0, norms), run.sparsities[k], run.pruning.wanda_group)
        return mask | beyond_model_mask(theta0, inside, run.sparsities[k])


def in_model(theta0: State, encoder: torch.nn.Module) -> list[str]:
    """The prunable names the task's encoder has (masked LM's θ0 pooler has no layer to measure inputs at)."""
    present = dict(encoder.named_parameters())
    return [name for name in theta0 if name in present]


def beyond_model_mask(theta0: State, inside: list[str], sparsity: float) -> Mask:
    """Each prunable θ0 matrix the model has no layer for (masked LM's pooler), by its magnitude at `sparsity`."""
    from bert_tickets.engine.masks import full_mask, magnitude_mask

    beyond = {n: w for n, w in theta0.items() if n not in inside}
    return magnitude_mask(beyond, full_mask(beyond), sparsity, "layerwise") if beyond else {}
