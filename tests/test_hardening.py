"""Nothing lost, nothing cryptic: every family of bad input is one line on stderr and exit 2 with earlier results
byte-identical; push never touches what it did not write; reruns write nothing; leftovers are cleaned; a second
identical run waits for the first instead of repeating it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_glue, write_tsv

from bert_tickets import paths
from bert_tickets.cli import main
from bert_tickets.config import load_config, run_hash
from bert_tickets.files import UMASK


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert):
    """A finished tiny run (and its ticket) that every bad command below must leave byte-identical."""
    root = tmp_path_factory.mktemp("world")
    glue = write_glue(root / "glue_data")
    out = root / "runs"
    args = tiny(tiny_bert, glue, out)
    assert main(args) == 0
    ticket = next(out.glob("sst2/imp_*/tickets/sparsity_0.2000"))
    return {"root": root, "glue": glue, "out": out, "args": args, "ticket": ticket, "model": tiny_bert}


def tiny(model: str, glue: Path, out: Path, *extra: str) -> list[str]:
    return ["find", "--task", "sst2", "--sparsity", "0.2", "--rate", "0.2", "--model", model, "--data-dir",
            str(glue), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "8", "--max-length", "32",
            *extra]


def one_line_error(args: list[str], world: dict, capsys, expected: str) -> None:
    """Exit 2, one error line on stderr (besides progress logs), no traceback, earlier results untouched."""
    before = snapshot(world["out"])
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.strip() and not line.startswith("[bert-tickets]")
              and "%|" not in line]  # progress logs and bars aside
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "error" in errors[0] and expected in errors[0], errors[0]
    assert snapshot(world["out"]) == before


# --- 1. an output location that cannot be used ----------------------------------------------------------
def _output_cases(w: dict) -> list[tuple[list[str], str]]:
    a_file = w["root"] / "a_file"
    a_file.write_text("not a folder")
    base = [a for a in w["args"] if a not in ("--output-dir", str(w["out"]))]
    return [
        ([*base, "--output-dir", str(a_file)], "cannot create the output folder"),
        ([*base, "--output-dir", str(a_file / "below")], "cannot create the output folder"),
        (["transfer", "--sources", "sst2", "--targets", "rte", "--sparsity", "0.2", "--model", w["model"],
          "--data-dir", str(w["glue"]), "--output-dir", str(a_file), "--max-steps", "2"], str(a_file)),
        (["study", "minilm-cpu", "--output-dir", str(a_file / "study")], str(a_file)),
        (["push", "--ticket", str(w["ticket"]), "--repo-id", "someone/x", "--dry-run", str(a_file / "out")],
         "cannot create the output folder"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_an_unusable_output_location_is_one_line(world, capsys, case):
    args, expected = _output_cases(world)[case]
    one_line_error(args, world, capsys, expected)


def test_a_full_disk_is_one_line_naming_the_file(world, capsys, monkeypatch):
    import errno

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr("bert_tickets.files.os.replace", full)
    one_line_error([*world["args"], "--seeds", "2"], world, capsys, "No space left on device")


# --- 2. numeric settings outside their domain --------------------------------------------------------------
NUMBERS = [
    (["--learning-rate", "-1"], "training.learning_rate must be in (0, 1)"),
    (["--set", "training.learning_rate=nan"], "config key 'training.learning_rate' expects float, got 'nan'"),
    (["--seed", "-1"], "training.seed must be in [0, 2**32)"),
    (["--seed", str(2**40)], "training.seed must be in [0, 2**32)"),
    (["--seeds", "0"], "pruning.seeds must be in [1, 10000]"),
    (["--set", "training.warmup_ratio=1.5"], "training.warmup_ratio must be in [0, 1)"),
    (["--rewind-step", "-1"], "pruning.rewind_step must be in [0, 1000000000]"),
    (["--set", "training.lora_dropout=1.5"], "training.lora_dropout must be in [0, 1)"),
    (["--set", "training.weight_decay=-0.1"], "training.weight_decay must be >= 0"),
    (["--set", "training.max_grad_norm=inf"], "config key 'training.max_grad_norm' expects float, got 'inf'"),
    (["--epochs", "0"], "training.epochs must be in (0, 10000]"),
    (["--set", "training.eval_batch_size=0"], "training.eval_batch_size must be in [1, 1048576]"),
]


@pytest.mark.parametrize("extra, expected", NUMBERS)
def test_a_number_outside_its_domain_is_one_line(world, capsys, extra, expected):
    one_line_error([*world["args"], *extra], world, capsys, expected)


def test_lengths_the_model_cannot_take_are_one_line(world, capsys):
    args = [a for a in world["args"] if a not in ("--max-length", "32")]
    one_line_error([*args, "--max-length", "0"], world, capsys, "data.max_length must be in [8, 65536]")
    one_line_error([*args, "--max-length", "4096"], world, capsys, "takes (128 positions)")


# --- 3. damaged or foreign inputs ------------------------------------------------------------------------------
def _damaged_cases(w: dict, tmp: Path) -> list[tuple[list[str], str]]:
    foreign = tmp / "foreign_ticket"
    shutil.copytree(w["ticket"], foreign)
    (foreign / "ticket.json").write_text(json.dumps({"hello": "world"}))
    not_json = tmp / "not_json_ticket"
    shutil.copytree(w["ticket"], not_json)
    (not_json / "ticket.json").write_text("{half")
    torn_mask = tmp / "torn_mask_ticket"
    shutil.copytree(w["ticket"], torn_mask)
    (torn_mask / "mask.safetensors").write_bytes((w["ticket"] / "mask.safetensors").read_bytes()[:100])
    torn_model = tmp / "torn_model"
    shutil.copytree(w["model"], torn_model)
    weights = torn_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    latin1 = tmp / "latin1.yaml"
    latin1.write_bytes("training:\n  seed: 1  # caf\xe9\n".encode("latin-1"))
    huge = write_glue(tmp / "huge_glue")
    write_tsv(huge / "SST-2" / "train.tsv", ["sentence", "label"], [["x" * 200_000, "1"], ["fine", "0"]])
    base = w["args"]
    evaluate = ["evaluate", "--task", "rte", "--data-dir", str(w["glue"]), "--output-dir", str(w["out"]),
                "--max-steps", "2", "--ticket"]
    swap = [a if a != str(w["glue"]) else str(huge) for a in base]
    model_swap = [a if a != w["model"] else str(torn_model) for a in base]
    return [
        ([*evaluate, str(foreign)], "not a ticket description written by bert-tickets"),
        ([*evaluate, str(not_json)], "not a ticket description (not JSON"),
        ([*evaluate, str(torn_mask)], "not a readable safetensors mask"),
        (model_swap, "cannot load model"),
        ([*base, "--config", str(latin1)], "not UTF-8 text"),
        ([*base, "--config", str(tmp)], "is not a file"),
        ([*base, "--set", 'pruning.prunable=["(unclosed"]'], "is not a regular expression"),
        (swap, "train.tsv:2: unreadable row"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_a_damaged_or_foreign_input_is_one_line(world, capsys, tmp_path, case):
    args, expected = _damaged_cases(world, tmp_path)[case]
    one_line_error(args, world, capsys, expected)


# --- 4. bad data and settings that do not apply -----------------------------------------------------------------
def _data_cases(w: dict, tmp: Path) -> list[tuple[list[str], str]]:
    bad = write_glue(tmp / "glue_bad")
    stsb = (bad / "STS-B" / "train.tsv").read_text().splitlines()
    nan_row = stsb[1].rsplit("\t", 1)[0] + "\tnan"
    (bad / "STS-B" / "train.tsv").write_text("\n".join([stsb[0], stsb[1], nan_row, *stsb[3:]]) + "\n")
    inf = write_glue(tmp / "glue_inf")
    (inf / "STS-B" / "dev.tsv").write_text((inf / "STS-B" / "dev.tsv").read_text().replace("\t0.000\n", "\tinf\n", 1))
    one_matrix = tmp / "one_matrix_ticket"
    shutil.copytree(w["ticket"], one_matrix)
    from bert_tickets.engine.masks import load_mask, save_mask

    mask = load_mask(one_matrix / "mask.safetensors")
    first = sorted(mask)[0]
    save_mask(one_matrix / "mask.safetensors", {first: mask[first]})
    stsb_args = [a if a != "sst2" else "stsb" for a in w["args"]]
    return [
        ([a if a != str(w["glue"]) else str(bad) for a in stsb_args], "STS-B/train.tsv:3: label 'nan' is not a finite"),
        ([a if a != str(w["glue"]) else str(inf) for a in stsb_args], "dev.tsv:2: label 'inf' is not a finite"),
        ([*w["args"], "--train-file", str(tmp / "t.txt")], "data.train_file applies to mlm only, not to sst2"),
        ([*w["args"], "--set", "data.doc_stride=64"], "data.doc_stride applies to squad only"),
        ([*w["args"], "--set", "data.mlm_probability=0.3"], "data.mlm_probability applies to mlm only"),
        ([*w["args"], "--set", "data.max_length=16"], "--max-length and --set data.max_length=... both set"),
        (["evaluate", "--task", "rte", "--data-dir", str(w["glue"]), "--output-dir", str(w["out"]), "--max-steps",
          "2", "--ticket", str(one_matrix)], "the ticket's mask covers 1 of the"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_data_or_a_setting_that_does_not_apply_is_one_line(world, capsys, tmp_path, case):
    args, expected = _data_cases(world, tmp_path)[case]
    one_line_error(args, world, capsys, expected)


# --- 5. push writes only what it owns ------------------------------------------------------------------------------
def test_push_never_touches_what_it_did_not_write(world, capsys, tmp_path):
    push = ["push", "--ticket", str(world["ticket"]), "--repo-id", "someone/tiny"]
    mine = tmp_path / "my_notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    one_line_error([*push, "--dry-run", str(mine)], world, capsys, "not empty and not an earlier export")
    assert (mine / "thesis.tex").read_text() == "years of work" and len(list(mine.iterdir())) == 1
    run_folder = world["ticket"].parents[1]
    one_line_error([*push, "--dry-run", str(run_folder)], world, capsys, "not empty and not an earlier export")
    one_line_error([*push, "--dry-run", ""], world, capsys, "--dry-run needs a folder")  # never an upload
    (tmp_path / "plain_file").write_text("x")
    one_line_error([*push, "--dry-run", str(tmp_path / "plain_file")], world, capsys, "is not a folder")
    out = tmp_path / "release"
    assert main([*push, "--dry-run", str(out)]) == 0 and main([*push, "--dry-run", str(out)]) == 0  # ours: replaced
    assert (out / "model.safetensors").is_file() and os.stat(out).st_mode & 0o777 == 0o777 & ~UMASK
    assert sorted(p.name for p in tmp_path.iterdir()) == [".release.lock", "my_notes", "plain_file", "release"]


def test_two_dry_runs_into_one_folder_at_once_leave_one_good_export(world, tmp_path):
    out = tmp_path / "release"
    command = [sys.executable, "-m", "bert_tickets.cli", "push", "--ticket", str(world["ticket"]), "--repo-id",
               "someone/tiny", "--dry-run", str(out)]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in running]
    assert [p.returncode for p in running] == [0, 0], results
    from bert_tickets.release.hub import is_export, verify_export

    assert is_export(out) and verify_export(out)["pruned_nonzero"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".release.lock", "release"]  # the lock, no temp folder


# --- 6. reruns, leftovers, modes, locks, moved folders ---------------------------------------------------------------
def test_a_rerun_of_a_finished_run_writes_nothing(world, capsys, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(world["out"], copy)
    args = [a if a != str(world["out"]) else str(copy) for a in world["args"]]
    before = snapshot(copy)

    def refuse(path, write):  # a read-only disk (chmod alone does not stop root)
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr("bert_tickets.files.atomic_write", refuse)
    for folder in [copy, *copy.rglob("*")]:
        folder.chmod(0o555 if folder.is_dir() else 0o444)
    try:
        assert main(args) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1].endswith("sparsity_0.2000")
    finally:
        for folder in [copy, *copy.rglob("*")]:
            folder.chmod(0o755 if folder.is_dir() else 0o644)
    assert snapshot(copy) == before


def test_temp_files_of_an_interrupted_write_are_removed_by_the_next_run(world, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(world["out"], copy)
    run = next(copy.glob("sst2/imp_*"))
    leftovers = [run / ".metrics.json.a1b2c3d4.tmp",
                 run / "level_01_sparsity_0.2000" / ".mask.safetensors.x_9y0z1a.tmp"]
    for path in leftovers:  # as `atomic_write` names them (mkstemp's 8 characters)
        path.write_bytes(b"half a file")
    args = [a if a != str(world["out"]) else str(copy) for a in world["args"]]
    assert main([*args, "--seeds", "2"]) == 0  # more work in that run folder: it takes the lock and tidies up
    assert not any(path.exists() for path in leftovers)
    record = paths.ticket_seed(next(run.glob("tickets/*")), 1)
    assert os.stat(record).st_mode & 0o777 == 0o666 & ~UMASK  # the umask's mode, not mkstemp's 0600
    capsys.readouterr()


def test_a_second_identical_run_waits_instead_of_repeating_the_levels(world, tmp_path):
    args = [a if a != str(world["out"]) else str(tmp_path / "runs") for a in world["args"]]
    command = [sys.executable, "-m", "bert_tickets.cli", *args]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ | {"OMP_NUM_THREADS": "1"}) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in running]
    assert [p.returncode for p in running] == [0, 0], results
    trained = [line for _, err in results for line in err.splitlines() if " done: accuracy" in line]
    assert len(trained) == 2  # levels 0 and 1, trained once between the two processes
    assert results[0][0].splitlines()[-1] == results[1][0].splitlines()[-1]  # the same ticket


def test_transfer_cells_are_keyed_by_the_source_ticket_not_its_path(world, tmp_path):
    moved = tmp_path / "moved_ticket"
    shutil.copytree(world["ticket"], moved)
    settings = {"model.name": world["model"], "data.task": "rte", "pruning.method": "ticket", "pruning.sparsity": 0.2}
    here = load_config(None, settings | {"pruning.ticket": str(world["ticket"])})
    there = load_config(None, settings | {"pruning.ticket": str(moved)})
    assert run_hash(here) == run_hash(there)
    other = tmp_path / "other_ticket"
    shutil.copytree(world["ticket"], other)
    info = json.loads((other / "ticket.json").read_text()) | {"run_hash": "0123456789"}
    (other / "ticket.json").write_text(json.dumps(info))
    assert run_hash(load_config(None, settings | {"pruning.ticket": str(other)})) != run_hash(here)


def test_a_local_worker_stops_when_its_parent_is_killed(tmp_path):
    """What run_local_workers gives every worker: killed with SIGKILL, the parent takes its workers along."""
    import signal
    import time

    parent = ("import subprocess, sys\n"
              "from bert_tickets.workers import _die_with_parent\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
              "preexec_fn=_die_with_parent)\n"
              "print(child.pid, flush=True)\n"
              "child.wait()\n")
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    child = int(process.stdout.readline())
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for _ in range(100):
        status = Path(f"/proc/{child}/status")
        if not status.exists() or "\tZ" in status.read_text():  # gone, or a zombie waiting to be reaped
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")
