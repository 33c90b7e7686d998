import csv
import re
from pathlib import Path

import matplotlib.image
import pytest
import torch
from conftest import shared_glue

import bert_tickets.engine.run as imp
from bert_tickets.cli import main
from bert_tickets.methods import validated
from bert_tickets.studies.sources import parse_source
from bert_tickets.studies.transfer import Cell, plan
from bert_tickets.workers import cells_of_worker


def transfer_args(model: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["transfer", "--sources", "sst2,mrpc", "--targets", "sst2,mrpc", "--sparsity", "0.2", "--rate", "0.2",
            "--model", model, "--data-dir", str(data_dir), "--output-dir", str(out), "--max-steps", "3",
            "--batch-size", "8", "--max-length", "32", *extra]


def check_outputs(folder: Path, seeds: int = 1) -> None:
    rows = list(csv.DictReader((folder / "matrix.csv").open()))
    assert set(rows[0]) == {"source", "target", "seed", "metric", "value"}
    # (sst2, mrpc tickets, random) x (sst2: accuracy; mrpc: accuracy, f1) x seeds, and the dense row likewise
    assert len(rows) == 4 * 3 * seeds
    assert {r["source"] for r in rows} == {"sst2", "mrpc", "random", "dense"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    table = (folder / "matrix.md").read_text()
    assert table.startswith("| source \\ target | sst2 (accuracy) | mrpc (accuracy) |")
    assert [line.split(" |")[0] for line in table.splitlines()[2:6]] == ["| sst2", "| mrpc", "| random", "| dense"]
    assert "(+0.0)" in table  # the diagonal: a ticket minus itself
    tex = (folder / "matrix.tex").read_text()
    assert tex.startswith(r"\begin{tabular}{lcc}") and tex.count(r"\\") == 5
    assert (r"\pm" in tex) == (seeds > 1) and ("(n = 1)" in table) == (seeds == 1)  # one seed has no spread
    image = matplotlib.image.imread(folder / "transfer.png")
    assert image.shape[:2] == (460, 720) and image.std() > 0.05  # 7.2 x 4.6 inches at 100 dpi, not blank


def test_plan_and_workers_cover_every_cell_once():
    cells = plan(["sst2", "mrpc", "magnitude"], ["rte", "cola", "stsb"])
    assert len(cells) == 12 and Cell(parse_source("random"), "cola") in cells
    shares = [cells_of_worker(cells, i, 5) for i in range(5)]
    assert sorted(map(str, (c for share in shares for c in share))) == sorted(map(str, cells))  # complete
    assert sum(len(s) for s in shares) == len(cells)


def test_transfer_2x2_outputs_and_caching(tiny_bert, glue_dir, tmp_path, capsys, monkeypatch):
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--seeds", "2")) == 0
    out = capsys.readouterr().out.strip().splitlines()
    folder = Path(out[-1])
    check_outputs(folder, seeds=2)
    assert any(line.startswith("| random |") for line in out)
    calls = []
    real = imp.fine_tune
    monkeypatch.setattr(imp, "fine_tune", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--seeds", "2")) == 0
    assert calls == []  # every cell was cached
    capsys.readouterr()
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--seeds", "2", "--targets", "sst2,mrpc,rte")) == 0
    assert calls and all("level 1" in c or "seed" in c for c in calls)  # only the new column's cells ran
    assert len({c for c in calls if c.startswith("level 1")}) <= 3


def test_cell_workers_then_merge(tiny_bert, glue_dir, tmp_path, capsys, monkeypatch):
    for i in range(3):
        assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--cell", f"{i}/3")) == 0
        assert capsys.readouterr().out.splitlines()[-2].startswith(f"worker {i}/3: 2 of 6 cells done")
    calls = []
    real = imp.fine_tune
    monkeypatch.setattr(imp, "fine_tune", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path)) == 0
    assert calls == []
    check_outputs(Path(capsys.readouterr().out.strip().splitlines()[-1]))
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--cell", "3/3")) == 2
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--sources", "sst2,nope")) == 2


@pytest.mark.slow
def test_transfer_2x2_on_real_glue_with_minilm(tmp_path, capsys):
    args = ["transfer", "--sources", "sst2,mrpc", "--targets", "sst2,mrpc", "--sparsity", "0.2", "--rate", "0.2",
            "--config", "minilm", "--data-dir", str(shared_glue()), "--output-dir", str(tmp_path),
            "--max-steps", "6", "--batch-size", "16", "--max-train-samples", "200", "--max-eval-samples", "100"]
    assert main(args) == 0
    check_outputs(Path(capsys.readouterr().out.strip().splitlines()[-1]))


def test_lora_transfer_keeps_the_backbone_and_its_zeros(tiny_bert, glue_dir, tmp_path, capsys):
    from bert_tickets.config import load_config
    from bert_tickets.engine.masks import global_magnitude_mask, select_prunable
    from bert_tickets.engine.run import ImpRun
    from bert_tickets.engine.training import fine_tune, make_accelerator
    from bert_tickets.errors import UserError

    run = ImpRun(load_config(None, {"model.name": tiny_bert, "data.task": "rte", "data.data_dir": str(glue_dir),
                                    "training.finetune": "lora", "training.max_steps": 4, "training.batch_size": 8,
                                    "training.learning_rate": 1e-2, "pruning.method": "magnitude",
                                    "data.max_length": 32, "output_dir": str(tmp_path)}))
    theta0 = select_prunable(run.resources.pretrained.theta0, run.config.pruning.prunable)
    mask = global_magnitude_mask(theta0, {n: torch.ones_like(t, dtype=torch.bool) for n, t in theta0.items()}, 0.5)
    model = run.build_model(0)
    head_before = model.classifier.weight.detach().clone()
    result = fine_tune(model, run.resources.data, run.task, run.resources.tokenizer, run.config.training,
                       make_accelerator(run.config.training), 0, mask=mask)
    assert result.revived_weights == 0
    query = model.base_model.encoder.layer[0].attention.self.query
    name = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(query.base_layer.weight, theta0[name] * mask[name])  # frozen, masked backbone
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    assert not torch.equal(model.classifier.weight, head_before)  # the head trained
    full = sum(p.numel() for p in run.build_model(0).parameters())
    assert 0 < result.trainable_parameters < full / 10
    with pytest.raises(UserError, match="LoRA leaves the backbone frozen"):
        validated(load_config(None, {"training.finetune": "lora"}))  # the method's rule: the registry checks it
    # the matrix with LoRA cells: sources found with full fine-tuning, every cell (the diagonal too) with LoRA
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--finetune", "lora")) == 0
    check_outputs(Path(capsys.readouterr().out.strip().splitlines()[-1]))


def test_wandb_groups_every_ticket_level_and_cell_of_a_transfer(tiny_bert, glue_dir, tmp_path, capsys,
                                                                 monkeypatch):
    import wandb

    calls = []

    class Run:
        def __init__(self):
            self.summary = calls[-1]["summary"]

        def log(self, metrics, step=None):
            calls[-1]["logged"].append(metrics)

        def log_artifact(self, artifact):
            calls[-1]["artifacts"].append(artifact)

        def finish(self):
            calls[-1]["finished"] = True

    def init(**kwargs):
        calls.append(kwargs | {"logged": [], "finished": False, "summary": {}, "artifacts": []})
        return Run()

    monkeypatch.setattr(wandb, "init", init)
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--report-to", "wandb")) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    # two levels for each source ticket, then the cells sst2->mrpc, mrpc->sst2, random->sst2, random->mrpc
    assert len(calls) == 8 and all(c["finished"] for c in calls)
    assert {c["group"] for c in calls} == {f"transfer/{folder.name}"}
    assert {c["project"] for c in calls} == {"bert-tickets"}
    assert [c["job_type"] for c in calls].count("level") == 8
    assert all(c["config"]["training.max_steps"] == 3 and "run_hash" in c["config"] for c in calls)
    assert all(any("eval/accuracy" in m for m in c["logged"]) for c in calls)
    # the full resolved config (defaults included), the final scores in the summary, the mask as an artifact
    assert all(c["config"]["training.weight_decay"] == 0.0 and c["config"]["model.revision"] is None for c in calls)
    assert all(isinstance(c["summary"].get("final/accuracy"), float) for c in calls)
    masked = [c for c in calls if c["config"].get("level", 1) > 0]
    assert masked and all(len(c["artifacts"]) == 1 and c["artifacts"][0].type == "mask" for c in masked)
    assert all(not c["artifacts"] for c in calls if c["config"].get("level") == 0)  # dense: no mask
    assert all(a.metadata["sparsity"] > 0 for c in masked for a in c["artifacts"])
    capsys.readouterr()
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--report-to", "wandb", "--study", "mine")) == 0
    assert len(calls) == 8  # all cached: nothing trains, nothing logs


def test_local_workers_share_the_cells_and_train_each_once(tiny_bert, glue_dir, tmp_path, capsys):
    assert main(transfer_args(tiny_bert, glue_dir, tmp_path, "--workers", "2")) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    check_outputs(folder)
    logs = {p.name: p.read_text() for p in (folder / "workers").glob("*.log")}
    assert set(logs) == {"shared_0.log", "shared_1.log", "cells_0.log", "cells_1.log"}
    # round 1: one source ticket per worker (2 levels each); round 2: the 4 off-diagonal cells, 2 per worker
    trained = {name: len(re.findall(r"level \d+ done:", text)) for name, text in logs.items()}
    assert trained == {"shared_0.log": 2, "shared_1.log": 2, "cells_0.log": 2, "cells_1.log": 2}
    assert main(["transfer", "--workers", "0", *transfer_args(tiny_bert, glue_dir, tmp_path)[1:]]) == 2


def test_lora_on_masked_lm_keeps_the_decoder_tied_and_frozen(tiny_bert):
    from transformers import AutoModelForMaskedLM

    from bert_tickets.config import TrainingConfig
    from bert_tickets.engine.training import with_lora

    model = with_lora(AutoModelForMaskedLM.from_pretrained(tiny_bert), TrainingConfig(finetune="lora"))
    embeddings = model.base_model.model.bert.embeddings.word_embeddings.weight
    decoder = model.base_model.model.cls.predictions.decoder.weight
    assert decoder is embeddings and not decoder.requires_grad  # tied, and frozen with the backbone
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any(n.endswith("predictions.bias") for n in trainable)
    assert any("transform.dense" in n for n in trainable)
    assert not any("decoder.weight" in n or "modules_to_save" in n for n in trainable)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < total / 10
