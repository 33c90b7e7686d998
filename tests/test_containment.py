"""Nothing lost, round three: a release never touches what lies outside it, every file read back is checked before
use, command-line values are read strictly, and the files we delete are only the ones we write. Each family is
parametrised; each case asserts exit 2, one error line without a traceback, and every file outside the owned folder
byte-identical (the victim file beside an export included)."""

import errno
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_hardening import one_line_error, snapshot, world  # noqa: F401 (world is a fixture)

from bert_tickets import paths
from bert_tickets.cli import main
from bert_tickets.files import sha256
from bert_tickets.progress import WorkerStatus
from bert_tickets.release import folder as release_folder
from bert_tickets.release.folder import MANIFEST, STAGING
from bert_tickets.release.hub import verify_export
from bert_tickets.ticket import Ticket


def _push(w: dict, out: Path) -> list[str]:
    return ["push", "--ticket", str(w["ticket"]), "--repo-id", "someone/tiny", "--dry-run", str(out)]


def _error_line(args: list[str], capsys) -> str:
    """Exit 2 (argparse's own errors included), one error line, no traceback: that line."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.strip() and not line.startswith("[bert-tickets]")
              and "%|" not in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# --- 1. a re-export never deletes or writes outside its folder ------------------------------------------------------
def _entry_up(out: Path, victim: Path) -> str:
    return "../victim.txt"


def _entry_deep(out: Path, victim: Path) -> str:
    return "sub/../../victim.txt"


def _entry_absolute(out: Path, victim: Path) -> str:
    return str(victim)


def _entry_through_linked_folder(out: Path, victim: Path) -> str:
    (out / "sub").symlink_to(victim.parent, target_is_directory=True)
    return "sub/victim.txt"


def _entry_that_is_a_link(out: Path, victim: Path) -> str:
    (out / "notes.txt").symlink_to(victim)
    return "notes.txt"


def _entry_the_staging_folder(out: Path, victim: Path) -> str:
    return f"{STAGING}/x"


@pytest.mark.parametrize("entry", [_entry_up, _entry_deep, _entry_absolute, _entry_through_linked_folder,
                                   _entry_that_is_a_link, _entry_the_staging_folder])
def test_a_tampered_manifest_touches_nothing_outside_the_export(world, tmp_path, capsys, entry):  # noqa: F811
    out = tmp_path / "release"
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    assert main(_push(world, out)) == 0
    relative = entry(out, victim)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"][relative] = [sha256(victim)]  # its true digest: the manifest "owns" it
    (out / MANIFEST).write_text(json.dumps(manifest))
    before, outside = snapshot(out), snapshot(tmp_path)
    line = _error_line(_push(world, out), capsys)
    assert "nothing was changed" in line and relative in line, line
    assert victim.read_text() == "the user's file"
    assert snapshot(out) == before and snapshot(tmp_path) == outside


def test_a_manifest_that_is_a_link_is_refused(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "release"
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    assert main(_push(world, out)) == 0
    elsewhere = tmp_path / "elsewhere.json"
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"]["victim.txt"] = [sha256(victim)]
    elsewhere.write_text(json.dumps(manifest))
    (out / MANIFEST).unlink()
    (out / MANIFEST).symlink_to(elsewhere)
    outside = snapshot(tmp_path)
    assert "is not a regular file" in _error_line(_push(world, out), capsys)
    assert snapshot(tmp_path) == outside and victim.read_text() == "the user's file"


def test_an_export_never_writes_through_a_linked_sub_folder(world, tmp_path, capsys):  # noqa: F811
    """A file the export writes in a sub-folder: that sub-folder being a link elsewhere refuses the export."""
    out = tmp_path / "release"
    assert main(_push(world, out)) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "model.safetensors"
    victim.write_bytes(b"the user's")
    os.replace(out, tmp_path / "moved")  # the export, re-made as a folder whose files all live behind a link
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / "model.safetensors").symlink_to(victim)
    line = _error_line(_push(world, out), capsys)
    assert "symbolic link" in line and victim.read_bytes() == b"the user's"


# --- 2. exports that work on any folder ----------------------------------------------------------------------------
def test_an_export_stages_inside_its_folder_and_copies_across_devices(world, tmp_path, monkeypatch):  # noqa: F811
    """A mount point: the staging folder is inside the destination, and a rename that crosses devices anyway (a
    sub-folder on another mount) is a copy."""
    real_replace = os.replace
    moved_from = []

    def across_devices(source, target):
        if STAGING in Path(source).parts and STAGING not in Path(target).parts:  # as if it crossed a device
            moved_from.append(Path(source).parent)
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(source, target)

    monkeypatch.setattr(release_folder.os, "replace", across_devices)
    out = tmp_path / "volume"
    assert main(_push(world, out)) == 0
    assert moved_from and all(p == out / STAGING or out / STAGING in p.parents for p in moved_from)
    assert verify_export(out)["pruned_nonzero"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".volume.lock", "volume"]  # nothing staged beside it
    assert not (out / STAGING).exists()


def test_a_move_that_fails_halfway_leaves_a_manifest_of_what_is_there(world, tmp_path, monkeypatch, capsys):  # noqa: F811
    real_replace = os.replace
    calls = []

    def fails_third(source, target):
        if STAGING in Path(source).parts and STAGING not in Path(target).parts:
            calls.append(target)
            if len(calls) == 3:
                raise OSError(errno.EIO, "Input/output error", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(release_folder.os, "replace", fails_third)
    out = tmp_path / "release"
    assert main(_push(world, out)) == 2
    capsys.readouterr()
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert len(listed) == 2 and all((out / f).is_file() for f in listed)
    monkeypatch.setattr(release_folder.os, "replace", real_replace)
    assert main(_push(world, out)) == 0  # and the next export completes it
    assert all((out / f).is_file() for f in json.loads((out / MANIFEST).read_text())["files"])


# --- 3. own-file rules as narrow as the files we own ---------------------------------------------------------------
def test_an_export_named_like_a_glob_leaves_its_neighbours_alone(world, tmp_path):  # noqa: F811
    neighbour = tmp_path / ".release.export-abc.tmp"  # what another tool (or an older version) keeps beside it
    neighbour.mkdir()
    (neighbour / "keep.txt").write_text("someone else's")
    other = tmp_path / "release"
    assert main(_push(world, other)) == 0
    (other / STAGING).mkdir()  # another export's staging folder, in use
    (other / STAGING / "model.safetensors").write_bytes(b"in progress")
    before = snapshot(tmp_path)
    assert main(_push(world, tmp_path / "*")) == 0
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("*/") and k != ".*.lock"} == before


def test_a_re_export_keeps_the_folder_modes_its_owner_chose(world, tmp_path):  # noqa: F811
    out = tmp_path / "release"
    assert main(_push(world, out)) == 0
    os.chmod(out, 0o700)
    assert main(_push(world, out)) == 0
    assert out.stat().st_mode & 0o777 == 0o700


def test_a_rerun_keeps_a_users_files_in_the_run_folder(world, tmp_path, capsys):  # noqa: F811
    copy = tmp_path / "runs"
    shutil.copytree(world["out"], copy)
    run = next(copy.glob("sst2/imp_*"))
    (run / "mynotes.json").write_text("{ not json: my scratch")
    (run / ".draft.tmp").write_text("a hidden draft")
    (run / "level_0").mkdir(exist_ok=True)
    (run / "level_0" / "plan.checkpoint.new").mkdir()
    args = [a if a != str(world["out"]) else str(copy) for a in world["args"]]
    args[args.index("--sparsity") + 1] = "0.36"  # the next level: work to do in the same run folder
    assert main(args) == 0, capsys.readouterr().err
    assert (run / "mynotes.json").read_text() == "{ not json: my scratch"
    assert (run / ".draft.tmp").read_text() == "a hidden draft" and (run / "level_0" / "plan.checkpoint.new").is_dir()


def test_a_source_ticket_never_switches_on_tracking_or_kept_models(world, tmp_path):  # noqa: F811
    ticket = tmp_path / "ticket"
    shutil.copytree(world["ticket"], ticket)
    info = json.loads(paths.ticket_info(ticket).read_text())
    info["config"] |= {"training.report_to": "wandb", "training.wandb_project": "theirs", "training.study": "theirs",
                       "training.keep_finetuned": True, "training.learning_rate": 3e-5}
    paths.ticket_info(ticket).write_text(json.dumps(info))
    inherited = Ticket.load(ticket).inherited_settings()
    assert inherited["training.learning_rate"] == 3e-5  # the recipe is inherited
    assert not {"training.report_to", "training.wandb_project", "training.study",
                "training.keep_finetuned"} & set(inherited)


# --- 4. every file read back is checked before use -----------------------------------------------------------------
def _shape_scalar(bits, shape):
    return torch.tensor(shape[0])


def _shape_2d(bits, shape):
    return torch.tensor([shape])


def _shape_huge(bits, shape):
    return torch.tensor([1, 2**40])


def _shape_negative(bits, shape):
    return torch.tensor([-shape[0], shape[1]])


def _shape_not_held(bits, shape):
    return torch.tensor([shape[0] + 1, shape[1]])


def _shape_float(bits, shape):
    return torch.tensor(shape, dtype=torch.float32)


@pytest.mark.parametrize("bad_shape", [_shape_scalar, _shape_2d, _shape_huge, _shape_negative, _shape_not_held,
                                       _shape_float])
def test_a_masks_shape_metadata_is_checked_before_use(world, tmp_path, capsys, bad_shape):  # noqa: F811
    from safetensors import safe_open

    ticket = tmp_path / "ticket"
    shutil.copytree(world["ticket"], ticket)
    with safe_open(str(paths.mask(ticket)), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    name = next(k for k in tensors if k.endswith(".shape"))
    tensors[name] = bad_shape(tensors[name.replace(".shape", ".bitmask")], tensors[name].tolist())
    save_file(tensors, str(paths.mask(ticket)), metadata=metadata)
    args = ["evaluate", "--ticket", str(ticket), "--task", "sst2", "--data-dir", str(world["glue"]), "--output-dir",
            str(world["out"]), "--max-steps", "2"]
    one_line_error(args, world, capsys, name)


def _status_wrong_types(path: Path) -> None:
    path.write_text(json.dumps({"seconds": 5}))


def _status_not_numbers(path: Path) -> None:
    path.write_text(json.dumps({"seconds": ["a"], "step": -1}))


def _status_a_list(path: Path) -> None:
    path.write_text("[1, 2]")


def _status_a_fifo(path: Path) -> None:
    os.mkfifo(path)


def _status_a_link(path: Path) -> None:
    target = path.with_name("elsewhere.json")
    target.write_text(json.dumps({"seconds": [1.0]}))
    path.symlink_to(target)


def _status_huge(path: Path) -> None:
    path.write_text(json.dumps({"seconds": [1.0] * 300_000}))


@pytest.mark.parametrize("make", [_status_wrong_types, _status_not_numbers, _status_a_list, _status_a_fifo,
                                  _status_a_link, _status_huge])
def test_a_worker_status_file_is_checked_before_use(tmp_path, make, capfd):
    path = tmp_path / "tickets_0.status.json"
    make(path)
    read: list = []
    reader = threading.Thread(target=lambda: read.append(WorkerStatus.read(path)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "reading a worker's status file hung"
    assert read == [None]
    assert str(path) in capfd.readouterr().err  # said once, by name
    WorkerStatus(seconds=[1.5], current="rte", step=2, steps=4).write(tmp_path / "good.json")
    assert WorkerStatus.read(tmp_path / "good.json").done == 1


# --- 5. one strict reader for command-line values ------------------------------------------------------------------
def _find(w: dict, *extra: str) -> list[str]:
    """The world's find command; a flag of `extra` that it has takes its place (once), the others come after."""
    args = ["find", "--task", "sst2", "--sparsity", "0.2", "--rate", "0.2", "--model", w["model"], "--data-dir",
            str(w["glue"]), "--output-dir", str(w["out"]), "--max-steps", "2", "--batch-size", "8"]
    extra = list(extra)
    for flag in ("--model", "--data-dir", "--output-dir"):
        if flag in extra:
            i = extra.index(flag)
            args[args.index(flag) + 1] = extra[i + 1]
            del extra[i:i + 2]
    return args + extra


