"""A study's jobs, as types: each knows its label, builds its engine run from the recipe it is handed, runs, and
says whether it is finished (never training to say so).

A kind of job is one `Job` subclass with `plan(recipe)` (its jobs, from the study's spec) and one line in
`JOB_KINDS`; the plan lists every kind's jobs in the registry's order (tickets first: the others reuse them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bert_tickets import paths
from bert_tickets.config import Config
from bert_tickets.engine.run import ImpRun, pack_across_runs
from bert_tickets.methods import IMP, get_method
from bert_tickets.ranks import log
from bert_tickets.results import TicketInfo
from bert_tickets.studies.baselines import baseline_run
from bert_tickets.studies.sources import Source
from bert_tickets.studies.spec import StudySpec
from bert_tickets.studies.transfer import Cell, TransferMatrix, plan

if TYPE_CHECKING:
    from bert_tickets.studies.sections import Section


class Recipe:
    """How the study's runs are configured: the spec's preset and settings, its seeds, its runs folder. Jobs
    build their engine runs from it."""

    def __init__(self, spec: StudySpec, runs_dir: Path):
        self.spec, self.runs_dir = spec, runs_dir

    def config(self, task: str, **settings: Any) -> Config:
        return self.spec.config_for(task, self.runs_dir, **settings)

    def ticket_run(self, task: str, sparsity: float, search: int = 0) -> ImpRun:
        """A task's IMP ticket; `search` k > 0: the k-th repeated mask search, its levels seeded training.seed + k,
        evaluated over the same seeds (so searches pair seed by seed and share dense)."""
        settings = {"pruning.sparsity": sparsity, "pruning.seeds": self.spec.seeds_for(task)}
        config = self.config(task, **settings)
        if search:
            config = self.config(task, **settings, **{"pruning.search_seed": config.training.seed + search})
        return ImpRun(config)

    @cached_property
    def matrix(self) -> TransferMatrix | None:
        """The study's transfer matrix (built once: it resolves its configs), or None."""
        t = self.spec.transfer
        if t is None:
            return None
        return TransferMatrix(t.sources, t.targets, t.sparsity, self.spec.transfer_seeds, output_dir=str(self.runs_dir),
                              config_for=lambda s: self.config(s["data.task"], **s))

    @property
    def baseline_sparsities(self) -> list[float]:
        return self.spec.baseline_sparsities or self.spec.sparsities


class MatrixRecipe:
    """The recipe of a transfer matrix on its own (`bert-tickets transfer`): sources' tickets and cells are the
    matrix's runs."""

    def __init__(self, matrix: TransferMatrix):
        self.matrix = matrix

    def ticket_run(self, task: str, sparsity: float, search: int = 0) -> ImpRun:
        assert sparsity == self.matrix.sparsity and not search, "a matrix's tickets are its sources' at its sparsity"
        return self.matrix.source_run(task)


class RunRecipe:
    """The recipe of one command's run (`find`, `evaluate`): it is the ticket its baselines stand beside."""

    def __init__(self, run: ImpRun):
        self.run = run

    def ticket_run(self, task: str, sparsity: float, search: int = 0) -> ImpRun:
        assert task == self.run.task.name and not search, "a command's baselines stand beside its own run"
        return self.run


class Job:
    """One engine run of a study. Subclasses are frozen dataclasses: equal jobs are the same run."""

    # the report's section for this kind's results (`sections.Section`), shown after the built-in ones; None: the
    # built-in sections cover it
    report_section: ClassVar[type[Section] | None] = None

    @property
    def phase(self) -> str:
        """Local workers run the "tickets" round first (the tickets, and what needs none), then "runs" (what reuses
        a ticket)."""
        return "runs"

    @classmethod
    def plan(cls, recipe: Recipe) -> list[Job]:
        """This kind's jobs in the study, in the order they should run."""
        raise NotImplementedError

    def engine_run(self, recipe: Recipe) -> ImpRun:
        raise NotImplementedError

    def run(self, recipe: Recipe) -> None:
        self.engine_run(recipe).run()

    def finished(self, recipe: Recipe) -> TicketInfo | None:
        """The job's ticket.json if its run is done over its seeds; None otherwise. Never trains."""
        return self.engine_run(recipe).finished_ticket()

    def is_done(self, recipe: Recipe) -> bool:
        return self.finished(recipe) is not None

    def is_ready(self, recipe: Recipe) -> bool:
        """Whether what its run starts from is there (a ticket whose mask it reuses), so that its levels and
        evaluation can be made now; never trains to say so."""
        return True

    @property
    def chain(self) -> Any:
        """Jobs of one chain go to one local worker together (they share levels); by default each its own."""
        return self


