"""Nothing lost, round two: the failure families a held-out probe found. Each family is parametrised over several
instances; each asserts the exit code, one error line without a traceback, and earlier results byte-identical."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_glue
from test_hardening import one_line_error, snapshot, tiny, world  # noqa: F401 (world is a fixture)

from bert_tickets.cli import main
from bert_tickets.engine.masks import load_mask, save_mask
from bert_tickets.files import UMASK
from bert_tickets.release.folder import MANIFEST, STAGING


# --- 1. releases write only what they own -----------------------------------------------------------------
def _push(w: dict, out: Path) -> list[str]:
    return ["push", "--ticket", str(w["ticket"]), "--repo-id", "someone/tiny", "--dry-run", str(out)]


def _add_user_files(out: Path) -> None:
    (out / "notes.md").write_text("my notes")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.py").write_text("print(1)")
    subprocess.run(["git", "init", "-q", str(out)], check=True)
    subprocess.run(["git", "-C", str(out), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q",
                    "--allow-empty", "-m", "history"], check=True)


def _user_files(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(out).items() if k in ("notes.md", "analysis/plot.py") or k.startswith(".git/")}


def test_a_re_export_keeps_every_file_it_did_not_write(world, tmp_path):  # noqa: F811
    out = tmp_path / "release"
    assert main(_push(world, out)) == 0
    _add_user_files(out)
    before = _user_files(out)
    (out / "tokenizer.json").unlink()  # one of ours, gone: written again
    assert main(_push(world, out)) == 0
    assert _user_files(out) == before and len(before) > 5  # notes, a sub-folder, a git history: all kept
    assert (out / "tokenizer.json").is_file() and (out / MANIFEST).is_file()
    log = subprocess.run(["git", "-C", str(out), "log", "--oneline"], capture_output=True, text=True, check=True)
    assert "history" in log.stdout
    for path in [out, *out.rglob("*")]:  # modes follow the umask, as files made with `open` would
        if ".git" not in path.parts:
            assert path.stat().st_mode & 0o777 == (0o777 if path.is_dir() else 0o666) & ~UMASK, path


def _clone_of_a_release(w: dict, out: Path) -> None:
    assert main(_push(w, out)) == 0
    (out / MANIFEST).unlink()  # what a `git clone` of the Hub repository holds: the files, no manifest
    _add_user_files(out)


def _edited_card(w: dict, out: Path) -> None:
    assert main(_push(w, out)) == 0
    (out / "README.md").write_text("my own card")


def _file_in_the_way(w: dict, out: Path) -> None:
    assert main(_push(w, out)) == 0
    manifest = (out / MANIFEST).read_text()
    (out / MANIFEST).write_text(manifest.replace('"tokenizer.json"', '"not-ours.json"'))
    (out / "tokenizer.json").write_text("{}")


@pytest.mark.parametrize("make, expected", [
    (_clone_of_a_release, "not empty and not an earlier export"),
    (_edited_card, "README.md was changed after the export"),
    (_file_in_the_way, "tokenizer.json was not written by an export"),
])
def test_a_re_export_that_would_lose_a_file_is_refused(world, tmp_path, capsys, make, expected):  # noqa: F811
    out = tmp_path / "release"
    make(world, out)
    before = snapshot(out)
    one_line_error(_push(world, out), world, capsys, expected)
    assert snapshot(out) == before


def test_an_export_killed_halfway_is_cleaned_by_the_next(world, tmp_path):  # noqa: F811
    out = tmp_path / "release"
    left = out / STAGING  # what a SIGKILL during an export leaves: its staging folder, inside the export
    left.mkdir(parents=True)
    (left / "model.safetensors").write_bytes(b"\0" * 1000)
    assert main(_push(world, out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".release.lock", "release"]
    assert not left.exists()


# --- 2. run folders that any valid request extends ---------------------------------------------------------
def _with(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with the value after `flag` replaced."""
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2:]]


def _finder(w: dict, out: Path, sparsity: float) -> list[str]:
    return ["find", "--task", "sst2", "--sparsity", str(sparsity), "--rate", "0.25", "--model", w["model"],
            "--data-dir", str(w["glue"]), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "8",
            "--max-length", "32"]


