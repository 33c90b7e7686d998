"""Release folders that never lose what they did not write.

An export (a ticket's Hub-ready folder, a study's report repository) is staged beside its destination, verified,
then moved in file by file. The destination's manifest lists each file an export wrote with its SHA-256: a rerun
replaces or removes exactly those, keeps every other file (a user's notes, a sub-folder, a git clone's history),
and refuses with one line when it would overwrite a file it did not write or one changed since it wrote it. Kept
ourselves rather than in huggingface_hub: its `upload_folder` uploads a folder but never manages a local one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bert_tickets.errors import UserError
from bert_tickets.locks import file_lock
from bert_tickets.ranks import log
from bert_tickets.runs import TEMP_SUFFIX, UMASK, sha256, write_json

MANIFEST = ".bert-tickets-export.json"  # never uploaded (see `UPLOAD_IGNORE`)
UPLOAD_IGNORE = [MANIFEST]
STAGING = "export-"


def owned(out: Path) -> dict[str, list[str]]:
    """The files an earlier export wrote into `out` (relative path -> the SHA-256 values it may hold), or {}."""
    path = out / MANIFEST
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
        return {str(k): list(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is damaged: move {out} aside (nothing was changed)") from None


def check_replaceable(out: Path, what: str = "an earlier export of a ticket") -> None:
    """`out` may receive an export: missing, empty, or an earlier export whose files are as it wrote them."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --dry-run folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    files = owned(out)
    if not files:
        raise UserError(f"{out} is not empty and not {what}: choose another --dry-run folder (nothing was changed)")
    for relative, digests in files.items():
        path = out / relative
        if path.is_file() and sha256(path) not in digests:
            raise UserError(f"{path} was changed after the export that wrote it: move it aside or choose another "
                            "--dry-run folder (nothing was changed)")


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh folder beside `out` to build the export in, under `out`'s lock (a lock file beside `out`), after
    removing what an interrupted export left; deleted however the block ends."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.parent / f".{out.name}.lock", waiting=f"another export into {out} is running: waiting"):
        for leftover in out.parent.glob(f".{out.name}.{STAGING}*{TEMP_SUFFIX}"):
            shutil.rmtree(leftover, ignore_errors=True)
            log(f"removed {leftover.name}, left by an interrupted export")
        folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{STAGING}", suffix=TEMP_SUFFIX))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def replace_owned(new: Path, out: Path, what: str = "an earlier export of a ticket") -> Path:
    """Move the files of `new` into `out`: those an earlier export wrote are replaced or removed, every other file
    is kept, and a file of `new` whose name is taken by one we did not write refuses the whole export (one line,
    nothing changed). Modes follow the umask."""
    check_replaceable(out, what)
    before = owned(out)
    files = sorted(str(p.relative_to(new)) for p in new.rglob("*") if p.is_file())
    if taken := [f for f in files if (out / f).exists() and f not in before]:
        raise UserError(f"{out / taken[0]} was not written by an export: move it aside or choose another --dry-run "
                        "folder (nothing was changed)")
    digests = {f: sha256(new / f) for f in files}
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777 & ~UMASK)
    # first a manifest that accepts the old and the new content, so a kill halfway leaves a folder we still own
    _write_manifest(out, {f: sorted({*before.get(f, []), *([digests[f]] if f in digests else [])})
                          for f in {*before, *files}})
    for f in files:
        target = out / f
        for parent in reversed(target.relative_to(out).parents[:-1]):
            (out / parent).mkdir(exist_ok=True)
            os.chmod(out / parent, 0o777 & ~UMASK)
        os.chmod(new / f, 0o666 & ~UMASK)  # save_pretrained and mkstemp make some files 0600
        os.replace(new / f, target)
    for f in set(before) - set(files):
        (out / f).unlink(missing_ok=True)
    _write_manifest(out, {f: [d] for f, d in digests.items()})
    return out


def _write_manifest(out: Path, files: dict[str, list[str]]) -> None:
    write_json(out / MANIFEST, {"written_by": "bert-tickets", "files": dict(sorted(files.items()))})
