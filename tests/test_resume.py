"""Resuming inside a level: a fine-tuning SIGKILLed after a checkpoint and rerun ends exactly as an uninterrupted
one (mask and metrics, bit for bit on CPU with one process), and no checkpoint is left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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
            if isinstance(record.get("mask_cost"), dict):
                record["mask_cost"].pop("seconds", None)  # how long finding the mask took: a timing
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


class Interrupted(Exception):
    """Stands for a kill in the middle of a level (after a checkpoint was written)."""


@pytest.mark.parametrize("damaged", ["random_states_0.pkl", "model.safetensors", "progress.json"])
def test_a_damaged_checkpoint_is_discarded_and_gives_the_uninterrupted_result(damaged, tiny_bert, tmp_path,
                                                                                 monkeypatch, capsys):
    """A checkpoint proves itself by the digests of its files: a truncated one is thrown away with one line, and its
    level trained again from step 0 ends exactly as a run that was never interrupted."""
    import bert_tickets.engine.run as imp
    from bert_tickets import find_ticket

    glue = write_glue(tmp_path / "glue_data", n_train=48)
    settings = {"model": tiny_bert, "data_dir": str(glue), "training__max_steps": 8, "training__batch_size": 8,
                "data__max_length": 32, "pruning__rate": 0.2, "training__checkpoint_steps": 2}
    find_ticket("sst2", 0.2, output_dir=str(tmp_path / "whole"), **settings)

    real = imp.fine_tune

    def killed_at_step_5(*args, **kwargs):
        if kwargs.get("desc", "").startswith("level 1"):
            def on_step(step, model):
                if step == 5:
                    raise Interrupted
            kwargs["on_step"] = on_step
        return real(*args, **kwargs)

    monkeypatch.setattr(imp, "fine_tune", killed_at_step_5)
    with pytest.raises(Interrupted):
        find_ticket("sst2", 0.2, output_dir=str(tmp_path / "damaged"), **settings)
    monkeypatch.setattr(imp, "fine_tune", real)
    (checkpoint,) = (tmp_path / "damaged").glob("sst2/imp_*/level_01_*/metrics.checkpoint")
    assert json.loads((checkpoint / "progress.json").read_text())["step"] == 4
    path = checkpoint / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as a full disk or a kill leaves it
    capsys.readouterr()
    find_ticket("sst2", 0.2, output_dir=str(tmp_path / "damaged"), **settings)
    err = capsys.readouterr().err
    assert f"is damaged ({damaged}): discarded" in err and "resuming at step" not in err
    assert _results(tmp_path / "damaged") == _results(tmp_path / "whole")
    assert not list((tmp_path / "damaged").rglob("*.checkpoint*"))
