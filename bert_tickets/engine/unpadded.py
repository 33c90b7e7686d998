"""Unpadded packs (`training.pack_unpad`): a step computes on its real tokens only.

A pack pads every member's batch to the pack's longest row, and K members draw their lengths independently, so at
K = 16 only 28% of the tokens an SST-2 pack computes are real (`scripts/pack_padding.py`,
docs/results/pack-padding.md). Unpadded, the step's real tokens are laid end to end, member after member, as one
row of T tokens: every per-token layer (the embeddings' lookups, LayerNorms, dropout on hidden states, and the
matrix products, each member's tokens multiplied by its own weights) runs on those T tokens alone, and attention
pads them back into their sequences for its own product (the share of the step that depends on the sequence),
with the padded pack's mask. The classifier reads each sequence's first token, where the pooler finds it here.

Each member's numbers are the padded pack's within float32 rounding, dropout included: a hidden state's dropout
draw is the one its token has in the padded layout (`DropoutStreams` over the padded shape, then the real tokens
taken). BERT-family encoders only (the pooler reads the first token; positions are explicit); the shapes change
every step, so an unpadded pack steps eagerly.

Per member, the matrix products are one `F.linear` each over its tokens (K launches a layer where the padded pack
has one `torch.bmm`): on a CPU that costs nothing next to the arithmetic saved; on a GPU a grouped matrix product
(one launch for K groups of different sizes) is the next step, untested here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Unpadded:
    """One step's layout: where its real tokens are in the padded (rows, length) batch, member by member."""

    def __init__(self, attention_mask: torch.Tensor, k: int):
        real = attention_mask.bool()
        self.rows, self.length = real.shape
        self.index = real.reshape(-1).nonzero().squeeze(1)  # row-major: member 0's rows first
        per_row = real.sum(dim=1)
        self.counts: list[int] = per_row.reshape(k, -1).sum(dim=1).tolist()  # the products' sizes: read on the host
        self.tokens = sum(self.counts)
        self.members = self.index // (self.rows // k * self.length)  # each member owns rows // k whole rows
        self.starts = torch.cumsum(per_row, 0) - per_row  # each row's first token among the real ones
        self.mask = real[:, None, None, :]  # what attention takes, as the padded pack's

    def flat(self, t: torch.Tensor) -> torch.Tensor:
        """A (rows, length) input as (1, T): its real tokens, end to end."""
        return t.reshape(-1)[self.index].unsqueeze(0)

    def holds(self, x: torch.Tensor) -> bool:
        """Whether `x` is laid out this way: (1, T, ...)."""
        return x.dim() >= 2 and x.shape[0] == 1 and x.shape[1] == self.tokens

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(T, ...) tokens back into (rows, length, ...), zeros where padding was."""
        out = x.new_zeros(self.rows * self.length, *x.shape[1:]).index_copy(0, self.index, x)
        return out.reshape(self.rows, self.length, *x.shape[1:])

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, length, ...) to its real tokens (T, ...)."""
        return torch.index_select(x.reshape(self.rows * self.length, *x.shape[2:]), 0, self.index)


class PackLayout:
    """Shared by a pack's layers: the step's `Unpadded` layout while its forward runs, else None (padded)."""

    def __init__(self) -> None:
        self.current: Unpadded | None = None

    @contextmanager
    def using(self, layout: Unpadded) -> Iterator[None]:
        self.current = layout
        try:
            yield
        finally:
            self.current = None

    def of(self, x: torch.Tensor) -> Unpadded | None:
        """The layout `x` is in, if it is this step's unpadded tokens."""
        current = self.current
        return current if current is not None and current.holds(x) else None


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   counts: list[int]) -> torch.Tensor:
    """Member k's tokens (consecutive, counts[k] of them) times member k's weights: (T, in) -> (T, out). The
    weights are taken apart by `unbind`, whose backward stacks the K gradients once (indexing member by member
    would zero and add a whole (K, out, in) gradient for each)."""
    biases = bias.unbind(0) if bias is not None else [None] * len(counts)
    parts = torch.split(x, counts)
    return torch.cat([F.linear(part, w, b) for part, w, b in zip(parts, weight.unbind(0), biases, strict=True)])


def grouped_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """LayerNorm's scale and shift, member k's on its tokens: (T, H) -> (T, H)."""
    parts = torch.split(x, counts)
    return torch.cat([torch.addcmul(b, part, w) for part, w, b in zip(parts, weight.unbind(0), bias.unbind(0),
                                                                      strict=True)])


def unpadded_attention(layout: Unpadded, attention: Callable[..., tuple[torch.Tensor, Any]], module: nn.Module,
                       query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Attention over the real tokens: (1, heads, T, d) padded back into sequences, attended with the padded pack's
    mask, and its output (rows, length, heads, d) taken back to (1, T, heads, d)."""
    def padded(t: torch.Tensor) -> torch.Tensor:
        return layout.pad(t[0].transpose(0, 1)).transpose(1, 2)  # (rows, heads, length, d)

    out, _ = attention(module, padded(query), padded(key), padded(value), layout.mask, **kwargs)
    return layout.unpad(out).unsqueeze(0)


class PackedPooler(nn.Module):
    """BERT's pooler (the first token of each sequence, a dense layer, tanh) that finds the first tokens in an
    unpadded layout too; its parameters keep the pooler's names."""

    def __init__(self, pooler: nn.Module, layout: PackLayout):
        super().__init__()
        self.dense: nn.Module = pooler.dense  # type: ignore[assignment]
        self.activation: nn.Module = pooler.activation  # type: ignore[assignment]
        self.layout = layout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        layout = self.layout.of(hidden_states)
        first = hidden_states[0, layout.starts] if layout is not None else hidden_states[:, 0]
        return self.activation(self.dense(first))


def why_not_unpaddable(model_config: object) -> str | None:
    kind = getattr(model_config, "model_type", None)
    return None if kind == "bert" else f"a {kind} model (unpadded packs: BERT-family encoders only)"
