"""Data parallel on accelerate keeps the one-process recipe: two CPU processes (torchrun + gloo, accelerate's
multi-CPU mode) against one, on a tiny BERT without dropout (so the two runs differ only in how the batch is
split): the same optimizer steps and learning-rate schedule, the same mask, one summary, one ticket path, and
every run file written once, by rank 0."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, write_glue

from bert_tickets.engine.masks import load_mask


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory, minilm_path) -> str:
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig

    path = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    torch.manual_seed(0)
    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return str(path)


def _find(model: str, glue: Path, out: Path, processes: int, write_log: Path) -> subprocess.CompletedProcess:
    args = ["find", "--task", "sst2", "--sparsity", "0.2", "--rate", "0.2", "--model", model, "--data-dir", str(glue),
            "--output-dir", str(out), "--epochs", "1", "--batch-size", "16", "--max-length", "32",
            "--set", "training.learning_rate=1e-3", "--set", "training.mixed_precision=no"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "bert_tickets.cli", *args]
    env = os.environ | {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "BERT_TICKETS_WRITE_LOG": str(write_log)}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def _levels(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("sst2/imp_*/level_*/metrics.json"))]


def test_two_processes_follow_the_one_process_recipe(no_dropout_bert, tmp_path):
    glue = write_glue(tmp_path / "glue_data", n_train=256, n_dev=64)
    one = _find(no_dropout_bert, glue, tmp_path / "one", 1, tmp_path / "one.log")
    two = _find(no_dropout_bert, glue, tmp_path / "two", 2, tmp_path / "two.log")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]

    lines = two.stdout.strip().splitlines()  # the stdout contract, once: a summary, then the ticket path last
    assert sum("tickets/sparsity_0.2000" in line for line in lines) == 1 and lines[-1].endswith("sparsity_0.2000")
    assert sum(line.startswith("imp on sst2") for line in lines) == 1

    single, double = _levels(tmp_path / "one"), _levels(tmp_path / "two")
    assert [r["steps"] for r in single] == [r["steps"] for r in double] == [16, 16]  # 256 examples / global 16
    assert [r["final_learning_rate"] for r in double] == [r["final_learning_rate"] for r in single] == [0.0, 0.0]
    assert [r["processes"] for r in double] == [2, 2]
    for a, b in zip(single, double, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=2e-3)

    written = [line.split("\t") for line in (tmp_path / "two.log").read_text().splitlines()]
    assert {rank for rank, _ in written} == {"0"}  # only rank 0 writes ...
    assert len({path for _, path in written}) == len(written)  # ... and each run file once

    masks = [load_mask(next(out.glob("sst2/imp_*/level_01_*/mask.safetensors"))) for out in
             (tmp_path / "one", tmp_path / "two")]
    agree = sum(int((masks[0][k] == masks[1][k]).sum()) for k in masks[0]) / sum(m.numel() for m in masks[0].values())
    # measured 1.000 (without dropout only the split of each batch differs); a schedule that decays N times too
    # fast or N times the epochs moves hundreds of weights across the pruning threshold
    assert agree >= 0.995