def _ticket_mask(out: Path, sparsity: float) -> dict:
    from bert_tickets.paths import sparsity_name

    return load_mask(next(out.glob(f"sst2/imp_*/tickets/sparsity_{sparsity_name(sparsity)}/mask.safetensors")))


@pytest.fixture(scope="module")
def fresh_masks(world, tmp_path_factory):  # noqa: F811
    """Each sparsity's ticket found alone, in a run folder of its own."""
    masks = {}
    for sparsity in (0.5, 0.6, 0.75):
        out = tmp_path_factory.mktemp(f"fresh{sparsity}")
        assert main(_finder(world, out, sparsity)) == 0
        masks[sparsity] = _ticket_mask(out, sparsity)
    return masks


@pytest.mark.parametrize("order", [(0.6, 0.75), (0.75, 0.6), (0.75, 0.5, 0.6)])
def test_any_order_of_valid_sparsities_extends_one_run_folder(world, fresh_masks, tmp_path, order):  # noqa: F811
    out = tmp_path / "runs"
    for sparsity in order:  # 0.6 is off the grid of a 0.25 rate: its level 3 is cut short
        assert main(_finder(world, out, sparsity)) == 0
    assert len(list(out.glob("sst2/imp_*"))) == 1
    for sparsity in order:  # the same masks as a run that asked for it alone (same schedule, same seed)
        mask, fresh = _ticket_mask(out, sparsity), fresh_masks[sparsity]
        assert mask.keys() == fresh.keys() and all(bool((mask[k] == fresh[k]).all()) for k in mask), sparsity


def test_the_paths_module_walks_back_up_from_a_ticket_folder(tmp_path):
    from bert_tickets import paths

    run = paths.run(tmp_path / "moved", "sst2", "imp", "abc123")
    ticket = paths.ticket(run, 0.50004)
    assert paths.run_of_ticket(ticket) == run and paths.output_dir_of(run) == tmp_path / "moved"
    assert paths.output_dir_of_ticket(ticket) == tmp_path / "moved"


def test_sparsities_that_round_alike_never_share_a_name(world, tmp_path):  # noqa: F811
    from bert_tickets.paths import sparsity_name, sparsity_percent

    assert [sparsity_name(s) for s in (0.5, 0.50004, 0.7)] == ["0.5000", "0.50004", "0.7000"]
    assert [sparsity_percent(s) for s in (0.5, 0.504, 0.50004)] == ["50", "50.4", "50.004"]
    out = tmp_path / "runs"
    for sparsity in (0.5, 0.50004):  # with a rate of 0.3, both are level 2: [0, 0.3, 0.5] and [0, 0.3, 0.50004]
        assert main(_with(_finder(world, out, sparsity), "--rate", "0.3")) == 0
    tickets = sorted(p.name for p in out.glob("sst2/imp_*/tickets/*"))
    assert tickets == ["sparsity_0.5000", "sparsity_0.50004"]
    levels = sorted(p.name for p in out.glob("sst2/imp_*/level_02_*"))
    assert levels == ["level_02_sparsity_0.5000", "level_02_sparsity_0.50004"]


def test_a_study_off_its_grid_runs_what_its_plan_says(world, tmp_path, capsys):  # noqa: F811
    spec = tmp_path / "offgrid.yaml"
    spec.write_text(f"""name: offgrid
tasks: [sst2]
sparsities: [0.3, 0.5]
baselines: []
seeds: 1
settings:
  model.name: {world['model']}
  data.data_dir: {world['glue']}
  pruning.rate: 0.2
  training.max_steps: 2
  training.batch_size: 8
  data.max_length: 32
""")
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder), "--plan"]) == 0
    planned = capsys.readouterr().out.strip().splitlines()[-1]
    assert planned.startswith("0 of 2 runs done") and "5 still to train" in planned, planned  # 0, .2, .3; .4, .5
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    trained = re.findall(r"\] level \d+/\d+: sparsity", capsys.readouterr().err)
    assert len(trained) == 5  # exactly the plan: level 1's trained weights were kept for the second target
    assert main(["study", str(spec), "--output-dir", str(folder), "--plan"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("2 of 2 runs done")


# --- 3. bounded resources, one line ------------------------------------------------------------------------
def _no_debris(folder: Path) -> None:
    debris = [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".checkpoint.new"))]
    assert not debris, debris


