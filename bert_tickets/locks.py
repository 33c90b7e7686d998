"""Locks on run files and folders: one process at a time computes a record or works in a run folder; a second
waits, then finds the first one's results done. Local workers run under their parent's lock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from bert_tickets.errors import UserError
from bert_tickets.files import TEMP_SUFFIX, remove_damaged, remove_leftovers, usable_folder
from bert_tickets.ranks import is_main_process, log


@contextmanager
def file_lock(lock_file: Path, waiting: str | None = None) -> Iterator[None]:
    """An exclusive `flock` on `lock_file` (created if missing, never deleted: a waiter may hold it open), released
    however the process ends; `waiting` is logged when another process holds it. A lock that is not a regular file
    (a FIFO would block forever, a link could point anywhere) is refused."""
    if lock_file.is_symlink() or (lock_file.exists() and not lock_file.is_file()):
        raise UserError(f"{lock_file} is not a regular file: remove it (it is only a lock) and rerun")
    # filelock: flock on Unix (released however the process ends), msvcrt on Windows; one lock object per call, so
    # two holders in one process (a parent and its in-process work) exclude each other as two processes would
    lock = FileLock(str(lock_file), is_singleton=False, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting:
            log(waiting)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def result_lock(path: Path) -> Iterator[None]:
    """One process at a time computes the record `path` (a dense seed several runs share, a ticket's seed), so two
    runs or array tasks never train it twice: the second waits, then finds it. Only the main rank locks."""
    if not is_main_process():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(f".{path.name}.lock")):
        for tmp in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):  # this record's interrupted writes
            tmp.unlink(missing_ok=True)
        remove_damaged([path])
        yield


LOCK_ENV = "BERT_TICKETS_LOCKED"  # folders whose lock a parent process holds for its local workers


def holds_lock(folder: Path) -> bool:
    """Whether this process (or its parent, for local workers) already holds `folder`'s lock."""
    return str(folder.resolve()) in os.environ.get(LOCK_ENV, "").split(os.pathsep)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One process at a time works in `folder`: a second identical run waits here, then finds the first one's
    results done. Local workers run under their parent's lock (it holds it for them). The lock is released when
    the process ends, however it ends."""
    usable_folder(folder)
    if holds_lock(folder) or not is_main_process():  # the other ranks train under the main one's lock
        yield
        return
    with file_lock(folder / ".lock", waiting=f"another process is working in {folder}: waiting for it"):
        previous = os.environ.get(LOCK_ENV)
        os.environ[LOCK_ENV] = os.pathsep.join(filter(None, [previous, str(folder.resolve())]))
        try:
            remove_leftovers(folder)
            yield
        finally:
            if previous is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = previous
