"""Resuming inside a level: a fine-tuning SIGKILLed after a checkpoint and rerun ends exactly as an uninterrupted
one (mask and metrics, bit for bit on CPU with one process), and no checkpoint is left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_glue
from safetensors.torch import load_file


def _command(model: str, glue: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bert_tickets.cli", "find", "--task", "sst2", "--sparsity", "0.2", "--rate", "0.2",
            "--model", model, "--data-dir", str(glue), "--output-dir", str(out), "--max-steps", "240",
            "--batch-size", "8", "--max-length", "32", "--set", "training.checkpoint_steps=20"]


def _results(out: Path) -> dict[str, object]:
    run = next(out.glob("sst2/imp_*"))
    found: dict[str, object] = {}
    for path in sorted(run.rglob("*.json")):
        record = json.loads(path.read_text().replace(str(out), "<out>"))
        if isinstance(record, dict):
            record.pop("seconds", None)
            record.pop("run_dir", None)
            record.pop("command", None)
        found[str(path.relative_to(run))] = record
    for path in sorted(run.rglob("mask.safetensors")):
        found[str(path.relative_to(run))] = {k: v.tolist() for k, v in load_file(str(path)).items()}
    return found


def test_a_level_killed_after_a_checkpoint_resumes_to_the_same_result(tiny_bert, tmp_path):
    glue = write_glue(tmp_path / "glue_data", n_train=96)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    whole = subprocess.run(_command(tiny_bert, glue, tmp_path / "whole"), capture_output=True, text=True, env=env,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "killed"
    process = subprocess.Popen(_command(tiny_bert, glue, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.time() + 300
    progress = None
    while time.time() < deadline and process.poll() is None:
        found = list(out.glob("sst2/imp_*/level_01_*/metrics.checkpoint/progress.json"))
        if found and json.loads(found[0].read_text())["step"] >= 60:
            progress = json.loads(found[0].read_text())
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert progress is not None, "level 1 never reached a checkpoint at step 60"
    assert not list(out.glob("sst2/imp_*/level_01_*/metrics.json"))  # killed mid-way through level 1

    resumed = subprocess.run(_command(tiny_bert, glue, out), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at step" in resumed.stderr and "level 0 (sparsity 0.00%) already done" in resumed.stderr
    results = _results(out)
    assert results == _results(tmp_path / "whole")
    assert {"level_01_sparsity_0.2000/metrics.json", "level_01_sparsity_0.2000/mask.safetensors"} <= set(results)
    assert not list(out.rglob("*.checkpoint*"))
