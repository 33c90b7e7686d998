"""Progress over a command's fine-tunings: one outer bar (done/total and the time left), the current fine-tuning's
own bar inside it (`training.py`), and, in a local worker, a small status file that the parent reads to sum
done/total and to say what each worker is doing.

Our own count, not tqdm's ETA: tqdm's rate is bar updates per second since the bar opened, but here one unit is a
fine-tuning of minutes, and the first estimate should come from fine-tunings recorded before this command started
(a resumed study); so the time left is (fine-tunings left) × (mean recorded duration) / (processes at work).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bert_tickets.files import write_json
from bert_tickets.ranks import is_main_process, log

STATUS_FILE_ENV = "BERT_TICKETS_STATUS_FILE"  # set by the parent for each local worker
STATUS_EVERY = 2.0  # seconds between a worker's status writes during a fine-tuning
STATUS_LIMIT = 1 << 20  # bytes: a worker's status is a few hundred


def _read_regular(path: Path, limit: int) -> bytes | None:
    """At most `limit` bytes of a regular file, or None: opened without blocking and without following a link, so a
    FIFO or a device put in its place can neither hang the reader nor feed it forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _say_once(path, f"ignoring {path}: a symbolic link, not a worker's own file")
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            _say_once(path, f"ignoring {path}: not a regular file")
            return None
        data = handle.read(limit + 1)
    if len(data) > limit:
        _say_once(path, f"ignoring {path}: larger than {limit} bytes")
        return None
    return data


_said: set[str] = set()


def _say_once(path: Path, message: str) -> None:
    if str(path) not in _said:
        _said.add(str(path))
        log(message)


@dataclass
class WorkerStatus:
    """What a local worker tells its parent: fine-tunings finished (with their durations) and the current one."""

    seconds: list[float] = field(default_factory=list)  # one per fine-tuning this process finished
    current: str | None = None
    step: int = 0
    steps: int | None = None

    @property
    def done(self) -> int:
        return len(self.seconds)

    def describe(self) -> str:
        if self.current is None:
            return f"{self.done} done, between fine-tunings"
        steps = f"/{self.steps}" if self.steps else ""
        return f"{self.current}, step {self.step}{steps} ({self.done} done)"

    @classmethod
    def read(cls, path: Path) -> WorkerStatus | None:
        """A worker's last status; None before its first write, or when the file is no status a worker wrote (not
        a regular file, larger than `STATUS_LIMIT`, or fields of the wrong types: said once per file, by name)."""
        data = _read_regular(path, STATUS_LIMIT)
        if data is None:
            return None
        try:
            status = cls(**json.loads(data))
            if status.valid():
                return status
        except (ValueError, TypeError):
            pass
        _say_once(path, f"ignoring {path}: not a worker's status (a worker writes {{seconds, current, step, steps}})")
        return None

    def valid(self) -> bool:
        """Each field of the type a worker writes (a hand-written file is not trusted)."""
        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        return (isinstance(self.seconds, list)
                and all(isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
                        for s in self.seconds)
                and (self.current is None or isinstance(self.current, str)) and whole(self.step)
                and (self.steps is None or whole(self.steps)))

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))  # atomic: the parent never reads half a file


