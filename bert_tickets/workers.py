"""Splitting independent fine-tunings (evaluation seeds, transfer cells, a study's runs) over processes and machines.

`--cell i/N` splits a transfer or a study over machines; `--workers K` starts K local processes, pinned to the
visible GPUs in turn, so one process per GPU fills a machine and several per GPU pack small fine-tunings onto one.

One implementation for every kind of independent work (a run's evaluation seeds, a transfer matrix's cells, a
study's jobs): `JobRounds`, rounds of units of typed jobs, listed alike in every process. Each local worker repeats
the API call that started it (`bert_tickets.api`, as JSON: never the command line) with `worker="ROUND:i/K"` and
computes every K-th unit of that round; once all rounds are done, the parent process runs everything itself,
finding it finished, and writes the outputs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bert_tickets.errors import UserError
from bert_tickets.progress import STATUS_FILE_ENV, Progress, WorkerStatus, active
from bert_tickets.ranks import log, world_size

Item = TypeVar("Item")
ApiCall = dict[str, Any]  # {"function": a name in bert_tickets.api, "kwargs": its JSON arguments}


class Job(Protocol):
    """A unit of independent work in a context (an engine run, a study's recipe, a transfer matrix)."""

    def run(self, context: Any) -> None: ...

    def is_done(self, context: Any) -> bool:
        """Whether its results are all there already (never trains)."""
        ...


AnyJob = TypeVar("AnyJob", bound=Job)


@dataclass
class JobRounds(Generic[AnyJob]):
    """Rounds of units of jobs, in order (each unit goes to one worker whole: its jobs share work, such as a
    search's levels); the same lists in every process, whatever is done meanwhile."""

    context: Any
    rounds: dict[str, list[list[AnyJob]]]
    workers_dir: Path  # where the workers' logs go
    before: Callable[[], bool] = field(default=lambda: True)  # what must run first, here; False: nothing is left

    def run_unit(self, unit: list[AnyJob]) -> None:
        for job in unit:
            log(f"worker job: {job}")  # what this worker's log is about, in its own words
            job.run(self.context)

    def is_done(self, unit: list[AnyJob]) -> bool:
        return all(job.is_done(self.context) for job in unit)


def run_share_or_start_workers(work: JobRounds[Any], call: ApiCall, worker: str | None, count: int,
                               after_progress: Callable[[], None] | None = None) -> bool:
    """In a worker (`worker` is its ROUND:i/N): run its share of that round and return True. Otherwise start
    `count` local workers per round when `count` > 1, and return False: the caller then runs everything itself.
    `after_progress` (the live report) runs in this process whenever the workers have finished more work."""
    if worker:
        phase, _, share = worker.partition(":")
        for unit in cells_of_worker(work.rounds[phase], *parse_share(share, "--worker")):
            work.run_unit(unit)
        return True
    if count > 1 and work.before():
        pending = {phase: sum(not work.is_done(unit) for unit in units) for phase, units in work.rounds.items()}
        run_local_workers(call, count, work.workers_dir, pending, after_progress)
    return False


def worker_count(requested: int | None) -> int:
    """--workers, or by default one per visible GPU (one under `accelerate launch`: its ranks share one run)."""
    default = 1 if world_size() > 1 else max(1, len(visible_gpus()))
    workers = requested if requested is not None else default
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return workers


def in_new_process(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a fresh (spawned) process, and its result: accelerate fixes one mixed precision per
    process, so runs in another precision than the caller's need a process of their own."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_put_result, args=(queue, function, args))
    process.start()
    result = queue.get()
    process.join()
    return result


def _put_result(queue: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    queue.put(function(*args))


def cells_of_worker(cells: list[Item], index: int, count: int) -> list[Item]:
    """Worker `index` of `count` owns every count-th cell: disjoint sets that together cover all cells."""
    if not 0 <= index < count:
        raise UserError(f"--cell i/N needs 0 <= i < N, got {index}/{count}")
    return [cell for i, cell in enumerate(cells) if i % count == index]


def parse_share(text: str, flag: str = "--cell") -> tuple[int, int]:
    share = re.fullmatch(r"([0-9]{1,9})/([0-9]{1,9})", text.strip())  # ASCII digits: str.isdigit takes '²' too
    if share is None or int(share[2]) == 0:
        raise UserError(f"{flag} expects i/N, e.g. 0/4; got {text!r}")
    return int(share[1]), int(share[2])


def _die_with_parent() -> None:
    """In a worker, before it starts: Linux stops it (SIGTERM) if the parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [g.strip() for g in listed.split(",") if g.strip()] if listed else [
        str(i) for i in range(torch.cuda.device_count())]


REPORT_EVERY = 30.0  # seconds between the parent's progress lines while local workers run
POLL_EVERY = 1.0  # seconds between the parent's looks at its workers (a failure shows within this)
TAIL_LINES = 12  # of a failed worker's log, shown at once


def run_local_workers(call: ApiCall, requested: int, log_dir: Path, pending: dict[str, int],
                      after_progress: Callable[[], None] | None = None) -> None:
    """Rounds of processes, each pinned to one GPU in turn (several per GPU pack it); every process repeats this
    API call with `worker="ROUND:i/count"` and computes its share of that round's jobs. A round starts no more
    processes than it has units left (none when all are done). Meanwhile the parent reports done/total, the time
    left and each worker's fine-tuning every REPORT_EVERY seconds, and a worker's failure at once."""
    gpus = visible_gpus()
    for phase, left in pending.items():
        count = min(requested, left)
        if count == 0:
            continue
        log_dir.mkdir(parents=True, exist_ok=True)
        log(f"{phase}: {count} local workers on {'GPUs ' + ','.join(gpus) if gpus else 'CPU'}; their logs: "
            f"{log_dir}/{phase}_*.log")
        team = [_start_worker(call, phase, i, count, gpus, log_dir) for i in range(count)]
        try:
            failed = _watch(phase, team, after_progress)
        finally:  # interrupted (Ctrl-C, an error): no worker outlives this process
            for member in team:
                if member.process.poll() is None:
                    member.process.terminate()
        if failed:
            raise UserError(f"local worker(s) {failed} of the {phase} round failed; see {log_dir}/{phase}_*.log")


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    log_file: Path
    status_file: Path

    def status(self) -> WorkerStatus:
        return WorkerStatus.read(self.status_file) or WorkerStatus()

    def tail(self) -> str:
        """The last lines of its log (a progress bar's carriage-return updates reduced to their last state)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
        return "\n".join(f"    {line}" for line in [x for x in lines if x][-TAIL_LINES:])


def _start_worker(call: ApiCall, phase: str, i: int, count: int, gpus: list[str], log_dir: Path) -> _Worker:
    status_file = log_dir / f"{phase}_{i}.status.json"
    status_file.unlink(missing_ok=True)  # a previous run's: never counted again
    pin = {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // count)))}
    log_file = log_dir / f"{phase}_{i}.log"
    command = [sys.executable, "-m", "bert_tickets.worker_main", json.dumps(call, default=str), f"{phase}:{i}/{count}"]
    with log_file.open("w") as out:  # the child holds its own copy
        process = subprocess.Popen(command, env=os.environ | pin | {STATUS_FILE_ENV: str(status_file)}, stdout=out,
                                   stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    return _Worker(i, process, log_file, status_file)


def _watch(phase: str, team: list[_Worker], after_progress: Callable[[], None] | None) -> list[int]:
    """Wait for the round's workers, reporting as they go; returns the failed workers' indices."""
    progress = active()
    failed: list[int] = []
    last_report, reported_done = time.monotonic(), 0
    while True:
        running = [m for m in team if m.process.poll() is None]
        statuses = [m.status() for m in team]
        if progress is not None:
            progress.absorb(statuses)
        for member in team:
            code = member.process.poll()
            if code not in (None, 0) and member.index not in failed:
                failed.append(member.index)
                log(f"{phase} worker {member.index} failed (exit {code}); the last lines of {member.log_file}:\n"
                    f"{member.tail()}\n  the other workers go on (Ctrl-C stops them; finished work is kept)")
        done = sum(s.done for s in statuses)
        if not running or time.monotonic() - last_report >= REPORT_EVERY:
            if running:
                log(_report(phase, progress, team, statuses))
            if done > reported_done and after_progress is not None:
                after_progress()
            last_report, reported_done = time.monotonic(), done
        if not running:
            break
        time.sleep(POLL_EVERY)
    if progress is not None:
        progress.absorb(statuses, round_over=True)
    return failed


def _report(phase: str, progress: Progress | None, team: list[_Worker], statuses: list[WorkerStatus]) -> str:
    head = progress.summary() if progress is not None else f"{phase}: {sum(s.done for s in statuses)} done"
    lines = [f"  worker {m.index}: {'finished' if m.process.poll() is not None else s.describe()}"
             for m, s in zip(team, statuses, strict=True)]
    return "\n".join([head, *lines])
