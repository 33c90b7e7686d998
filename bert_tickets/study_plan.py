"""A study: one declarative file (configs/studies/*.yaml) naming the model and recipe, the tasks, the baselines,
the sparsities, the seeds and a transfer matrix; every fine-tuning it implies is an engine run folder.

Nothing here trains by itself: `StudyPlan` lists the engine runs and `run_study` runs the missing ones, so a
killed study rerun computes only what is missing, and a study extended by a task or a sparsity only the new runs.
The report (`bert_tickets.report`) reads the same plan and never trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bert_tickets import paths
from bert_tickets.compare import DENSE, baseline_config, parse_baselines
from bert_tickets.config import Config, preset_names, read_yaml_text, task_config, yaml_mapping
from bert_tickets.errors import UserError
from bert_tickets.imp import ImpRun
from bert_tickets.methods import IMP, METHODS, get_method
from bert_tickets.methods import baselines as all_baselines
from bert_tickets.runs import log, read_json, write_text
from bert_tickets.tasks import get_task
from bert_tickets.transfer_matrix import MAGNITUDE, RANDOM, Cell, TransferMatrix, plan

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a folder name: never a path
SPEC_KEYS = {"name", "description", "config", "data_dir", "settings", "task_settings", "tasks", "sparsities",
             "baselines", "baseline_sparsities", "seeds", "searches", "transfer"}
TRANSFER_KEYS = {"sources", "targets", "sparsity", "seeds"}


@dataclass
class TransferSpec:
    sources: list[str]
    targets: list[str]
    sparsity: float
    seeds: int | None = None  # the cells' seeds (and a source-only task's ticket's); None: the study's


@dataclass
class StudySpec:
    name: str
    tasks: list[str]
    sparsities: list[float]
    seeds: int = 3
    searches: int = 1  # independent IMP mask searches per studied task (other level seeds), each evaluated alike
    baselines: list[str] = field(default_factory=all_baselines)
    baseline_sparsities: list[float] | None = None  # where the baselines run; None: every sparsity
    config: str | None = None  # a preset name or YAML file: the recipe of every run
    data_dir: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # `section.key` for every run
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task, over `settings`
    transfer: TransferSpec | None = None
    description: str = ""

    def config_for(self, task: str, output_dir: Path, **settings: Any) -> Config:
        """One run's config: preset, then the study's settings, the task's, and this run's own."""
        name = get_task(task).name
        layered = {"data.task": name, "pruning.seeds": self.seeds, "output_dir": str(output_dir)}
        if self.data_dir is not None:
            layered["data.data_dir"] = self.data_dir
        layered |= self.settings | self.task_settings.get(name, {}) | settings
        return task_config(name, self.config, layered).validate()

    @property
    def transfer_seeds(self) -> int:
        return self.transfer.seeds if self.transfer and self.transfer.seeds else self.seeds

    @property
    def ticket_sources(self) -> list[str]:
        """The transfer sources that are tasks (each brings its IMP ticket), not the magnitude mask."""
        return [s for s in self.transfer.sources if s != MAGNITUDE] if self.transfer else []

    def seeds_for(self, task: str) -> int:
        """A studied task's ticket runs the study's seeds; a task that is only a transfer source, the cells'."""
        return self.seeds if task in self.tasks else self.transfer_seeds


STUDIES = "bert_tickets.configs.studies"


def spec_names() -> list[str]:
    return preset_names(STUDIES)


def read_spec_text(source: str) -> str:
    return read_yaml_text(source, STUDIES, kind="study")


