"""A pack's training batches built on the device: the padded token table lives there, and each step's K x B batch
is one gather by the members' example indices, not K loaders, a stack and a pinned copy.

Each member keeps its lone run's order: its index stream is its lone run's own sampler, drawn through a loader
that consumes the member's generator exactly as `training.training_batches` does (one base seed per epoch, then
the batches), so member k's rows at step t are its lone run's batch t. What a pack adds is what `stack_batches`
adds: rows padded to the pack's longest bucket, filler rows (padding attending to its first token, label 0,
weighted 0 through `real`) for a member whose epoch's last, smaller batch falls at this step, and explicit
position ids. Only the indices (K x B integers) cross from the host each step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from bert_tickets.engine.batching import SEQUENCE_COLUMNS, PaddedTensors


def index_stream(loader: DataLoader) -> Iterator[list[int]]:
    """A training loader's batches as example indices, epoch after epoch, drawing from its generator as it does."""
    indices = DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, collate_fn=list,
                         generator=loader.generator)
    while True:
        yield from indices


class DeviceBatches:
    """The members' batches of one step, gathered on `device` from the padded table (`PaddedTensors`)."""

    def __init__(self, padded: PaddedTensors, loaders: Sequence[DataLoader], pad_token_id: int,
                 device: torch.device):
        # labels may still be a lazy `datasets` column: read whole, then moved
        self.tables = {name: torch.as_tensor(t[:]).to(device) for name, t in padded.tensors.items()}
        self.lengths = padded.lengths  # on the host: the step's length is decided there, with no device sync
        self.bucket, self.device = padded._bucket, device
        self.streams = [index_stream(loader) for loader in loaders]
        self.fill = {key: pad_token_id if value is None else value for key, value in SEQUENCE_COLUMNS.items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        batches = [next(stream) for stream in self.streams]
        rows = max(len(b) for b in batches)
        length = max(self.bucket(int(self.lengths[b].max())) for b in batches)
        index = torch.tensor([b + [b[0]] * (rows - len(b)) for b in batches]).flatten()  # fillers: any real row
        real = torch.tensor([[1] * len(b) + [0] * (rows - len(b)) for b in batches]).flatten()
        index, real = index.to(self.device, non_blocking=True), real.to(self.device, non_blocking=True)
        batch = {name: self._gather(name, table, index, real, length) for name, table in self.tables.items()}
        batch["real"] = real
        batch["position_ids"] = torch.arange(length, device=self.device).repeat(len(index), 1)
        return batch

    def _gather(self, name: str, table: torch.Tensor, index: torch.Tensor, real: torch.Tensor,
                length: int) -> torch.Tensor:
        rows = table[index, :length] if name in SEQUENCE_COLUMNS else table[index]
        is_real = real.bool().view(-1, *[1] * (rows.ndim - 1))
        if name not in SEQUENCE_COLUMNS:
            return torch.where(is_real, rows, torch.zeros_like(rows))
        filler = torch.full_like(rows, self.fill[name])
        if name == "attention_mask":
            filler[:, 0] = 1  # a filler row attends to something: no empty softmax
        return torch.where(is_real, rows, filler)
