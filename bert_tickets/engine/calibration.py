"""Calibration for the one-shot methods that see data (Wanda, SparseGPT): a few unlabelled encoder inputs, and what
each prunable linear layer of the encoder receives from them.

Our own code, not a library's: the reference implementations (locuslab/wanda, IST-DASLab/sparsegpt) hook decoder
blocks of OPT and LLaMA models and read their calibration from C4; BERT encoders need padding left out of the
statistics (their batches are padded, a decoder's calibration is not) and the pooler, which sees one token a
sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bert_tickets.errors import UserError

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
Batch = dict[str, torch.Tensor]


def calibration_batches(tokenizer: Any, train: Any, source: str, samples: int, max_length: int, seed: int,
                        batch_size: int = 16) -> list[Batch]:
    """`samples` encoder inputs, padded into batches: the task's training examples (`source` "task", a seeded
    draw) or the first non-empty lines of a raw text file (task-agnostic, e.g. WikiText-2's train.txt)."""
    if source == "task":
        rows = train.shuffle(seed=seed).select(range(min(samples, len(train))))
        features = [{k: row[k] for k in ENCODER_INPUTS if k in row} for row in rows]
    else:
        features = [dict(tokenizer(line, truncation=True, max_length=max_length)) for line in _lines(source, samples)]
    return [dict(tokenizer.pad(features[i:i + batch_size], return_tensors="pt"))
            for i in range(0, len(features), batch_size)]


def _lines(source: str, samples: int) -> list[str]:
    path = Path(source)
    if not path.is_file():
        raise UserError(f"pruning.calibration {source!r} is neither 'task' nor a text file")
    lines: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as text:
        for line in text:
            if line.strip():
                lines.append(line.strip())
            if len(lines) == samples:
                break
    if not lines:
        raise UserError(f"pruning.calibration {source!r} has no text")
    return lines


def linear_of(encoder: nn.Module, weight_name: str) -> nn.Linear:
    """The linear layer whose weight is `weight_name` (a prunable name, relative to the encoder)."""
    module = encoder.get_submodule(weight_name.removesuffix(".weight"))
    if not isinstance(module, nn.Linear) or not weight_name.endswith(".weight"):
        raise UserError(f"{weight_name} is not the weight of a linear layer: Wanda and SparseGPT prune those")
    return module


def input_statistics(encoder: nn.Module, batches: list[Batch], names: list[str], gram: bool) -> dict[str, torch.Tensor]:
    """For each named linear layer, over the non-padding tokens its inputs come from: the sum of x xᵀ (`gram`,
    SparseGPT's Hessian up to a factor) or of x² per input column (Wanda's ‖X_j‖²), in float64. A layer that sees one
    vector per sequence (the pooler) counts every sequence."""
    stats: dict[str, torch.Tensor] = {}
    token_mask: list[torch.Tensor | None] = [None]

    def hook(name: str) -> Any:
        def accumulate(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            x = inputs[0].detach()
            mask = token_mask[0]
            if x.dim() == 3 and mask is not None and mask.shape == x.shape[:2]:
                x = x[mask]  # padding out: a padded batch gives what the same sequences unpadded give
            x = x.reshape(-1, x.shape[-1]).double()
            value = x.T @ x if gram else (x * x).sum(0)
            stats[name] = stats[name] + value if name in stats else value
        return accumulate

    handles = [linear_of(encoder, name).register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad(), _eval(encoder):
            for batch in batches:
                token_mask[0] = batch["attention_mask"].bool() if "attention_mask" in batch else None
                encoder(**{k: v for k, v in batch.items() if k in ENCODER_INPUTS})
    finally:
        for handle in handles:
            handle.remove()
    return stats


@contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """Dropout off while calibrating (the statistics of θ0 itself), the module's mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
