import pytest
import torch
from conftest import shared_glue
from transformers import AutoTokenizer

from bert_tickets.config import DataConfig
from bert_tickets.engine.batching import LengthGroupedBatches, PaddedTensors, can_pre_pad
from bert_tickets.tasks import get_task


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.mark.parametrize("task", ["mrpc", "stsb", "sst2"])
def test_pre_padded_batches_equal_the_collator_output(task, tokenizer, glue_dir):
    adapter = get_task(task)
    data = adapter.prepare(tokenizer, DataConfig(task=task, data_dir=str(glue_dir), max_length=32))
    collator = adapter.collator(tokenizer, train=True, pad_to_multiple_of=None)
    assert can_pre_pad(collator, tokenizer, data.train)
    padded = PaddedTensors(data.train, tokenizer.pad_token_id)
    for indices in ([0, 5, 3], [7], list(range(len(data.train)))):
        expected = collator([data.train[i] for i in indices])
        batch = padded.collate(indices)
        assert set(batch) == set(expected)
        for name, value in expected.items():
            assert torch.equal(batch[name], value), name
    bucketed = PaddedTensors(data.train, tokenizer.pad_token_id, multiple=16).collate([0, 1])
    assert bucketed["input_ids"].shape[1] % 16 == 0
    assert not can_pre_pad(get_task("mlm").collator(tokenizer, train=True, pad_to_multiple_of=None), tokenizer,
                           data.train)


def test_length_grouped_batches_cover_each_example_once_with_less_padding():
    glue = shared_glue()
    sentences = [line.split("\t")[0] for line in (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:4001]]
    tokenizer_lengths = torch.tensor([len(s.split()) + 2 for s in sentences])
    sampler = LengthGroupedBatches(tokenizer_lengths, 32, torch.Generator().manual_seed(0))
    first, second = list(sampler), list(sampler)
    for epoch in (first, second):
        flat = sorted(i for batch in epoch for i in batch)
        assert flat == list(range(len(sentences))) and len(epoch) == len(sampler) == 125
    assert first != second  # a new order each epoch
    again = list(LengthGroupedBatches(tokenizer_lengths, 32, torch.Generator().manual_seed(0)))
    assert again == first  # and the same order for the same seed

    def padded_tokens(batches):
        return sum(len(b) * int(tokenizer_lengths[b].max()) for b in batches)

    random_batches = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(0)).split(32)
    real = int(tokenizer_lengths.sum())
    # grouped batches carry almost no padding; random ones roughly double the tokens computed
    assert padded_tokens(first) < 1.1 * real < 0.7 * padded_tokens([b.tolist() for b in random_batches])


def test_the_fast_path_trains_exactly_like_the_collator_and_keeps_masks_exact(tiny_bert, glue_dir, tmp_path,
                                                                               monkeypatch):
    import bert_tickets.engine.training as training
    from bert_tickets.cli import main
    from bert_tickets.files import read_json

    def levels(out):
        args = ["find", "--task", "mrpc", "--sparsity", "0.2", "--rate", "0.2", "--model", tiny_bert, "--data-dir",
                str(glue_dir), "--output-dir", str(out), "--max-steps", "6", "--batch-size", "8", "--max-length", "32"]
        assert main([*args, "--set", "training.group_by_length=false"] if "ungrouped" in out.name else args) == 0
        return [read_json(p) for p in sorted(out.glob("mrpc/imp_*/level_*/metrics.json"))]

    fast = levels(tmp_path / "ungrouped_fast")
    monkeypatch.setattr(training, "can_pre_pad", lambda *_: False)  # the task's own collator, as before
    slow = levels(tmp_path / "ungrouped_collator")
    for a, b in zip(fast, slow, strict=True):  # the same batches, padded alike: the same numbers, bit for bit
        assert a["train_loss"] == b["train_loss"] and a["metrics"] == b["metrics"] and a["tokens"] == b["tokens"]
    monkeypatch.undo()
    grouped = levels(tmp_path / "grouped")
    assert grouped[1]["revived_weights"] == 0 and grouped[1]["sparsity"] == 0.2
    assert grouped[1]["train_loss"] != fast[1]["train_loss"]  # other batches: the grouping did take effect
