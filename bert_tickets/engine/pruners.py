"""One-shot pruning that sees calibration data: Wanda and SparseGPT, for the encoder's prunable linear layers.

- Wanda: Sun, Liu, Bair and Kolter, "A Simple and Effective Pruning Approach for Large Language Models" (ICLR 2024):
  score S_ij = |W_ij| · ‖X_j‖₂, the input column's norm over the calibration tokens; the lowest scores pruned within
  each output row (the paper's comparison group), or within the matrix, or over all matrices at once.
- SparseGPT: Frantar and Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
  (ICML 2023), Algorithm 1: per layer, H = X Xᵀ with 1% of its mean diagonal added, columns in blocks of 128, the
  mask of a block chosen by w² / [H⁻¹]²_jj, each pruned weight's error spread over the later columns through the
  Cholesky factor of H⁻¹. Layers are pruned in order, each from the inputs the already pruned layers give it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from bert_tickets.engine.calibration import Batch, input_statistics, linear_of
from bert_tickets.engine.masks import Mask, full_mask, magnitude_mask

SPARSEGPT_BLOCK = 128
SPARSEGPT_DAMPING = 0.01


def wanda_scores(weights: Mapping[str, torch.Tensor], squared_norms: Mapping[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
    """|W_ij| · ‖X_j‖₂ for every named matrix (`squared_norms`: Σ x_j² over the calibration tokens, per column)."""
    return {n: weights[n].detach().abs().double().cpu() * squared_norms[n].sqrt().unsqueeze(0) for n in squared_norms}


def lowest_per_row(scores: Mapping[str, torch.Tensor], sparsity: float) -> Mask:
    """Each row keeps all but its round(sparsity × columns) lowest scores (ties: the earlier column is pruned)."""
    mask: Mask = {}
    for name, score in scores.items():
        pruned = round(sparsity * score.shape[1])
        keep = torch.ones(score.shape, dtype=torch.bool)
        keep.scatter_(1, torch.sort(score, dim=1, stable=True).indices[:, :pruned], False)
        mask[name] = keep
    return mask


def wanda_mask(scores: Mapping[str, torch.Tensor], sparsity: float, group: str) -> Mask:
    """Wanda's mask in its comparison group (`config.WANDA_GROUPS`): each output row, else magnitude pruning's own
    scopes over the scores (non-negative, as magnitudes are): each matrix (layerwise) or all at once (global)."""
    if group == "row":
        return lowest_per_row(scores, sparsity)
    return magnitude_mask(scores, full_mask(scores), sparsity, group)


def sparsegpt_layer(weight: torch.Tensor, gram: torch.Tensor, sparsity: float, block: int = SPARSEGPT_BLOCK,
                    damping: float = SPARSEGPT_DAMPING) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's SparseGPT: (the reconstructed weight, its keep mask); each block of columns prunes
    round(sparsity × its size) weights, so the layer ends at `sparsity`. `gram`: Σ x xᵀ over the calibration tokens."""
    w = weight.detach().double().cpu().clone()
    h = gram.double().clone()
    dead = torch.diag(h) == 0  # an input never active: its weights do nothing, prune them first
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damping * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    h_inv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    keep = torch.ones_like(w, dtype=torch.bool)
    for start in range(0, w.shape[1], block):
        end = min(start + block, w.shape[1])
        w1, h1 = w[:, start:end].clone(), h_inv[start:end, start:end]
        errors = torch.zeros_like(w1)
        saliency = w1 ** 2 / torch.diag(h1).unsqueeze(0) ** 2
        saliency[:, dead[start:end]] = -1.0  # dead inputs first
        pruned = torch.sort(saliency.flatten(), stable=True).indices[:round(sparsity * saliency.numel())]
        keep1 = torch.ones(saliency.numel(), dtype=torch.bool)
        keep1[pruned] = False
        keep1 = keep1.view_as(w1)
        for i in range(end - start):
            q = torch.where(keep1[:, i], w1[:, i], 0.0)
            error = (w1[:, i] - q) / h1[i, i]
            w1[:, i:] -= error.unsqueeze(1) @ h1[i, i:].unsqueeze(0)
            w1[:, i] = q
            errors[:, i] = error
        w[:, start:end] = w1
        w[:, end:] -= errors @ h_inv[start:end, end:]
        keep[:, start:end] = keep1
    return torch.where(keep, w, 0.0).to(weight.dtype), keep


def layer_groups(names: list[str]) -> list[list[str]]:
    """The prunable names by encoder layer, in the order inputs flow (names outside the numbered layers, the pooler,
    last)."""
    def layer(name: str) -> int:
        found = re.search(r"\blayers?\.(\d+)\.", name)
        return int(found.group(1)) if found else 1 << 30

    order = sorted({layer(n) for n in names})
    return [[n for n in names if layer(n) == k] for k in order]


def sparsegpt_encoder(encoder: nn.Module, batches: list[Batch], names: list[str], sparsity: float
                      ) -> tuple[dict[str, torch.Tensor], Mask]:
    """SparseGPT over `encoder` (pruned in place, layer by layer: each layer's statistics come from the inputs the
    already pruned layers give it): the reconstructed weights and their masks."""
    weights: dict[str, torch.Tensor] = {}
    mask: Mask = {}
    for group in layer_groups(names):
        grams = input_statistics(encoder, batches, group, gram=True)
        for name in group:
            linear = linear_of(encoder, name)
            weights[name], mask[name] = sparsegpt_layer(linear.weight, grams[name], sparsity)
            with torch.no_grad():
                linear.weight.copy_(weights[name])
    return weights, mask
