"""Nothing lost, round two: the failure families a held-out probe found. Each family is parametrised over several
instances; each asserts the exit code, one error line without a traceback, and earlier results byte-identical."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_hardening import one_line_error, snapshot, tiny, world  # noqa: F401 (world is a fixture)

from bert_tickets.cli import main
from bert_tickets.release_folder import MANIFEST
from bert_tickets.runs import UMASK


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
    left = tmp_path / ".release.export-abc123.tmp"  # what a SIGKILL during an export leaves
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"\0" * 1000)
    assert main(_push(world, out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".release.lock", "release"]
