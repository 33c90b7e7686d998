"""Run files: atomic writes, JSON records, damaged records and leftovers of interrupted writes, output folders.
Process ranks are `bert_tickets.ranks`; the locks that keep one worker per run folder, `bert_tickets.locks`.

Every result file is written to a temp file beside it, then renamed, so a reader never sees a partial file and a
kill never leaves a damaged one; a write whose content is already there writes nothing (a rerun of a finished run
works on a read-only or full disk). Files get the process umask's permissions, as files made by `open` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bert_tickets.errors import UserError
from bert_tickets.paths import is_record
from bert_tickets.ranks import is_main_process, log

TEMP_SUFFIX = ".tmp"
WRITE_LOG_ENV = "BERT_TICKETS_WRITE_LOG"  # a file: each run file written is appended to it, with the writer's rank


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)`, then rename the temp file onto `path`, so readers never see a partial file. Only the
    main process writes."""
    path = Path(path)
    if not is_main_process():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files: give them the mode `open` would
        os.replace(tmp, path)
        if trace := os.environ.get(WRITE_LOG_ENV):  # which process wrote what (shared file systems, debugging)
            with open(trace, "a") as out:
                out.write(f"{os.environ.get('RANK', '0')}\t{path}\n")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` atomically, unless the file already holds exactly that (then nothing is written)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def copy_file(source: str | Path, path: str | Path) -> Path:
    """Copy atomically, unless `path` already holds the same bytes."""
    return write_bytes(path, Path(source).read_bytes())


def read_json(path: str | Path) -> Any:
    """A record; an empty or torn one (a crash before the disk had it) is one clear error naming it."""
    try:
        return json.loads(Path(path).read_bytes())
    except ValueError:
        raise UserError(f"{path} is damaged (empty or cut short, e.g. by a crash): rerun the command that wrote it, "
                        "which recomputes it") from None


def read_json_if_exists(path: str | Path) -> Any | None:
    path = Path(path)
    return read_json(path) if path.exists() else None


def is_damaged(path: Path) -> bool:
    """A JSON record that exists but does not parse."""
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return True
    except OSError:
        return False
    return False


def is_whole(record: Path) -> bool:
    """A record that is there and parses (an empty or torn one, what a crash can leave, is recomputed)."""
    return record.exists() and not is_damaged(record)


def remove_damaged(paths: Iterable[Path]) -> None:
    """Delete records that do not parse, so they are recomputed; call it only under the lock of whoever writes them
    (our writes are atomic renames: only a crash of the machine before the data reached the disk leaves one)."""
    for path in paths:
        if path.is_file() and is_damaged(path):
            path.unlink()
            log(f"removed the damaged record {path} (empty or cut short): it is recomputed")


def remove_leftovers(folder: Path) -> int:
    """Delete the temp files of writes that were killed halfway (SIGKILL, power loss) under `folder`; call it
    only while holding the folder's lock, so no live write is touched. Returns how many were removed."""
    removed = 0
    for tmp in folder.rglob(f".*{TEMP_SUFFIX}"):
        if is_temp_name(tmp.name) and tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed += 1
    for new in folder.rglob("*.checkpoint.new"):  # a checkpoint whose writing was interrupted (never the resumed one)
        if is_record(new.with_name(new.name.removesuffix(".checkpoint.new") + ".json")) and not new.is_symlink():
            shutil.rmtree(new, ignore_errors=True)
            removed += 1
    if removed:
        log(f"removed {removed} temp file(s) left by an interrupted run in {folder}")
    remove_damaged(p for p in folder.rglob("*.json") if is_record(p) and not p.is_symlink())
    return removed


def is_temp_name(name: str) -> bool:
    """A temp file of `atomic_write` (`.<name>.<mkstemp's 8 characters>.tmp`), not any hidden file ending in .tmp."""
    return re.fullmatch(rf"\..+\.[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}", name) is not None


def is_utf8(text: str) -> bool:
    """Text that UTF-8 can hold (records, cards and safetensors metadata are UTF-8): Python keeps the undecodable
    bytes of a path or argv as lone surrogates, which it cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_path_text(path: str | Path | None, what: str) -> None:
    """A path given by a user is not empty (it would mean the current folder) and is UTF-8 text: one error naming
    `what` otherwise, before any work."""
    if path is None:
        return
    text = os.fspath(path)
    if not text.strip():
        raise UserError(f"{what} is empty: give a folder or file (the current folder is `.`)")
    if not is_utf8(text):
        raise UserError(f"{what} {text!r} is not UTF-8 text: choose a name in UTF-8")


def check_output_location(folder: Path) -> None:
    """Before any work: `folder` can be made (or is) a writable folder, tried by making and removing an empty
    folder in its nearest existing parent (permission bits say nothing for root, or on /proc, or a read-only mount)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot create the output folder {folder}: {existing} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".bert-tickets-probe-"))
    except OSError as exc:
        raise UserError(f"cannot create the output folder {folder}: {existing} takes no new folder "
                        f"({exc.strerror or exc})") from None


def usable_folder(folder: Path) -> Path:
    """`folder`, created if missing, or one clear error when it cannot hold results (a file is in the way, no
    permission, a read-only disk) before any work starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write in the output folder {folder}: permission denied")
    return folder


def sha256(path: Path) -> str:
    """A file's SHA-256, read in blocks (checkpoints and export manifests)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