STRICT_CASES = [
    (["--seed", "1:05"], "expects int, got '1:05'"),  # YAML 1.1 sexagesimal: 65
    (["--seed", "0x10"], "expects int"),
    (["--seed", "1_000"], "expects int"),
    (["--set", "training.seed=yes"], "expects int"),
    (["--learning-rate", "1:05"], "expects float"),
    (["--set", "training.learning_rate=.inf"], "expects float"),
    (["--max-length", "32", "--max_seq_length", "64"], "--max-length and --max-seq-length are two spellings"),
    (["--task-name", "sst2"], "--task and --task-name are two spellings"),
    (["--epochs", "1", "--num-train-epochs", "2"], "--epochs and --num-train-epochs are two spellings"),
]


@pytest.mark.parametrize("case", range(len(STRICT_CASES)))
def test_a_flag_value_is_read_strictly(world, capsys, case):  # noqa: F811
    extra, expected = STRICT_CASES[case]
    before = snapshot(world["out"])
    line = _error_line(_find(world, *extra), capsys)
    assert expected in line, line
    assert snapshot(world["out"]) == before


def test_a_config_file_is_read_strictly(world, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "recipe.yaml"
    config.write_text("training:\n  seed: 1:05\n")
    one_line_error(_find(world, "--config", str(config)), world, capsys, "expects int, got '1:05'")
    config.write_text("training:\n  keep_finetuned: yes\n  seed: 017\n")  # a yes/no where one is meant is fine
    from bert_tickets.config import load_config

    loaded = load_config(str(config))
    assert loaded.training.keep_finetuned is True and loaded.training.seed == 17  # decimal, never octal


def _not_utf8(tmp: Path) -> str:
    return str(tmp / "runs") + "\udcff"  # how Python keeps the byte 0xff of a non-UTF-8 argv


PATH_CASES = [
    (lambda w, tmp: _find(w, "--output-dir", ""), "--output-dir is empty"),
    (lambda w, tmp: _find(w, "--data-dir", ""), "--data-dir is empty"),
    (lambda w, tmp: _find(w, "--model", " "), "--model is empty"),
    (lambda w, tmp: ["study", "minilm-cpu", "--output-dir", ""], "--output-dir is empty"),
    (lambda w, tmp: ["report", ""], "the study folder is empty"),
    (lambda w, tmp: _find(w, "--output-dir", _not_utf8(tmp)), "is not UTF-8 text"),
    (lambda w, tmp: ["study", "minilm-cpu", "--output-dir", _not_utf8(tmp)], "is not UTF-8 text"),
    (lambda w, tmp: _find(w, "--output-dir", "/proc/x", "--model", str(tmp / "no-such-model")),
     "cannot create the output folder /proc/x"),  # before the model would be loaded
    (lambda w, tmp: ["study", "minilm-cpu", "--output-dir", "/proc/x"], "cannot create the output folder /proc/x"),
]


@pytest.mark.parametrize("case", range(len(PATH_CASES)))
def test_a_path_that_cannot_hold_results_is_refused_before_any_work(
        world, tmp_path, capsys, monkeypatch, case):  # noqa: F811
    make, expected = PATH_CASES[case]
    args = make(world, tmp_path)
    if "/proc/x" in args and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    monkeypatch.chdir(tmp_path)
    before = snapshot(world["out"])
    line = _error_line(args, capsys)
    assert expected in line, line
    assert snapshot(world["out"]) == before and list(tmp_path.iterdir()) == []  # nothing written here either
