"""scripts/compare_runs.py: the same commands twice give bit-identical results, and a changed bit is found."""

import subprocess
import sys
from pathlib import Path

from bert_tickets import paths
from bert_tickets.cli import main
from bert_tickets.masks import load_mask, save_mask
from bert_tickets.runs import read_json, write_json

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


def _compare(first: Path, second: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(first), str(second)], capture_output=True, text=True,
                          timeout=120)


def test_two_identical_runs_compare_equal_and_a_flipped_mask_bit_does_not(tiny_bert, glue_dir, tmp_path, capsys):
    for out in ("first", "second"):
        args = ["find", "--task", "sst2", "--sparsity", "0.2", "--model", tiny_bert, "--data-dir", str(glue_dir),
                "--output-dir", str(tmp_path / out), "--max-steps", "3", "--batch-size", "8", "--max-length", "32"]
        assert main(args) == 0
        ticket = Path(capsys.readouterr().out.strip().splitlines()[-1])
        assert main(["evaluate", "--ticket", str(ticket), "--task", "rte", *args[5:]]) == 0
    same = _compare(tmp_path / "first", tmp_path / "second")
    assert same.returncode == 0 and "0 difference(s)" in same.stdout, same.stdout + same.stderr

    mask_file = paths.mask(ticket)  # the second tree's sst2 ticket
    mask = load_mask(mask_file)
    name = next(iter(mask))
    mask[name].view(-1)[0] = ~mask[name].view(-1)[0]
    save_mask(mask_file, mask)
    metrics = next((tmp_path / "second").glob("rte/ticket_*/level_01_*/metrics.json"))
    record = read_json(metrics)
    record["metrics"]["accuracy"] += 0.01
    write_json(metrics, record)
    changed = _compare(tmp_path / "first", tmp_path / "second")
    assert changed.returncode == 1
    assert "tensors differ: sst2/imp_" in changed.stdout and "records differ: rte/ticket_<hash>/" in changed.stdout
