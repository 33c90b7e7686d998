"""scripts/precision_check.py: dense bf16 and fp32 runs side by side, runs already made in either reused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_study import tiny_spec

from bert_tickets.engine.precision import native_bf16

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "precision_check.py"


@pytest.mark.skipif(not native_bf16(), reason="compares bf16 with fp32 only where bf16 is native")
def test_precision_check_trains_bf16_beside_fp32_and_reuses_both(tiny_bert, glue_dir, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec(tiny_bert, glue_dir))
    study = tmp_path / "study"

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), str(spec), "sst2", "--study-dir", str(study),
                               "--seeds", "2"], capture_output=True, text=True, timeout=600)

    done = check()
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((study / "precision_sst2.json").read_text())
    assert result["bf16"]["precision"] == "bf16" and result["fp32"]["precision"] == "no"
    assert result["bf16"]["seeds"] == result["fp32"]["seeds"] == [0, 1]
    assert "bf16 autocast" in done.stdout and "seed noise" in done.stdout
    dense = sorted(p.parent.name for p in (study / "runs" / "sst2").glob("dense_*/seed_*.json"))
    assert len(dense) == 4 and len(set(dense)) == 2  # two folders (one per precision), two seeds each
    again = check()  # everything cached: the same figures, nothing trained
    assert "dense: seed 0" in done.stderr and again.returncode == 0 and "dense: seed" not in again.stderr
    assert json.loads((study / "precision_sst2.json").read_text()) == result
