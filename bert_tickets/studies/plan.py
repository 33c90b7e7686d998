"""A study's plan: every engine run its spec implies, as typed jobs (`bert_tickets.studies.jobs`), and what is
done. Nothing here trains by itself: a killed study rerun computes only what is missing, and a study extended by a
task or a sparsity only the new runs. The report (`bert_tickets.studies.report`) reads the same plan.
"""

from __future__ import annotations

from pathlib import Path

from bert_tickets import paths
from bert_tickets.config import CHOICES
from bert_tickets.engine.precision import resolved_precision
from bert_tickets.engine.run import ImpRun
from bert_tickets.engine.run_folder import FineTunings, count_fine_tunings
from bert_tickets.errors import UserError
from bert_tickets.files import read_json, write_json
from bert_tickets.results import TicketInfo
from bert_tickets.studies.jobs import JOB_KINDS, Job, Recipe
from bert_tickets.studies.spec import StudySpec, parse_spec


class StudyPlan(Recipe):
    """A study in its folder: its recipe (how its runs are configured, what jobs build theirs from) and every job
    its spec implies."""

    def __init__(self, spec: StudySpec, folder: Path):
        self.folder = Path(folder)
        super().__init__(spec, paths.study_runs(self.folder))

    def jobs(self) -> list[Job]:
        """Every kind's jobs, in the registry's order (tickets first: baselines and cells reuse them)."""
        jobs: list[Job] = []
        for kind in JOB_KINDS:
            jobs += [job for job in kind.plan(self) if job not in jobs]
        return jobs

    def engine_run(self, job: Job) -> ImpRun:
        return job.engine_run(self)

    def fine_tunings(self, jobs: list[Job] | None = None) -> FineTunings:
        """The fine-tunings the jobs imply (shared runs counted once), those still to train, the recorded
        durations. Never trains."""
        return count_fine_tunings(self.engine_run(job) for job in (self.jobs() if jobs is None else jobs))

    def finished(self, job: Job) -> TicketInfo | None:
        """The job's ticket.json if its run is done over its seeds; None otherwise. Never trains."""
        return job.finished(self)

    def run_job(self, job: Job) -> None:
        job.run(self)


def load_plan(folder: str | Path) -> StudyPlan:
    folder = Path(folder)
    spec = folder / paths.STUDY_SPEC
    if not spec.is_file():
        raise UserError(f"{folder} is not a study folder (no {paths.STUDY_SPEC}); run `bert-tickets study SPEC` first")
    parsed = parse_spec(spec.read_text(), str(spec))
    pin_precision(parsed, folder)
    return StudyPlan(parsed, folder)


def pin_precision(spec: StudySpec, folder: Path, write: bool = False) -> None:
    """A study whose precision is "auto" keeps what it resolved to where it first ran (`precision.json`), and every
    later reader of the folder (a rerun, a worker, the report, a release on another machine) takes that one: the run
    hash holds the resolved precision, and an fp32 laptop must find the bf16 runs a GPU made. `write`: pin it now,
    if it is not yet (the study command, once the folder is its own)."""
    path = folder / paths.STUDY_PRECISION
    training = spec.config_for(spec.tasks[0], paths.study_runs(folder)).training
    if training.mixed_precision != "auto":
        return  # the spec names its precision: nothing to pin
    if path.is_file():
        pinned = read_json(path).get("training.mixed_precision")
        if pinned not in CHOICES["training.mixed_precision"]:
            raise UserError(f"{path}: training.mixed_precision must be one of "
                            f"{', '.join(CHOICES['training.mixed_precision'])}, got {pinned!r}")
    elif write:
        pinned = resolved_precision(training)
        write_json(path, {"training.mixed_precision": pinned})
    else:
        return
    spec.settings = spec.settings | {"training.mixed_precision": pinned}
