"""The benchmark script runs end to end on CPU in tiny settings; no figure is asserted on, only its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_glue

from bert_tickets.engine.precision import native_bf16

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_finetune.py"


def test_bench_script_reports_every_figure(tmp_path):
    glue = shared_glue()
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--preset", "cpu", "--data-dir", str(glue), "--models",
                           "minilm", "--steps", "5", "--warmup", "1", "--rounds", "1", "--concurrency", "1",
                           "--train-samples", "96", "--batch-size", "8", "--max-length", "32", "--packs", "2",
                           "--masked-packs", "2", "--pack-steps", "5", "--profile-steps", "1",
                           "--pack-tasks", "sst2,rte", "--bert-base-packs", "", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "engine/Trainer samples/s" in done.stdout and "| minilm | trainer |" in done.stdout
    report = json.loads(out.read_text())
    (result,) = report["results"]
    for runner in ("engine", "trainer", "masked"):
        assert result[runner]["samples_per_s"] > 0 and result[runner]["tokens_per_s"] > 0
    assert result["masked"]["extra"]["revived_weights"] == 0  # the 70% mask held through training
    assert result["engine_over_trainer_samples"] > 0 and result["masked_over_dense_step_time"] > 0
    assert [c["k"] for c in result["concurrent"]] == [1]
    packs = result["packed"]  # 2 dense and 2 masked on SST-2, 2 dense on RTE, then each task unpadded
    assert [(f["task"], f["k"], f["sparsity"], f["unpad"]) for f in packs] == [
        ("sst2", 2, 0.0, False), ("sst2", 2, 0.7, False), ("rte", 2, 0.0, False), ("sst2", 2, 0.0, True),
        ("rte", 2, 0.0, True)]
    for figure in packs:
        assert figure["samples_per_s"] > 0 and figure["host_ms_per_step"] > 0 and figure["launches_per_step"] > 100
        assert figure["ran"] == ("eager, unpadded" if figure["unpad"] else "eager") and figure["revived"] == 0
    assert "| minilm | rte | 2 | dense | eager |" in done.stdout
    assert "| minilm | rte | 2 | dense | eager, unpadded |" in done.stdout
    if native_bf16():  # bf16 autocast (the default here) side by side with fp32
        assert result["precision"] == "bf16" and result["fp32"]["samples_per_s"] > 0
        assert result["bf16_over_fp32_samples"] > 0 and "bf16 autocast / fp32" in done.stdout
    else:
        assert result["precision"] == "fp32" and result["bf16_over_fp32_samples"] is None


def test_bench_script_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "no SST-2 under" in done.stderr.strip().splitlines()[-1]


pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_step_profile_counts_the_profiled_steps_operators(tmp_path):
    script = SCRIPT.parent / "step_profile.py"
    out = tmp_path / "profile.md"
    done = subprocess.run([sys.executable, str(script), "--k", "2", "--batch-size", "4", "--max-length", "32",
                           "--train-samples", "64", "--warmup", "1", "--steps", "2", "--precision", "no",
                           "--data-dir", str(shared_glue()), "--scratch", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    calls = int(text.split("| aten operator calls | ")[1].split(" ")[0])
    assert calls > 100  # a MiniLM step is hundreds of operators: the profiler saw the steps themselves
    assert "| `aten::bmm` |" in text and "| wall time (median) |" in text


def test_the_padding_count_says_what_share_of_a_packs_tokens_is_real(tmp_path):
    """scripts/pack_padding.py on real SST-2: alone, laid end to end, every token is real; a pack of 4 pads its
    members to the longest row, so less of it is, and laying each member's tokens end to end recovers some."""
    script = SCRIPT.parent / "pack_padding.py"
    out = tmp_path / "padding.md"
    done = subprocess.run([sys.executable, str(script), "--tasks", "sst2", "--ks", "1,4", "--steps", "5",
                           "--train-samples", "200", "--batch-size", "8", "--data-dir", str(shared_glue()),
                           "--scratch", str(tmp_path), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in out.read_text().splitlines() if line.startswith("| sst2 |"))
    alone, pack = [cell.strip() for cell in row.strip("|").split("|")[1:]]
    assert alone.endswith("(100%)")  # one member's real tokens end to end: no padding at all
    share, flat = (int(x.strip("%()")) for x in pack.split())
    assert share < int(alone.split("%")[0]) and share <= flat <= 100