def parse_spec(text: str, where: str = "study") -> StudySpec:
    """A validated spec: every mistake is one clear UserError, before anything trains."""
    data = yaml_mapping(text, where)
    if unknown := sorted(set(data) - SPEC_KEYS):
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(SPEC_KEYS))})")
    for key in ("name", "tasks", "sparsities"):
        if not data.get(key):
            raise UserError(f"{where}: {key!r} is required")
    for key in ("name", "description", "config", "data_dir"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UserError(f"{where}: {key!r} must be text, got {type(data[key]).__name__}")
    if not STUDY_NAME.fullmatch(data["name"]) or ".." in data["name"]:
        raise UserError(f"{where}: name {data['name']!r} must be letters, digits, '.', '_' or '-' (it names the "
                        "study's folder, runs/studies/<name>)")
    tasks = [get_task(str(t)).name for t in _as_list(data["tasks"], "tasks", where)]
    sparsities = sorted(_sparsity(s, where) for s in _as_list(data["sparsities"], "sparsities", where))
    task_settings = {get_task(str(t)).name: _mapping(v, f"task_settings.{t}", where)
                     for t, v in _mapping(data.get("task_settings"), "task_settings", where).items()}
    spec = StudySpec(
        name=str(data["name"]), tasks=tasks, sparsities=sparsities, seeds=_seeds(data.get("seeds", 3), where),
        searches=_seeds(data.get("searches", 1), where, "searches"),
        baselines=parse_baselines(",".join(map(str, data.get("baselines", all_baselines()) or []))),
        config=data.get("config"), data_dir=data.get("data_dir"),
        settings=_mapping(data.get("settings"), "settings", where), task_settings=task_settings,
        transfer=_transfer(data.get("transfer"), where), description=str(data.get("description", "")))
    if data.get("baseline_sparsities") is not None:
        spec.baseline_sparsities = sorted(_sparsity(s, where) for s in _as_list(
            data["baseline_sparsities"], "baseline_sparsities", where))
        if extra := [s for s in spec.baseline_sparsities if s not in sparsities]:
            raise UserError(f"{where}: baseline sparsity {extra[0]} is not one of the sparsities {sparsities}")
    for key in ("pruning.method", "pruning.sparsity", "pruning.seeds", "data.task", "output_dir"):
        if key in spec.settings or any(key in s for s in spec.task_settings.values()):
            raise UserError(f"{where}: {key!r} is set by the study itself (tasks, sparsities, seeds, baselines)")
    for task in dict.fromkeys(tasks + (spec.transfer.targets if spec.transfer else [])):  # unknown keys, bad values
        spec.config_for(task, Path("runs"))
    return spec


def _as_list(value: Any, key: str, where: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UserError(f"{where}: {key!r} must not be empty")
    return items


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: {key!r} must be a mapping of section.key: value")
    return {str(k): v for k, v in value.items()}


def _sparsity(value: Any, where: str) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: sparsity {value!r} is not a number") from None
    if not 0.0 < s < 1.0:
        raise UserError(f"{where}: sparsity must be in (0, 1), got {value}")
    return s


def _seeds(value: Any, where: str, key: str = "seeds") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{where}: {key} must be a whole number of at least 1, got {value!r}")
    return value


def _transfer(value: Any, where: str) -> TransferSpec | None:
    if value is None:
        return None
    data = _mapping(value, "transfer", where)
    if unknown := sorted(set(data) - TRANSFER_KEYS):
        raise UserError(f"{where}: unknown key 'transfer.{unknown[0]}' (known: {', '.join(sorted(TRANSFER_KEYS))})")
    sources = [str(s) for s in _as_list(data.get("sources") or [], "transfer.sources", where)]
    for source in sources:
        if source in (*METHODS, DENSE) and source != MAGNITUDE:
            raise UserError(f"{where}: transfer source {source!r} has no ticket to transfer: name a task "
                            f"(its IMP ticket) or {MAGNITUDE!r}; the random and dense rows are always added")
    sources = [s if s == MAGNITUDE else get_task(s).name for s in sources]
    targets = [get_task(str(t)).name for t in _as_list(data.get("targets") or [], "transfer.targets", where)]
    seeds = _seeds(data["seeds"], where) if data.get("seeds") is not None else None
    return TransferSpec(sources, targets, _sparsity(data.get("sparsity"), where), seeds)


# --- the plan: every engine run the study implies ------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One engine run of the study: a task's ticket at a sparsity, a baseline beside it, or a transfer cell."""

    kind: str  # ticket | baseline | cell
    task: str
    sparsity: float
    method: str = IMP
    source: str = ""
    search: int = 0  # a ticket's mask search: 0 the study's own, k > 0 the k-th repeat (another level seed)

    def __str__(self) -> str:
        if self.kind == "cell":
            return f"transfer {self.source} -> {self.task} at {paths.sparsity_percent(self.sparsity)}%"
        repeat = f" (mask search {self.search + 1})" if self.search else ""
        return f"{self.task} {self.method} at {paths.sparsity_percent(self.sparsity)}%{repeat}"


class StudyPlan:
    def __init__(self, spec: StudySpec, folder: Path):
        self.spec, self.folder = spec, Path(folder)
        self.runs_dir = paths.study_runs(self.folder)

    def ticket_run(self, task: str, sparsity: float, search: int = 0) -> ImpRun:
        """A task's IMP ticket; `search` k > 0: the k-th repeated mask search, its levels seeded training.seed + k,
        evaluated over the same seeds (so searches pair seed by seed and share dense)."""
        settings = {"pruning.sparsity": sparsity, "pruning.seeds": self.spec.seeds_for(task)}
        config = self.spec.config_for(task, self.runs_dir, **settings)
        if search:
            config = self.spec.config_for(task, self.runs_dir, **settings,
                                          **{"pruning.search_seed": config.training.seed + search})
        return ImpRun(config)

    def baseline_run(self, task: str, sparsity: float, method: str) -> ImpRun:
        """The baseline beside the IMP ticket: same recipe and seeds; reinit/shuffle take the ticket's mask."""
        imp = self.ticket_run(task, sparsity)
        info = paths.ticket_info(imp.ticket_dir())
        ticket_sparsity = read_json(info)["sparsity"] if info.exists() else sparsity
        return ImpRun(baseline_config(imp.config, method, imp.ticket_dir(), ticket_sparsity))

    @cached_property
    def matrix(self) -> TransferMatrix | None:
        """The study's transfer matrix (built once: it resolves its configs), or None."""
        t = self.spec.transfer
        if t is None:
            return None
        return TransferMatrix(t.sources, t.targets, t.sparsity, self.spec.transfer_seeds, output_dir=str(self.runs_dir),
                              config_for=lambda s: self.spec.config_for(s["data.task"], self.runs_dir, **s))

    @property
    def baseline_sparsities(self) -> list[float]:
        return self.spec.baseline_sparsities or self.spec.sparsities

    def jobs(self) -> list[Job]:
        """Tickets first (baselines and cells reuse them), then baselines, then the transfer cells."""
        tickets = [Job("ticket", t, s, search=k) for t in self.spec.tasks for k in range(self.spec.searches)
                   for s in self.spec.sparsities]
        if (transfer := self.spec.transfer) is not None:  # each source's ticket: reused by its row of cells
            sources = [Job("ticket", s, transfer.sparsity) for s in self.spec.ticket_sources]
            tickets += [job for job in sources if job not in tickets]
        baselines = [Job("baseline", t, s, m) for t in self.spec.tasks for s in self.baseline_sparsities
                     for m in self.spec.baselines]
        cells = []
        if (matrix := self.matrix) is not None:
            order = sorted(plan(matrix.sources, matrix.targets), key=lambda c: c.source != c.target)
            cells = [job for c in order if (job := self.cell_job(c)) not in tickets]
        return tickets + baselines + cells

    def cell_job(self, cell: Cell) -> Job:
        """A transfer cell's job; a target's own ticket (fully fine-tuned) is that ticket's job: one run."""
        matrix = self.matrix
        assert matrix is not None
        if cell.source == cell.target and matrix.finetune == "full":
            return Job("ticket", cell.target, matrix.sparsity)
        return Job("cell", cell.target, matrix.sparsity, source=cell.source)

    def rounds(self) -> dict[str, list[list[Job]]]:
        """For local workers: the tickets first, one task's sparsities together (they share its IMP levels),
        then every other run; each inner list is one unit of work for one worker."""
        jobs = self.jobs()
        tickets = [j for j in jobs if j.kind == "ticket"]
        chains = dict.fromkeys((j.task, j.search) for j in tickets)  # a search's sparsities share its levels
        by_task = [[j for j in tickets if (j.task, j.search) == chain] for chain in chains]
        return {"tickets": by_task, "runs": [[j] for j in jobs if j.kind != "ticket"]}

    def engine_run(self, job: Job) -> ImpRun:
        if job.kind == "ticket":
            return self.ticket_run(job.task, job.sparsity, job.search)
        if job.kind == "baseline":
            return self.baseline_run(job.task, job.sparsity, job.method)
        matrix = self.matrix
        assert matrix is not None
        cell = Cell(job.source, job.task)
        source = None if job.source in (RANDOM, MAGNITUDE) else matrix.source_run(job.source).ticket_dir()
        return matrix.cell_run(cell, source)

    def fine_tunings(self, jobs: list[Job] | None = None) -> tuple[int, int]:
        """(fine-tunings the jobs imply, those still to train); shared runs counted once. Never trains."""
        implied: dict[Path, int] = {}
        for job in self.jobs() if jobs is None else jobs:
            for path, count in self.engine_run(job).fine_tunings().items():
                implied[path] = min(count, implied.get(path, count))  # 0 where a run gets it as a by-product
        return sum(implied.values()), sum(n for path, n in implied.items() if not path.exists())

    def finished(self, job: Job) -> dict[str, Any] | None:
        """The job's ticket.json if its run is done over its seeds; None otherwise. Never trains."""
        return self.engine_run(job).finished_ticket()

    def run_job(self, job: Job) -> None:
        if job.kind == "cell":
            matrix = self.matrix
            assert matrix is not None
            matrix.run_cell(Cell(job.source, job.task))
            return
        if job.kind == "baseline" and get_method(job.method).needs_ticket:  # the ticket's mask: find it first
            ticket = self.ticket_run(job.task, job.sparsity)
            if ticket.finished_ticket() is None:
                ticket.run()
        self.engine_run(job).run()


def save_spec(folder: Path, text: str, spec: StudySpec) -> None:
    """The spec as it runs, in its folder; a folder holding another study (another name) is refused: one study per
    folder, whose spec and report would otherwise be replaced. The same study, extended, reruns there."""
    path = folder / paths.STUDY_SPEC
    if path.is_file():
        try:
            name = yaml_mapping(path.read_text(errors="replace"), str(path)).get("name")
        except UserError:
            name = None
        if name != spec.name:
            raise UserError(f"{folder} holds another study ({name!r}, not {spec.name!r}): choose another --output-dir")
    write_text(path, text)


def load_plan(folder: str | Path) -> StudyPlan:
    folder = Path(folder)
    spec = folder / paths.STUDY_SPEC
    if not spec.is_file():
        raise UserError(f"{folder} is not a study folder (no {paths.STUDY_SPEC}); run `bert-tickets study SPEC` first")
    return StudyPlan(parse_spec(spec.read_text(), str(spec)), folder)


def run_study(plan: StudyPlan, jobs: list[Job]) -> None:
    """Run the jobs not finished yet, in order."""
    for i, job in enumerate(jobs, 1):
        if plan.finished(job) is None:
            log(f"study {plan.spec.name}: job {i}/{len(jobs)}: {job}")
            plan.run_job(job)


@dataclass
class StudyWork:
    """A study's runs for local workers: tickets first, a task's sparsities together (they share its levels)."""

    plan: StudyPlan
    jobs: list[Job]  # this machine's share (`--cell`), or all

    @property
    def workers_dir(self) -> Path:
        return paths.workers(self.plan.folder)

    def rounds(self) -> dict[str, list[list[Job]]]:
        return {phase: [unit for unit in units if any(job in self.jobs for job in unit)]
                for phase, units in self.plan.rounds().items()}

    def run_unit(self, unit: list[Job]) -> None:
        run_study(self.plan, [job for job in unit if job in self.jobs])

    def is_done(self, unit: list[Job]) -> bool:
        return all(self.plan.finished(job) is not None for job in unit if job in self.jobs)

    def before_workers(self) -> bool:
        return True
