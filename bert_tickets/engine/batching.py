"""Fast training batches: the tokenized set as padded tensors built once, and length-grouped batches.

A batch is an index gather cut to its longest sequence (rounded up to a bucket of `multiple` tokens, so a GPU
sees few shapes), instead of padding Python lists every step. Length grouping puts sequences of similar
length together, so batches carry little padding; their order is still random. Tasks whose collator does
more than pad (masked-LM draws fresh masks per batch) keep their own collator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers import DataCollatorWithPadding

SEQUENCE_COLUMNS: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0,
                                          "special_tokens_mask": 1}


class PaddedTensors:
    """Every column of a tokenized dataset as one tensor; sequence columns right-padded to the longest row."""

    def __init__(self, dataset: Any, pad_token_id: int, multiple: int | None = None):
        self.multiple = multiple or 1
        columns = dataset.with_format("torch")
        self.tensors: dict[str, torch.Tensor] = {}
        for name in dataset.column_names:
            if name in SEQUENCE_COLUMNS:
                own = SEQUENCE_COLUMNS[name]
                pad = pad_token_id if own is None else own
                rows = [torch.as_tensor(row) for row in columns[name]]
                if name == "input_ids":  # every row's own length, from the column already read
                    self.lengths = torch.tensor([len(row) for row in rows])
                table = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)
                width = self._bucket(table.shape[1])  # room for the longest row's bucket
                self.tensors[name] = torch.nn.functional.pad(table, (0, width - table.shape[1]), value=pad)
            else:
                self.tensors[name] = columns[name]
        if "label" in self.tensors:  # what DataCollatorWithPadding does too
            self.tensors["labels"] = self.tensors.pop("label")

    def __len__(self) -> int:
        return len(self.lengths)

    def _bucket(self, length: int) -> int:
        return -(-length // self.multiple) * self.multiple

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices)
        length = self._bucket(int(self.lengths[index].max()))
        return {name: t[index, :length] if name in SEQUENCE_COLUMNS else t[index] for name, t in self.tensors.items()}


def can_pre_pad(collator: Any, tokenizer: Any, dataset: Any) -> bool:
    """Only a plain padding collator over right-padded, fixed-size columns can be replaced by PaddedTensors."""
    known = set(SEQUENCE_COLUMNS) | {"label", "labels", "start_positions", "end_positions"}
    return (type(collator) is DataCollatorWithPadding and getattr(tokenizer, "padding_side", "right") == "right"
            and set(dataset.column_names) <= known)


class LengthGroupedBatches(Sampler[list[int]]):
    """Random batches of similar-length examples: shuffle, cut into groups of `group` batches, sort each group
    by length, split it into batches, and shuffle the batches. A new order each epoch, from `generator`."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, generator: torch.Generator, group: int = 50):
        self.lengths, self.batch_size, self.generator, self.group = lengths, batch_size, generator, group

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        span = self.group * self.batch_size
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start:start + span]
            chunk = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
