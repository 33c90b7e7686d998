"""A study's axes are registries: a kind of job, or a kind of transfer row, is one class and one registry line,
added here from outside the package as a user's own code would."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_study import count_fine_tunings, tiny_spec  # noqa: F401 (a fixture)

from bert_tickets.cli import main
from bert_tickets.engine.run import ImpRun
from bert_tickets.studies.jobs import JOB_KINDS, CellJob, Job, Recipe
from bert_tickets.studies.plan import load_plan
from bert_tickets.studies.report import REPORT_MANIFEST, SECTIONS
from bert_tickets.studies.sections import Section
from bert_tickets.studies.sources import SOURCES, Source


class ProbeSection(Section):
    """The probe's scores: one row per task and sparsity, from the finished probe jobs (typed pairs)."""

    def render(self, plan, finished, out):
        rows = [f"| {job.task} | {job.sparsity:.0%} | {100 * info['metrics']['ticket']['accuracy']['mean']:.1f} |"
                for job, info in finished.of(ProbeJob)]
        if not rows:
            return ""
        self.file(out / "probe.csv").write_text("task,sparsity\n" + "".join(
            f"{job.task},{job.sparsity}\n" for job, _ in finished.of(ProbeJob)))
        return "## Probe on RTE\n\n| ticket of | sparsity | RTE accuracy |\n|---|---|---|\n" + "\n".join(rows)


class SeedCount(Section):
    """A section of the user's own over every run: how many finished."""

    def render(self, plan, finished, out):
        return f"## Finished runs\n\n{len(finished.results)} runs finished."


@dataclass(frozen=True)
class ProbeJob(Job):
    """Each studied task's ticket, fine-tuned on one fixed probe task (RTE): a one-column transfer of every
    sparsity, a kind of run the package does not have."""

    task: str
    sparsity: float
    report_section = ProbeSection  # its results' section in the report

    @classmethod
    def plan(cls, recipe: Recipe) -> list[Job]:
        return [cls(t, s) for t in recipe.spec.tasks for s in recipe.spec.sparsities]

    def engine_run(self, recipe: Recipe) -> ImpRun:
        ticket = recipe.ticket_run(self.task, self.sparsity).ticket_dir()
        return ImpRun(recipe.config("rte", **{"pruning.method": "ticket", "pruning.ticket": str(ticket.resolve()),
                                              "pruning.sparsity": self.sparsity}))

    def run(self, recipe: Recipe) -> None:
        recipe.ticket_run(self.task, self.sparsity).run()  # the ticket first (a no-op once found)
        super().run(recipe)

    def __str__(self) -> str:
        return f"probe: {self.task}'s ticket at {self.sparsity:.0%} on rte"


@dataclass(frozen=True)
class LayerwiseMagnitude(Source):
    """θ0 pruned by magnitude one matrix at a time (a threshold per matrix), without training."""

    @property
    def name(self) -> str:
        return "layerwise_magnitude"

    @property
    def label(self) -> str:
        return "θ0 magnitude, matrix by matrix"

    def settings(self, ticket: Path | None) -> dict[str, Any]:
        return {"pruning.method": "magnitude", "pruning.scope": "layerwise"}


@pytest.fixture()
def probe_kind():
    JOB_KINDS.append(ProbeJob)  # the registry line
    yield ProbeJob
    JOB_KINDS.remove(ProbeJob)


def small_spec(tiny_bert: str, glue_dir: Path, sources: str) -> str:
    return tiny_spec(tiny_bert, glue_dir, "[0.2]").replace("tasks: [sst2, rte]", "tasks: [sst2]").replace(
        "seeds: 2", "seeds: 1").replace("baselines: [random, shuffle]", "baselines: [random]").replace(
        "sources: [sst2, magnitude]", f"sources: {sources}")


def test_a_job_kind_added_from_outside_is_planned_run_and_resumed(tiny_bert, glue_dir, tmp_path, capsys,
                                                                  probe_kind, count_fine_tunings):  # noqa: F811
    spec = tmp_path / "probe.yaml"
    spec.write_text(small_spec(tiny_bert, glue_dir, "[sst2]"))
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder), "--plan"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-2] == "missing  probe: sst2's ticket at 20% on rte"  # after every built-in kind
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    plan = load_plan(folder)
    info = plan.finished(ProbeJob("sst2", 0.2))
    assert info is not None and info["task"] == "rte" and info["method"] == "ticket"
    assert info["source_ticket"] == str(plan.ticket_run("sst2", 0.2).ticket_dir().resolve())
    trained = len(count_fine_tunings)
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0  # finished: nothing trains again
    assert len(count_fine_tunings) == trained
    report = (folder / "report" / "README.md").read_text()
    score = 100 * info["metrics"]["ticket"]["accuracy"]["mean"]
    assert "## Probe on RTE" in report and f"| sst2 | 20% | {score:.1f} |" in report  # after every built-in one
    assert report.index("## Probe on RTE") > report.index("## Tickets against the baselines")
    assert (folder / "report" / "probe.csv").is_file()
    assert "probe.csv" in json.loads((folder / "report" / REPORT_MANIFEST).read_text())["files"]  # released with it


def test_a_report_section_added_from_outside_is_written(tiny_bert, glue_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("bert_tickets.studies.report.SECTIONS", [*SECTIONS, SeedCount])  # the registry line
    spec = tmp_path / "plain.yaml"
    spec.write_text(small_spec(tiny_bert, glue_dir, "[sst2]"))
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    finished = len(load_plan(folder).jobs())
    assert f"## Finished runs\n\n{finished} runs finished." in (folder / "report" / "README.md").read_text()


def test_a_transfer_row_added_from_outside_gets_its_cells_and_its_row(tiny_bert, glue_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(SOURCES, "layerwise_magnitude", LayerwiseMagnitude())  # the registry line
    spec = tmp_path / "rows.yaml"
    spec.write_text(small_spec(tiny_bert, glue_dir, "[sst2, layerwise_magnitude]"))
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    plan = load_plan(folder)
    info = plan.finished(CellJob(LayerwiseMagnitude(), "rte", 0.2))
    assert info is not None and info["method"] == "magnitude" and info["scope"] == "layerwise"
    rows = (folder / "report" / "transfer.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in rows[1:]} == {"sst2", "layerwise_magnitude", "random", "dense"}
    assert "| θ0 magnitude, matrix by matrix |" in (folder / "report" / "README.md").read_text()


def test_local_workers_repeat_the_api_call_that_started_them(monkeypatch, tmp_path, capsys):
    import json

    from bert_tickets import workers
    from bert_tickets.worker_main import main as worker_main

    started = []

    class Started:
        def __init__(self, command: list[str], **kwargs: Any):
            started.append(command)

        def wait(self) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(workers.subprocess, "Popen", Started)
    call = {"function": "study", "kwargs": {"spec": "tiny.yaml", "output_dir": "runs/studies/tiny", "cell": None}}
    workers.run_local_workers(call, 2, tmp_path, {"tickets": 3, "runs": 0})
    assert [command[1:3] for command in started] == [["-m", "bert_tickets.worker_main"]] * 2  # not the CLI's argv
    assert [json.loads(command[3]) for command in started] == [call, call]
    assert [command[4] for command in started] == ["tickets:0/2", "tickets:1/2"]
    capsys.readouterr()
    assert worker_main([json.dumps({"function": "push", "kwargs": {}}), "tickets:0/1"]) == 2
    assert capsys.readouterr().err.strip() == \
        "bert-tickets: error: 'push' is not an API call that local workers repeat"
