"""Your own data, as run_glue reads it: --task custom with --train-file/--validation-file, CSV or JSON lines,
classification or regression, end to end."""

import csv
import json
import random
from pathlib import Path

import pytest
from conftest import _sentence

from bert_tickets import Ticket
from bert_tickets.cli import main


def write_csv(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence1", "sentence2", "label", "id"])
        for i in range(n):
            writer.writerow([_sentence(rng), _sentence(rng), rng.choice(["yes", "no", "maybe"]), i])
    return path


def write_jsonl(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps({"text": _sentence(rng), "label": rng.random() * 5}) + "\n" for _ in range(n)))
    return path


def custom_args(tmp_path: Path, model: str, train: Path, dev: Path) -> list[str]:
    return ["find", "--task", "custom", "--train_file", str(train), "--validation_file", str(dev), "--sparsity",
            "0.2", "--rate", "0.2", "--model", model, "--output-dir", str(tmp_path / "runs"), "--max-steps", "2",
            "--batch-size", "8", "--max-length", "32"]


def test_a_csv_classification_task_runs_end_to_end(tiny_bert, tmp_path, capsys):
    train, dev = write_csv(tmp_path / "train.csv", 40, 0), write_csv(tmp_path / "dev.csv", 12, 1)
    assert main(custom_args(tmp_path, tiny_bert, train, dev)) == 0
    ticket = Ticket.from_pretrained(capsys.readouterr().out.strip().splitlines()[-1])
    assert ticket.task == "custom" and set(ticket.info["metrics"]["ticket"]) == {"accuracy"}
    assert ticket.info["data_source"]["local_files"] == [str(train), str(dev)]


def test_a_json_lines_regression_task_runs_end_to_end(tiny_bert, tmp_path, capsys):
    train, dev = write_jsonl(tmp_path / "train.jsonl", 40, 0), write_jsonl(tmp_path / "dev.jsonl", 12, 1)
    assert main(custom_args(tmp_path, tiny_bert, train, dev)) == 0
    ticket = Ticket.from_pretrained(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(ticket.info["metrics"]["ticket"]) == {"pearson", "spearman"}


@pytest.mark.parametrize("drop, swap, message", [
    ("--validation_file", None, "give --validation-file"), (None, ".tsv", "expected a .csv, .json or .jsonl file"),
    (None, ".json", "dev.json: no such file")])
def test_missing_or_odd_files_are_one_line(tiny_bert, tmp_path, capsys, drop, swap, message):
    train, dev = write_csv(tmp_path / "train.csv", 40, 0), write_csv(tmp_path / "dev.csv", 12, 1)
    args = custom_args(tmp_path, tiny_bert, train, dev.with_suffix(swap) if swap else dev)
    if drop:
        del args[args.index(drop):args.index(drop) + 2]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_label_the_training_file_lacks_is_one_line(tiny_bert, tmp_path, capsys):
    train, dev = write_csv(tmp_path / "train.csv", 40, 0), write_csv(tmp_path / "dev.csv", 12, 1)
    dev.write_text(dev.read_text().replace(",maybe,", ",never,", 1).replace(",yes,", ",never,", 1))
    assert main(custom_args(tmp_path, tiny_bert, train, dev)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label 'never' is not among the training file's (maybe, no, yes)" in err[0]