@dataclass(frozen=True)
class TicketJob(Job):
    """A task's IMP ticket at a sparsity; `search` k > 0: the k-th repeated mask search (another level seed)."""

    task: str
    sparsity: float
    search: int = 0

    @property
    def phase(self) -> str:
        return "tickets"

    @classmethod
    def plan(cls, recipe: Recipe) -> list[Job]:
        spec = recipe.spec
        jobs: list[Job] = [cls(t, s, k) for t in spec.tasks for k in range(spec.searches) for s in spec.sparsities]
        if spec.transfer is not None:  # each source's ticket: reused by its row of cells
            jobs += [job for t in spec.ticket_sources if (job := cls(t, spec.transfer.sparsity)) not in jobs]
        return jobs

    def engine_run(self, recipe: Recipe) -> ImpRun:
        return recipe.ticket_run(self.task, self.sparsity, self.search)

    @property
    def method(self) -> str:
        return IMP

    @property
    def chain(self) -> Any:
        return self.task, self.search  # a search's sparsities share its levels

    def __str__(self) -> str:
        repeat = f" (mask search {self.search + 1})" if self.search else ""
        return f"{self.task} {IMP} at {paths.sparsity_percent(self.sparsity)}%{repeat}"


@dataclass(frozen=True)
class RunJob(Job):
    """The run a command asked for (`find`, `evaluate`: any method), built by its `RunRecipe`."""

    task: str
    sparsity: float
    method: str

    @property
    def phase(self) -> str:
        return "tickets"

    def engine_run(self, recipe: RunRecipe) -> ImpRun:  # type: ignore[override]
        return recipe.run

    def __str__(self) -> str:
        return f"{self.task} {self.method} at {paths.sparsity_percent(self.sparsity)}%"


@dataclass(frozen=True)
class BaselineJob(Job):
    """A baseline beside the IMP ticket: the same recipe and seeds; reinit and shuffle take the ticket's mask."""

    task: str
    sparsity: float
    method: str

    @property
    def phase(self) -> str:
        """A mask made from θ0 alone (magnitude, Wanda, SparseGPT, random) needs no ticket: it trains in the first
        round beside the tickets, on the workers their chains of levels leave idle."""
        return "runs" if get_method(self.method).needs_ticket else "tickets"

    @classmethod
    def plan(cls, recipe: Recipe) -> list[Job]:
        spec = recipe.spec
        return [cls(t, s, m) for t in spec.tasks for s in recipe.baseline_sparsities for m in spec.baselines]

    def engine_run(self, recipe: Recipe) -> ImpRun:
        return baseline_run(recipe.ticket_run(self.task, self.sparsity), self.method)

    def is_ready(self, recipe: Recipe) -> bool:
        return not get_method(self.method).needs_ticket or \
            recipe.ticket_run(self.task, self.sparsity).finished_ticket() is not None

    def run(self, recipe: Recipe) -> None:
        if get_method(self.method).needs_ticket:  # the ticket's mask: find it first
            ticket = recipe.ticket_run(self.task, self.sparsity)
            if ticket.finished_ticket() is None:
                ticket.run()
        super().run(recipe)

    def __str__(self) -> str:
        return f"{self.task} {self.method} at {paths.sparsity_percent(self.sparsity)}%"


