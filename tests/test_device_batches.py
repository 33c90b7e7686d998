"""Packs' batches built on the device (bert_tickets.engine.device_batches): exactly each member's lone-run batches,
stacked as `stack_batches` stacks them, across epochs and the epochs' smaller last batches."""

import random

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, DataCollatorWithPadding

from bert_tickets.config import TrainingConfig
from bert_tickets.engine.batching import PaddedTensors
from bert_tickets.engine.device_batches import DeviceBatches
from bert_tickets.engine.packed import stack_batches
from bert_tickets.engine.training import training_batches


def tokenized(n: int) -> Dataset:
    rng = random.Random(0)
    lengths = [rng.randint(3, 29) for _ in range(n)]
    return Dataset.from_dict({
        "input_ids": [[101, *rng.choices(range(1000, 2000), k=m - 2), 102] for m in lengths],
        "token_type_ids": [[0] * m for m in lengths], "attention_mask": [[1] * m for m in lengths],
        "label": [rng.randint(0, 2) for _ in lengths]})


@pytest.mark.parametrize("group_by_length", [True, False])
def test_device_batches_are_each_members_lone_batches_stacked(tiny_bert, group_by_length):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    data, seeds, multiple = tokenized(18), [0, 1, 2], 8  # 18 examples, batch 4: a last batch of 2 each epoch
    training = TrainingConfig(batch_size=4, group_by_length=group_by_length)
    padded = PaddedTensors(data, tokenizer.pad_token_id, multiple)
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)

    def loaders():
        return [training_batches(data, collate, tokenizer, training, seed, multiple, padded) for seed in seeds]

    lone_loaders = loaders()
    built = DeviceBatches(padded, loaders(), tokenizer.pad_token_id, torch.device("cpu"))
    fillers = 0
    for step in range(15):  # three epochs of five batches, each epoch a new pass over each lone loader
        if step % 5 == 0:
            lone = [iter(loader) for loader in lone_loaders]
        expected = stack_batches([next(it) for it in lone], tokenizer.pad_token_id)
        got = next(built)
        assert got.keys() == expected.keys()
        for key in expected:
            assert torch.equal(got[key], expected[key]), (step, key)
        fillers += int((got["real"] == 0).sum())
    # length-grouped: members' smaller batches fall at different steps, so filler rows were built and checked;
    # a plain sampler's smaller batch is every member's last
    assert (fillers > 0) == group_by_length