def duration_text(seconds: float) -> str:
    """'about 3 h 10 min', 'about 12 min', 'under a minute'."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if hours else f"about {minutes} min"


class Progress:
    """One command's fine-tunings. `recorded` are durations (s) of fine-tunings finished before it started."""

    def __init__(self, label: str, total: int, done: int, recorded: list[float] | None = None):
        self.label, self.total, self.initial = label, total, done
        self.recorded = list(recorded or [])
        self.status = WorkerStatus()
        self.workers: list[WorkerStatus] = []  # the parent's view of this round's local workers
        self.by_earlier_workers: list[float] = []  # durations of fine-tunings earlier rounds' workers finished
        status_file = os.environ.get(STATUS_FILE_ENV)
        self.status_file = Path(status_file) if status_file else None
        self._last_write = 0.0
        self._shown: tuple[int, str] | None = None
        self.bar: Any = None  # drawn once work starts: a command that fails on its input prints one line only

    def _finished_now(self) -> list[float]:
        """Durations of the fine-tunings finished during this command: here, and by local workers."""
        return self.status.seconds + self.by_earlier_workers + [s for w in self.workers for s in w.seconds]

    @property
    def done(self) -> int:
        return self.initial + len(self._finished_now())

    def seconds_left(self) -> float | None:
        """(left) × (mean duration) / (processes at work); None before any duration is known."""
        durations = self.recorded + self._finished_now()
        if not durations:
            return None
        processes = max(1, sum(w.current is not None for w in self.workers)) if self.workers else 1
        return max(0, self.total - self.done) * sum(durations) / len(durations) / processes

    def summary(self) -> str:
        left = self.seconds_left()
        when = f", {duration_text(left)} left" if left is not None and self.done < self.total else ""
        return f"{self.label}: {self.done}/{self.total} fine-tunings done{when}"

    def started(self, desc: str, steps: int | None) -> None:
        self.status.current, self.status.step, self.status.steps = desc, 0, steps
        self._write_status(force=True)
        self._refresh()

    def stepped(self, step: int) -> None:
        self.status.step = step
        self._write_status()

    def finished(self, seconds: float) -> None:
        self.status.seconds.append(round(seconds, 2))
        self.status.current = None
        self._write_status(force=True)
        self._refresh()

    def absorb(self, workers: list[WorkerStatus], round_over: bool = False) -> None:
        """The parent: its local workers' latest statuses (at a round's end, kept as finished work)."""
        self.workers = workers
        if round_over:
            self.by_earlier_workers += [s for w in workers for s in w.seconds]
            self.workers = []
        self._refresh()

    def _refresh(self) -> None:
        """Redrawn only when something shown changed (a log file is not flooded with identical lines)."""
        left = self.seconds_left()
        shown = (self.done, f"{duration_text(left)} left" if left is not None and self.done < self.total else "")
        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=self.initial, desc=self.label, dynamic_ncols=True,
                            bar_format="{desc}: {n}/{total} fine-tunings |{bar}| {elapsed}{postfix}",
                            disable=self.status_file is not None or not is_main_process())
        if shown != self._shown:
            self._shown = shown
            self.bar.n = shown[0]
            self.bar.set_postfix_str(shown[1], refresh=False)
            self.bar.refresh()

    def _write_status(self, force: bool = False) -> None:
        if self.status_file is None or not (force or time.monotonic() - self._last_write >= STATUS_EVERY):
            return
        self._last_write = time.monotonic()
        self.status.write(self.status_file)

    def close(self, failed: bool = False) -> None:
        """Closed; after a failure the bar is cleared from the terminal, so the error line stands alone."""
        if self.bar is not None:
            self.bar.leave = not failed
            self.bar.close()


_active: Progress | None = None


@contextmanager
def watching(label: str, total: int, done: int, recorded: list[float] | None = None) -> Iterator[Progress]:
    """The command's outer bar; a command called inside another (find's baselines, a study's runs) counts into
    the outer one."""
    global _active
    if _active is not None:
        yield _active
        return
    _active = progress = Progress(label, total, done, recorded)
    failed = True
    try:
        yield progress
        failed = False
    finally:
        _active = None
        progress.close(failed)


def active() -> Progress | None:
    return _active


@contextmanager
def fine_tuning(desc: str, steps: int | None, count: int = 1) -> Iterator[Any]:
    """Around one fine-tuning, or `count` trained as one computation (a pack): yields the per-step callback
    (step, ...) for the status; when done, counts each at the time taken divided by `count` (its throughput)."""
    progress = _active
    if progress is None:
        yield None
        return
    progress.started(desc, steps)
    start = time.perf_counter()
    yield lambda step, *_: progress.stepped(step)
    share = (time.perf_counter() - start) / count
    for _ in range(count):
        progress.finished(share)
