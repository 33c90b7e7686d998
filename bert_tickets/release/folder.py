"""Release folders that never touch what they did not write, inside or outside them.

An export (a ticket's Hub-ready folder, a study's report repository) is staged inside its destination (so a mount
point works: no rename crosses a device), verified, then moved in file by file. The destination's manifest lists each
file an export wrote with its SHA-256: a rerun replaces or removes exactly those, keeps every other file (a user's
notes, a sub-folder, a git clone's history), and refuses with one line when it would overwrite a file it did not
write or one changed since it wrote it. A manifest travels with any zipped or cloned release, so it is untrusted
input: each path it names must be a plain relative name that stays inside the folder once links are followed, or
nothing is done. Kept ourselves rather than in huggingface_hub: its `upload_folder` uploads a folder but never
manages a local one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from bert_tickets.errors import UserError
from bert_tickets.files import TEMP_SUFFIX, UMASK, sha256, write_json
from bert_tickets.locks import file_lock
from bert_tickets.ranks import log

MANIFEST = ".bert-tickets-export.json"  # never uploaded (see `UPLOAD_IGNORE`)
STAGING = ".bert-tickets-staging"  # inside the destination, under its lock: one name, ours alone
UPLOAD_IGNORE = [MANIFEST, f"{STAGING}/*"]
RESERVED = {MANIFEST, STAGING}


def inside(out: Path, relative: str, what: str) -> Path:
    """`out / relative`, where `relative` is a plain relative path that names no link and stays inside `out` once
    every link is followed; anything else (`..`, an absolute path, a symlinked sub-folder or file) is one error."""
    parts = PurePosixPath(relative).parts
    if not relative or "\\" in relative or PurePosixPath(relative).is_absolute() or any(
            p in ("", ".", "..") for p in parts):
        raise UserError(f"{what} names {relative!r}, which is not a path inside {out}: nothing was changed")
    target = out.joinpath(*parts)
    if os.path.realpath(target) != os.path.join(os.path.realpath(out), *parts):
        raise UserError(f"{what} names {relative!r}, which leads outside {out} through a symbolic link: nothing was "
                        "changed")
    return target


def owned(out: Path) -> dict[str, list[str]]:
    """The files an earlier export wrote into `out` (relative path -> the SHA-256 values it may hold), or {}; every
    path checked to lie inside `out`."""
    path = out / MANIFEST
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UserError(f"{path} is not a regular file (a link or a folder): move {out} aside (nothing was changed)")
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_bytes())["files"]
        listed = {str(k): list(v) for k, v in files.items()}
        if not all(isinstance(k, str) and all(isinstance(d, str) for d in v) for k, v in files.items()):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is damaged: move {out} aside (nothing was changed)") from None
    for relative in listed:
        if relative in RESERVED or PurePosixPath(relative).parts[:1] == (STAGING,):
            raise UserError(f"{path} names {relative!r}, the export's own file: move {out} aside (nothing was changed)")
        inside(out, relative, str(path))
    return listed


def user_entries(out: Path) -> list[Path]:
    """What `out` holds beside the export's own manifest and staging folder."""
    return [p for p in out.iterdir() if p.name not in RESERVED] if out.is_dir() else []


def check_replaceable(out: Path, what: str = "an earlier export of a ticket") -> None:
    """`out` may receive an export: missing, empty, or an earlier export whose files are as it wrote them."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --dry-run folder")
    files = owned(out) if out.is_dir() else {}
    if not files and user_entries(out):
        raise UserError(f"{out} is not empty and not {what}: choose another --dry-run folder (nothing was changed)")
    for relative, digests in files.items():
        path = out / relative
        if path.is_file() and sha256(path) not in digests:
            raise UserError(f"{path} was changed after the export that wrote it: move it aside or choose another "
                            "--dry-run folder (nothing was changed)")


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh folder inside `out` (created if missing) to build the export in, under `out`'s lock (a lock file
    beside `out`), after removing what an interrupted export left; deleted however the block ends, and `out` with
    it when it was made here and nothing was moved in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.parent / f".{out.name}.lock", waiting=f"another export into {out} is running: waiting"):
        made = not out.exists()
        try:
            out.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the export folder {out}: {exc.strerror or exc}") from None
        folder = out / STAGING
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"{folder} is not the export's own staging folder: move it aside (nothing was changed)")
        if folder.exists():
            shutil.rmtree(folder)
            log(f"removed {folder}, left by an interrupted export")
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if made:
                with suppress(OSError):
                    out.rmdir()  # only when empty: nothing was moved in


def replace_owned(new: Path, out: Path, what: str = "an earlier export of a ticket") -> Path:
    """Move the files of `new` into `out`: those an earlier export wrote are replaced or removed, every other file
    is kept, and a file of `new` whose name is taken by one we did not write refuses the whole export (one line,
    nothing changed). New files and folders get the umask's modes; existing folders keep theirs."""
    check_replaceable(out, what)
    before = owned(out)
    files = sorted(p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file() and not p.is_symlink())
    for f in files:
        inside(out, f, "the export")  # a sub-folder of `out` that is a link is never written through
    if taken := [f for f in files if (out / f).exists() and f not in before]:
        raise UserError(f"{out / taken[0]} was not written by an export: move it aside or choose another --dry-run "
                        "folder (nothing was changed)")
    digests = {f: sha256(new / f) for f in files}
    # first a manifest that accepts the old and the new content, so a kill halfway leaves a folder we still own
    accepted = {f: sorted({*before.get(f, []), *([digests[f]] if f in digests else [])}) for f in {*before, *files}}
    _write_manifest(out, accepted)
    try:
        for f in files:
            _move_in(new / f, out, f)
        for f in set(before) - set(files):
            (out / f).unlink(missing_ok=True)
    except BaseException:  # never a manifest naming files that are not there
        _write_manifest(out, {f: d for f, d in accepted.items() if (out / f).is_file()})
        raise
    _write_manifest(out, {f: [d] for f, d in digests.items()})
    return out


def _move_in(source: Path, out: Path, relative: str) -> None:
    """`source` to `out / relative`, making missing folders (umask modes); a copy where a rename crosses devices."""
    target = out / relative
    for parent in reversed(PurePosixPath(relative).parents[:-1]):
        folder = out / parent
        if not folder.exists():
            folder.mkdir()  # the umask's mode, as `mkdir` gives; an existing folder keeps the mode its owner chose
    os.chmod(source, 0o666 & ~UMASK)  # save_pretrained and mkstemp make some files 0600
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o666 & ~UMASK)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _write_manifest(out: Path, files: dict[str, list[str]]) -> None:
    write_json(out / MANIFEST, {"written_by": "bert-tickets", "files": dict(sorted(files.items()))})
