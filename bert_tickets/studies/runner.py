"""The one runner of every command's work: `find` (with or without `--baselines`), `evaluate`, `transfer` and
`study` each turn their request into `Work` (typed jobs, `bert_tickets.studies.jobs`, and the recipe their engine
runs are built from), and `run_work` runs it: this machine's share (`--cell i/N`), local workers in rounds, the
command's progress bar, resume (a finished job is read, never trained again). What it hands back is typed: each
job of the share with its ticket.json (`TicketInfo`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bert_tickets import progress
from bert_tickets.engine.run import seed_rounds
from bert_tickets.engine.run_folder import count_fine_tunings
from bert_tickets.errors import UserError
from bert_tickets.ranks import barrier
from bert_tickets.results import TicketInfo
from bert_tickets.studies.jobs import Job, run_jobs
from bert_tickets.studies.shares import share, study_rounds
from bert_tickets.workers import ApiCall, JobRounds, run_share_or_start_workers, worker_count


@dataclass
class Work:
    """What a command asked for: its jobs in the order they run, the recipe they build their runs from, the
    label of its progress bar and log, and the folder whose `paths.workers` its local workers log into."""

    recipe: Any  # studies.jobs.Recipe, MatrixRecipe or RunRecipe: what `Job.engine_run` is handed
    jobs: list[Job]
    label: str
    folder: Path
    round_names: dict[str, str] = field(default_factory=dict)  # a phase's name in the workers' logs, if not its own

    @property
    def is_one_run(self) -> bool:
        return len(self.jobs) == 1

    def rounds(self, mine: list[Job]) -> JobRounds[Any]:
        """What local workers share: one run's evaluation seeds (its only independent work), or else the jobs by
        phase (tickets and what needs none, then what reuses a ticket)."""
        if self.is_one_run:
            return seed_rounds(self.jobs[0].engine_run(self.recipe))
        rounds = study_rounds(self.recipe, self.jobs, mine, self.folder)
        rounds.rounds = {self.round_names.get(phase, phase): units for phase, units in rounds.rounds.items()}
        return rounds

    def lock(self) -> AbstractContextManager[None]:
        """One run's folder is held here while local workers train its seeds; several jobs lock each their own."""
        return self.jobs[0].engine_run(self.recipe).lock() if self.is_one_run else nullcontext()


def run_work(work: Work, call: ApiCall, *, cell: str | None = None, worker: str | None = None,
             workers: int | None = None, after_each: Callable[[], None] | None = None
             ) -> list[tuple[Job, TicketInfo]] | None:
    """Run this machine's share of the work (or, in a local worker, its share of a round) and return each job of
    the share with its ticket.json; None in a local worker. `after_each` (a study's live report) after each job."""
    mine = share(work.jobs, cell)
    counted = count_fine_tunings(job.engine_run(work.recipe) for job in mine)
    bar = progress.watching(work.label, counted.total, counted.total - counted.pending, counted.recorded_seconds)
    with bar, work.lock():
        if run_share_or_start_workers(work.rounds(mine), call, worker, worker_count(workers), after_each):
            return None
        run_jobs(work.recipe, mine, work.label, after_each)  # in-process; after local workers, only what is left
    barrier()  # data parallel: what the main process wrote last (a ticket.json) is there for every rank to read
    return [(job, finished(work.recipe, job)) for job in mine]


def finished(recipe: Any, job: Job) -> TicketInfo:
    info = job.finished(recipe)
    if info is None:  # run_jobs ran it: its ticket.json is there unless the run folder was changed meanwhile
        raise UserError(f"{job}: its run finished without a ticket.json in {job.engine_run(recipe).ticket_dir()}")
    return info