@dataclass(frozen=True)
class CellJob(Job):
    """A transfer cell: a row's mask (a task's ticket, or one made from θ0 alone) fine-tuned on a target."""

    source: Source
    target: str
    sparsity: float

    @classmethod
    def plan(cls, recipe: Recipe | MatrixRecipe) -> list[Job]:
        if (matrix := recipe.matrix) is None:
            return []
        order = sorted(plan(matrix.sources, matrix.targets), key=lambda c: c.source.ticket_task != c.target)
        return [cls.of(c, recipe) for c in order if not matrix.is_own_ticket(c)]

    @classmethod
    def of(cls, cell: Cell, recipe: Recipe | MatrixRecipe) -> Job:
        """A cell's job; a target's own ticket (fully fine-tuned) is that ticket's job: one run."""
        matrix = recipe.matrix
        assert matrix is not None
        if matrix.is_own_ticket(cell):
            return TicketJob(cell.target, matrix.sparsity)
        return cls(cell.source, cell.target, matrix.sparsity)

    @property
    def task(self) -> str:
        """The task the cell's run fine-tunes on."""
        return self.target

    @property
    def cell(self) -> Cell:
        return Cell(self.source, self.target)

    def engine_run(self, recipe: Recipe) -> ImpRun:
        matrix = recipe.matrix
        assert matrix is not None
        return matrix.cell_run(self.cell, matrix.source_ticket_dir(self.source))

    def is_ready(self, recipe: Recipe) -> bool:
        matrix = recipe.matrix
        assert matrix is not None
        task = self.source.ticket_task
        return task is None or matrix.source_run(task).finished_ticket() is not None

    def run(self, recipe: Recipe) -> None:
        matrix = recipe.matrix
        assert matrix is not None
        matrix.run_cell(self.cell)

    def __str__(self) -> str:
        return f"transfer {self.source} -> {self.target} at {paths.sparsity_percent(self.sparsity)}%"


# every kind of job a study has, in the order they run: one line per kind
JOB_KINDS: list[type[Job]] = [TicketJob, BaselineJob, CellJob]


def matrix_jobs(recipe: MatrixRecipe) -> list[Job]:
    """A transfer matrix's jobs (`bert-tickets transfer`): its sources' tickets (each target's own cell among
    them), then every other cell in the order a study runs them (`CellJob.plan`)."""
    matrix = recipe.matrix
    tickets: list[Job] = [TicketJob(task, matrix.sparsity) for source in matrix.sources
                          if (task := source.ticket_task) is not None]
    return list(dict.fromkeys([*tickets, *CellJob.plan(recipe)]))


def run_jobs(recipe: Any, jobs: list[Job], label: str, after_each: Callable[[], None] | None = None) -> None:
    """Run the jobs not finished yet, in order; `after_each` (the live report) after each one that ran. With
    `training.pack` > 1, phase by phase (tickets and what needs none, then what reuses a ticket), each phase's
    evaluation fine-tunings first packed across its runs (`engine.run.pack_across_runs`)."""
    done_before = 0
    for phase in _phases(recipe, jobs):
        if len(phase) > 1 and _packs(recipe, phase):
            pending = [job for job in phase if job.finished(recipe) is None and job.is_ready(recipe)]
            if len(pending) > 1:
                log(f"{label}: packing the evaluations of {len(pending)} runs ({phase[0].phase} phase)")
                pack_across_runs([job.engine_run(recipe) for job in pending])
        for i, job in enumerate(phase, done_before + 1):
            if job.finished(recipe) is None:
                if len(jobs) > 1:
                    log(f"{label}: job {i}/{len(jobs)}: {job}")
                job.run(recipe)
                if after_each is not None:
                    after_each()
        done_before += len(phase)


def _packs(recipe: Any, jobs: list[Job]) -> bool:
    return jobs[0].engine_run(recipe).config.training.pack > 1


def _phases(recipe: Any, jobs: list[Job]) -> list[list[Job]]:
    """The jobs as they run: in one list, in order, unless they are packed across runs; then the "tickets" phase's
    (tickets, and what needs none) before the others' (what reuses a ticket), each in order."""
    if len(jobs) < 2 or not _packs(recipe, jobs):
        return [jobs]
    phases: dict[str, list[Job]] = {}
    for job in jobs:
        phases.setdefault(job.phase, []).append(job)
    return [phases[name] for name in sorted(phases, key=lambda name: name != "tickets")]