def _full_at_level_record(monkeypatch) -> None:
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(".metrics.json."):
            real(self, data[: len(data) // 2])  # half of it reached the disk
            raise OSError(28, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def _full_at_checkpoint(monkeypatch) -> None:
    from accelerate import Accelerator

    def save_state(self, output_dir=None, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "optimizer.bin").write_bytes(b"\0" * 100_000)
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")  # torch.save's words for a full disk

    monkeypatch.setattr(Accelerator, "save_state", save_state)


def _full_at_export(monkeypatch) -> None:
    from safetensors import SafetensorError
    from transformers import PreTrainedModel

    def save_pretrained(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * 100_000)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)


@pytest.mark.parametrize("inject", [_full_at_level_record, _full_at_checkpoint, _full_at_export])
def test_a_full_disk_anywhere_is_one_line_and_leaves_no_debris(world, tmp_path, capsys, monkeypatch, inject):  # noqa: F811
    out = tmp_path / "runs"
    shutil.copytree(world["out"], out)
    # earlier results: every record and mask (a frontier may move on; config.json holds the latest settings)
    before = {k: v for k, v in snapshot(out).items() if "trained_prunable" not in k and "config.json" not in k}
    inject(monkeypatch)
    if inject is _full_at_export:
        ticket = next(out.glob("sst2/imp_*/tickets/*"))
        args = ["push", "--ticket", str(ticket), "--repo-id", "someone/x", "--dry-run", str(tmp_path / "release")]
    else:  # a level more than the finished run has: it trains, and checkpoints every step
        args = [*_with(_with(world["args"], "--sparsity", "0.4"), "--output-dir", str(out)),
                "--set", "training.checkpoint_steps=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("bert-tickets")]
    assert len(errors) == 1 and "the disk is full" in errors[0] and "Traceback" not in err, err
    after = snapshot(out)
    assert all(after.get(k) == v for k, v in before.items())  # earlier results intact
    _no_debris(tmp_path)  # no temp file, half checkpoint or staging folder
    assert not (tmp_path / "release").exists()


def _yaml_cases(w: dict, tmp: Path) -> list[tuple[list[str], str]]:
    bomb = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 9) + "]\n" for i in range(9))
    (tmp / "bomb.yaml").write_text(f"name: bomb\ntasks: [sst2]\nsparsities: [0.5]\n{bomb}description: *l8\n")
    (tmp / "bomb_config.yaml").write_text(f"{bomb}training:\n  seed: 1\n")
    (tmp / "twice.yaml").write_text("training:\n  seed: 1\n  seed: 2\n")
    (tmp / "twice_spec.yaml").write_text("name: a\ntasks: [sst2]\nsparsities: [0.5]\nseeds: 2\nseeds: 3\n")
    study = ["study", "--output-dir", str(tmp / "study")]
    return [
        ([*study, str(tmp / "bomb.yaml")], "once its aliases"),
        ([*w["args"], "--config", str(tmp / "bomb_config.yaml")], "once its aliases"),
        ([*w["args"], "--config", str(tmp / "twice.yaml")], "duplicate key 'seed'"),
        ([*study, str(tmp / "twice_spec.yaml")], "duplicate key 'seeds'"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_yaml_bombs_and_duplicate_keys_are_one_line(world, capsys, tmp_path, case):  # noqa: F811
    args, expected = _yaml_cases(world, tmp_path)[case]
    one_line_error(args, world, capsys, expected)


@pytest.mark.parametrize("extra, expected", [
    (["--eval-batch-size", str(10**30)], "training.eval_batch_size must be in [1, 1048576]"),
    (["--batch-size", str(2**40)], "training.batch_size must be in [1, 1048576]"),
    (["--max-steps", str(10**12)], "training.max_steps must be in [1, 1000000000]"),
    (["--seeds", "1000000"], "pruning.seeds must be in [1, 10000]"),
    (["--set", "data.max_train_samples=1e300"], "data.max_train_samples"),
])
def test_huge_numbers_that_cannot_work_are_refused_before_training(world, capsys, extra, expected):  # noqa: F811
    one_line_error([*world["args"], *extra], world, capsys, expected)


def test_a_lock_that_is_not_a_file_is_refused(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "runs"
    assert main(_finder(world, out, 0.25)) == 0
    run = next(out.glob("sst2/imp_*"))
    (run / ".lock").unlink()
    os.mkfifo(run / ".lock")  # would block forever
    assert main(_finder(world, out, 0.5)) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_workers_never_outnumber_the_work(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "runs"
    assert main(_finder(world, out, 0.25)) == 0  # levels and seed 0 done: seed 1 of ticket and dense pending
    assert main([*_finder(world, out, 0.25), "--seeds", "2", "--workers", "8"]) == 0
    logs = sorted(p.name for p in out.glob("sst2/imp_*/workers/*.log"))
    assert logs == ["seeds_0.log", "seeds_1.log"]  # two fine-tunings left: two workers, not eight
    log = tmp_path / "writes.log"
    os.environ["BERT_TICKETS_WRITE_LOG"] = str(log)
    try:  # a finished rerun writes nothing, whatever --workers says
        before = snapshot(out)
        assert main([*_finder(world, out, 0.25), "--seeds", "2", "--workers", "4"]) == 0
    finally:
        del os.environ["BERT_TICKETS_WRITE_LOG"]
    assert not log.exists() and snapshot(out) == before


# --- 4. containment ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "..", "a/b", "."])
def test_a_study_name_is_never_a_path(world, tmp_path, capsys, name):  # noqa: F811
    spec = tmp_path / "escape.yaml"
    spec.write_text(f"name: '{name}'\ntasks: [sst2]\nsparsities: [0.5]\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(["study", str(spec)], world, capsys, "must be letters, digits")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_one_study_per_output_folder(world, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "study"
    folder.mkdir()
    first = "name: first\ntasks: [sst2]\nsparsities: [0.5]\n"
    (folder / "study.yaml").write_text(first)
    spec = tmp_path / "second.yaml"
    spec.write_text("name: second\ntasks: [sst2]\nsparsities: [0.5]\n")
    one_line_error(["study", str(spec), "--output-dir", str(folder)], world, capsys, "holds another study ('first'")
    assert (folder / "study.yaml").read_text() == first


# --- 5. damaged state and odd inputs -----------------------------------------------------------------------
@pytest.mark.parametrize("record", ["imp_*/level_00_*/metrics.json", "imp_*/tickets/*/ticket.json",
                                    "dense_*/seed_1.json", "imp_*/tickets/*/seeds/seed_1.json"])
def test_an_empty_record_is_recomputed(world, tmp_path, capsys, record):  # noqa: F811
    out = tmp_path / "runs"
    shutil.copytree(world["out"], out)
    args = [*_with(world["args"], "--output-dir", str(out)), "--seeds", "2"]
    assert main(args) == 0
    damaged = next((out / "sst2").glob(record))
    good = json.loads(damaged.read_bytes())
    damaged.write_bytes(b"")  # what a crash before the data reached the disk leaves
    assert main(args) == 0, capsys.readouterr().err
    again = json.loads(damaged.read_bytes())  # recomputed: the same scores (the same seed and data order)
    assert again.get("metrics") == good.get("metrics") and again.keys() == good.keys()


def _odd_input_cases(w: dict, tmp: Path) -> list[tuple[list[str], str]]:
    cases = []
    for i, config in enumerate(["[a, b]", "3", "{training: {seed: 1}}"]):
        spec = tmp / f"config{i}.yaml"
        spec.write_text(f"name: odd\ntasks: [sst2]\nsparsities: [0.5]\nconfig: {config}\n")
        cases.append((["study", str(spec), "--output-dir", str(tmp / "s")], "'config' must be text"))
    for cell in ("²/4", "١/٢", "0/٣"):
        cases.append((["transfer", "--sources", "sst2", "--targets", "rte", "--sparsity", "0.2", "--cell", cell,
                       "--output-dir", str(w["out"])], "--cell expects i/N"))
    pickled = tmp / "pickled_model"
    shutil.copytree(w["model"], pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04\x95" + os.urandom(64))  # a pickle, never run
    cases.append((_with(w["args"], "--model", str(pickled)), "cannot load model"))
    return cases


@pytest.mark.parametrize("case", range(7))
def test_odd_inputs_are_one_line(world, tmp_path, capsys, case):  # noqa: F811
    args, expected = _odd_input_cases(world, tmp_path)[case]
    one_line_error(args, world, capsys, expected)


# --- 6. inputs never silently misread ----------------------------------------------------------------------
def _misread_cases(w: dict, tmp: Path) -> list[tuple[list[str], str]]:
    extra_key = tmp / "extra_key_ticket"
    shutil.copytree(w["ticket"], extra_key)
    mask = load_mask(extra_key / "mask.safetensors")
    mask["encoder.layer.0.attention.output.LayerNorm.weight"] = torch.zeros(32, dtype=torch.bool)  # all pruned
    save_mask(extra_key / "mask.safetensors", mask)
    underscored = write_glue(tmp / "glue_underscore")
    dev = underscored / "STS-B" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\t0.000\n", "\t1_000\n", 1))
    stsb = _with(_with(w["args"], "--task", "stsb"), "--data-dir", str(underscored))
    evaluate = ["evaluate", "--task", "sst2", "--data-dir", str(w["glue"]), "--output-dir", str(w["out"]),
                "--max-steps", "2", "--max-length", "32", "--ticket", str(extra_key)]
    return [
        (evaluate, "outside this run's prunable weights"),
        ([*w["args"], "--set", "training.checkpoint_steps=true"], "expects int, got True"),
        ([*w["args"], "--set", "training.learning_rate=false"], "expects float, got False"),
        (stsb, "label '1_000' is not a plain decimal number"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_inputs_are_never_silently_misread(world, tmp_path, capsys, case):  # noqa: F811
    args, expected = _misread_cases(world, tmp_path)[case]
    one_line_error(args, world, capsys, expected)


# --- 7. the launch environment -----------------------------------------------------------------------------
@pytest.mark.parametrize("env, expected", [
    ({"RANK": "1"}, "RANK=1 and WORLD_SIZE=None do not describe a multi-process launch"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "do not describe a multi-process launch"),
    ({"WORLD_SIZE": "4"}, "do not describe a multi-process launch"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "do not describe a multi-process launch"),
])
def test_a_launch_environment_that_is_not_a_launch_is_one_line(world, capsys, monkeypatch, env, expected):  # noqa: F811
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    one_line_error([*world["args"], "--seeds", "2"], world, capsys, expected)  # said by every process


def test_torchrun_on_cpu_without_accelerates_switch_is_one_line(world):  # noqa: F811
    before = snapshot(world["out"])
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "bert_tickets.cli", *world["args"], "--seeds", "2"],
                          env=clean | {"RANK": "0", "WORLD_SIZE": "2"}, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("bert-tickets")]
    assert done.returncode == 2 and len(errors) == 1 and "but accelerate sees 1" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and snapshot(world["out"]) == before


# --- 8. modes and signals ----------------------------------------------------------------------------------
def test_sigterm_stops_like_ctrl_c_and_the_rerun_resumes(world, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    args = _with(_finder(world, out, 0.25), "--max-steps", "40")
    running = subprocess.Popen([sys.executable, "-m", "bert_tickets.cli", *args, "--set",
                                "training.checkpoint_steps=1"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("sst2/imp_*/level_00_*/metrics.checkpoint")):
        time.sleep(0.2)
    running.send_signal(signal.SIGTERM)
    _, err = running.communicate(timeout=120)
    assert running.returncode == 143, err
    assert "stopped (SIGTERM); rerun the same command to resume" in err and "Traceback" not in err
    _no_debris(out)
    assert list(out.glob("sst2/imp_*/level_00_*/metrics.checkpoint*/progress.json"))  # what the rerun resumes from
    rerun = subprocess.run([sys.executable, "-m", "bert_tickets.cli", *args], capture_output=True, text=True,
                           timeout=600)  # without a checkpoint every step (not part of the run's identity)
    assert rerun.returncode == 0 and "resuming at step" in rerun.stderr, rerun.stderr[-2000:]


def test_stale_temp_files_in_shared_dense_folders_are_swept(world, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    shutil.copytree(world["out"], out)
    dense = next(out.glob("sst2/dense_*"))
    stale = dense / ".seed_1.json.abc123.tmp"  # a write killed halfway
    stale.write_text("{")
    assert main([*_with(world["args"], "--output-dir", str(out)), "--seeds", "2"]) == 0
    assert not stale.exists() and (dense / "seed_1.json").is_file()
