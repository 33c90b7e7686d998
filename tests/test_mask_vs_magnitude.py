"""scripts/mask_vs_magnitude.py: a study's IMP tickets against one-shot magnitude pruning of θ0."""

import csv
import subprocess
import sys
from pathlib import Path

from test_study import tiny_spec

from bert_tickets.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mask_vs_magnitude.py"


def test_tickets_are_compared_with_theta0_magnitude_and_random_masks(tiny_bert, glue_dir, tmp_path):
    text = tiny_spec(tiny_bert, glue_dir, "[0.2]").replace("tasks: [sst2, rte]", "tasks: [sst2]").replace(
        "baselines: [random, shuffle]", "baselines: [random]").replace(
        "transfer: {sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2}", "")
    (tmp_path / "tiny.yaml").write_text(text)
    folder = tmp_path / "study"
    assert main(["study", str(tmp_path / "tiny.yaml"), "--output-dir", str(folder)]) == 0
    done = subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = list(csv.DictReader((folder / "mask_vs_magnitude.csv").open()))
    assert row["task"] == "sst2" and float(row["sparsity"]) == 0.2
    # two masks keeping 80% each overlap at least 0.6 by chance; a 2-step fine-tuning barely moves θ0's ranking
    assert 0.6 <= float(row["jaccard_random"]) < 0.75 < float(row["jaccard_theta0_magnitude"]) <= 1.0
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and "not a study folder" in missing.stderr.strip().splitlines()[-1]
