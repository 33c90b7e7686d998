from __future__ import annotations

from typing import TYPE_CHECKING

from bert_tickets.files import atomic_write
from bert_tickets.methods.base import LevelContext, Method, State
from bert_tickets.methods.wanda import beyond_model_mask, in_model
from bert_tickets.ranks import is_main_process

if TYPE_CHECKING:
    from bert_tickets.engine.masks import Mask

RECONSTRUCTED = "sparsegpt_weights.safetensors"


class SparseGPTMask(Method):
    """SparseGPT's mask (Frantar and Alistarh 2023) on θ0: a ticket in the paper's sense, its weights rewound."""

    name = "sparsegpt_mask"
    label = "SparseGPT mask (θ0)"
    help = "SparseGPT's one-shot mask over calibration inputs, on θ0 (pruning.calibration)"

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        return self.prune(run, k)[1]

    def prune(self, run: LevelContext, k: int) -> tuple[State, Mask]:
        """SparseGPT over the θ0 encoder, layer by layer: its reconstructed weights and its mask."""
        from bert_tickets.engine.masks import encoder_of
        from bert_tickets.engine.pruners import sparsegpt_encoder

        theta0, encoder = run.theta0_prunable(), encoder_of(run.build_model(run.seed))
        inside = in_model(theta0, encoder)
        weights, mask = sparsegpt_encoder(encoder, run.calibration_batches(), inside, run.sparsities[k])
        return weights, mask | beyond_model_mask(theta0, inside, run.sparsities[k])


class SparseGPTPruning(SparseGPTMask):
    """What SparseGPT ships: its mask with the weights it reconstructed from the calibration inputs (not θ0)."""

    name = "sparsegpt"
    label = "SparseGPT (reconstructed weights)"
    help = "SparseGPT's one-shot mask with its reconstructed weights (pruning.calibration)"
    weights = "SparseGPT's reconstruction of θ0 under its mask"
    exportable = False

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        from safetensors.torch import save_file

        weights, mask = self.prune(run, k)
        if is_main_process():  # the engine's barrier after the mask lets the other ranks read it
            tensors = {n: w.float().contiguous() for n, w in weights.items()}
            atomic_write(run.method_file(RECONSTRUCTED), lambda tmp: save_file(tensors, tmp))
        return mask

    def rewound_encoder(self, run: LevelContext, state: State | None, seed: int) -> tuple[State | None, bool]:
        from safetensors.torch import load_file

        reconstructed = load_file(str(run.method_file(RECONSTRUCTED)))
        return (state if state is not None else run.theta0()) | reconstructed, False
