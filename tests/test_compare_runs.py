"""scripts/compare_runs.py: the same commands twice give bit-identical results, and a changed bit is found."""

import subprocess
import sys
from pathlib import Path

import pytest

from bert_tickets import paths
from bert_tickets.cli import main
from bert_tickets.engine.masks import load_mask, save_mask
from bert_tickets.files import read_json, write_json

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

    # --within: a relative change of 1e-9 passes (a rounding difference), 1% does not, nor does the mask bit
    loose = subprocess.run([sys.executable, str(SCRIPT), "--within", "1e-4", str(tmp_path / "first"),
                            str(tmp_path / "second")], capture_output=True, text=True, timeout=120)
    assert loose.returncode == 1 and "records differ: rte/ticket_<hash>/" in loose.stdout
    save_mask(mask_file, load_mask(paths.mask(tmp_path / "first" / ticket.relative_to(tmp_path / "second"))))
    record["metrics"]["accuracy"] -= 0.01
    record["train_loss"] *= 1 + 1e-9
    write_json(metrics, record)
    assert _compare(tmp_path / "first", tmp_path / "second").returncode == 1  # not bit-identical
    loose = subprocess.run([sys.executable, str(SCRIPT), "--within", "1e-4", str(tmp_path / "first"),
                            str(tmp_path / "second")], capture_output=True, text=True, timeout=120)
    assert loose.returncode == 0 and "0 difference(s)" in loose.stdout, loose.stdout


def test_arm_pairs_pairs_two_arms_by_seed_from_a_report(tmp_path):
    """scripts/arm_pairs.py on a report's seeds.csv: the paired difference of two arms, as the report's statistics
    give it; an unknown arm is one line and exit 2."""
    import csv

    from bert_tickets.stats import paired

    script = Path(__file__).resolve().parents[1] / "scripts" / "arm_pairs.py"
    rows = [{"method": m, "arm": "ticket", "seed": s, "score": v}
            for m, values in (("a", (0.8, 0.7, 0.9)), ("b", (0.6, 0.65, 0.7))) for s, v in enumerate(values)]
    with (tmp_path / "seeds.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["method", "arm", "seed", "score"])
        writer.writeheader()
        writer.writerows(rows)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "a-b"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [row] = list(csv.DictReader((tmp_path / "arm_pairs.csv").open()))
    expected = paired({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.6, 1: 0.65, 2: 0.7})
    assert float(row["diff"]) == pytest.approx(expected.mean) and float(row["diff_ci_low"]) == pytest.approx(
        expected.interval[0])
    bad = subprocess.run([sys.executable, str(script), str(tmp_path), "a-c"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"arm_pairs: no arm 'c' in {tmp_path / 'seeds.csv'} (arms: a, b)"]
