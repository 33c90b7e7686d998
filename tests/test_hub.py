from pathlib import Path

import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from bert_tickets import Ticket
from bert_tickets.cli import main
from bert_tickets.masks import prunable_parameters


def make_ticket(model: str, glue_dir: Path, out: Path, capsys) -> str:
    args = ["find", "--task", "mrpc", "--sparsity", "0.3", "--method", "magnitude", "--model", model, "--data-dir",
            str(glue_dir), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "8", "--max-length", "32"]
    assert main(args) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_dry_run_folder_loads_in_plain_transformers(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = Ticket.load(make_ticket(tiny_bert, glue_dir, tmp_path, capsys))
    out = tmp_path / "release"
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/tiny-mrpc-30", "--dry-run", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert {"config.json", "model.safetensors", "mask.safetensors", "ticket.json", "README.md",
            "tokenizer.json"} <= {p.name for p in out.iterdir()}
    model = AutoModelForSequenceClassification.from_pretrained(out)
    params = prunable_parameters(model, ticket.info["prunable"])
    for name, keep in ticket.mask.items():  # the zero pattern is the mask, exactly
        assert torch.equal(params[name] != 0, keep), name
    card = ModelCard.load(out / "README.md")
    results = {(r.metric_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert set(results) == {("accuracy", "accuracy (ticket)"), ("f1", "f1 (ticket)"),
                            ("accuracy", "accuracy (dense)"), ("f1", "f1 (dense)")}
    dense = ticket.info["metrics"]["dense"]["accuracy"]["mean"]
    assert results[("accuracy", "accuracy (dense)")] == round(100 * dense, 2)
    assert card.data.datasets == ["nyu-mll/glue"] and "lottery-ticket" in card.data.tags
    assert card.data.base_model is None  # a local checkpoint folder is not a Hub id
    assert card.data.to_dict()["bert_tickets"]["sparsity"] == ticket.sparsity
    assert "bert-tickets find --task mrpc --sparsity 0.3" in card.text and "register_hook" in card.text
    # a second export replaces the first only once it is complete
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/tiny-mrpc-30", "--dry-run", str(out)]) == 0
    assert not list(tmp_path.glob(".release.*"))


def test_push_without_network_is_one_line_and_never_shows_the_token(tiny_bert, glue_dir, tmp_path, capsys,
                                                                     monkeypatch):
    ticket = make_ticket(tiny_bert, glue_dir, tmp_path, capsys)
    monkeypatch.setenv("HF_TOKEN", "hf_SecretTokenValue123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/tiny"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "could not upload to the Hub" in lines[0] and "--dry-run" in lines[0]
    assert "SecretTokenValue" not in captured.err + captured.out
    assert main(["push", "--ticket", ticket, "--repo-id", "not a repo"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err
