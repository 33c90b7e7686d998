"""Studies: a tiny spec end to end (every report file), resumption, extension, partial reports, bad specs."""

import csv
import re
from pathlib import Path

import pytest

import bert_tickets.engine.run as imp
import bert_tickets.studies.report as report_module
from bert_tickets import progress, workers
from bert_tickets.cli import main
from bert_tickets.files import read_json, sha256
from bert_tickets.studies.plan import load_plan
from bert_tickets.studies.report import REPORT_MANIFEST
from bert_tickets.studies.spec import spec_names

REPORT_FILES = {"README.md", "table2.csv", "seeds.csv", "paired.csv", "curves.csv", "curves.png", "cost.csv",
                "cost.png", "transfer.csv", "transfer.png", "transfer_paired.csv", "mask_overlap.csv",
                "mask_overlap.png", "mask_overlap_floor.csv", "mask_layers.csv", "mask_layers.png", "drift.csv"}


def tiny_spec(model: str, glue_dir: Path, sparsities: str = "[0.1, 0.2]") -> str:
    return f"""
name: tiny
description: A tiny study for the tests.
data_dir: {glue_dir}
settings:
  model.name: {model}
  training.max_steps: 2
  training.batch_size: 8
  data.max_length: 32
  pruning.rate: 0.1
task_settings:
  rte: {{training.learning_rate: 1.0e-4}}
tasks: [sst2, rte]
sparsities: {sparsities}
baselines: [random, shuffle]
seeds: 2
transfer: {{sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2}}
"""


@pytest.fixture()
def count_fine_tunings(monkeypatch):
    calls = []
    original = imp.fine_tune

    def counted(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        return original(*args, **kwargs)

    monkeypatch.setattr(imp, "fine_tune", counted)
    return calls


@pytest.fixture()
def closed_bars(monkeypatch):
    """(label, total, done) of every outer progress bar when it closes."""
    bars = []
    original = progress.Progress.close

    def close(self, failed=False):
        bars.append((self.label, self.total, self.done))
        original(self, failed)

    monkeypatch.setattr(progress.Progress, "close", close)
    return bars


@pytest.fixture()
def live_reports(monkeypatch):
    """The report's README.md each time the study rewrote it while running."""
    snapshots = []
    original = report_module.write_report

    def write(plan, finished=None, running=False):
        out = original(plan, finished, running)
        if running:
            snapshots.append((out / "README.md").read_text())
        return out

    monkeypatch.setattr(report_module, "write_report", write)
    return snapshots


def test_a_tiny_study_writes_every_report_file_and_resumes(tiny_bert, glue_dir, tmp_path, capsys,
                                                           count_fine_tunings, closed_bars, live_reports):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec(tiny_bert, glue_dir))
    folder = tmp_path / "study"
    # a first worker's share, as if the study had been killed part way
    assert main(["study", str(spec), "--output-dir", str(folder), "--cell", "0/3"]) == 0
    partial = len(count_fine_tunings)
    assert partial > 0 and "runs done" in capsys.readouterr().out
    assert main(["study", str(spec), "--output-dir", str(folder), "--plan"]) == 0
    total, pending = map(int, re.findall(r"(\d+) fine-tunings in all, (\d+) still", capsys.readouterr().out)[0])
    assert total - pending == partial and pending > 0
    assert main(["report", str(folder)]) == 0
    captured = capsys.readouterr()
    report = (folder / "report" / "README.md").read_text()
    assert "runs missing" in captured.err and "runs are missing" in report
    assert "- rte shuffle at 20%" in report or "- transfer" in report
    # the rest: nothing done already is trained again
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == folder / "report" / "README.md"
    # the outer bar counted the plan's fine-tunings, each once; the report was a live page meanwhile
    assert closed_bars[-1] == ("study tiny", total, total) and len(count_fine_tunings) == total
    running = [int(n) for text in live_reports for n in re.findall(r"The study is running: (\d+) of 17 runs", text)]
    assert running and 0 < min(running) < 17 and running == sorted(running)
    assert {p.name for p in (folder / "report").iterdir()} == REPORT_FILES | {REPORT_MANIFEST}
    written = read_json(folder / "report" / REPORT_MANIFEST)["files"]  # what a release of the report carries
    assert set(written) == REPORT_FILES and all(sha256(folder / "report" / n) == d for n, d in written.items())
    assert read_json(folder / "precision.json") == {"training.mixed_precision": "no"}  # pinned where it ran
    report = (folder / "report" / "README.md").read_text()
    assert "All 17 runs of the study are finished." in report  # 2x2 tickets, 2x2x2 baselines, 3x2 cells - 1
    for heading in ("Table 2", "Every sparsity, paired by seed", "Score against sparsity", "Transfer between tasks",
                    "What the masks look like"):
        assert heading in report
    seeds = list(csv.DictReader((folder / "report" / "seeds.csv").open()))  # the data behind the failure counts
    assert {r["arm"] for r in seeds} == {"ticket", "dense"} and all(r["final_train_loss"] for r in seeds)
    every = list(csv.DictReader((folder / "report" / "paired.csv").open()))
    assert {(r["sparsity"], r["method"]) for r in every} == {(s, m) for s in ("0.1", "0.2")
                                                             for m in ("imp", "random", "shuffle")}
    assert all(float(r["minus_dense_ci_low"]) <= float(r["minus_dense"]) <= float(r["minus_dense_ci_high"])
               for r in every)
    assert "IMP mask, shuffled θ0" in report and "random pruning (θ0)" in report
    table2 = (folder / "report" / "table2.csv").read_text().splitlines()
    assert table2[0].startswith("task,metric,sparsity,highest_matching,highest_matching_sparsity,method,mean,std")
    assert {line.split(",")[5] for line in table2[1:]} == {"dense", "imp", "random", "shuffle"}
    first_run = len(count_fine_tunings)
    assert main(["study", str(spec), "--output-dir", str(folder), "--plan"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"17 of 17 runs done; {first_run} fine-tunings in all, 0 still to train"
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0  # a rerun of a finished study
    assert len(count_fine_tunings) == first_run
    # extended by a sparsity: only the new runs train (the IMP levels up to 20% are reused)
    spec.write_text(tiny_spec(tiny_bert, glue_dir, "[0.1, 0.2, 0.3]"))
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    new = count_fine_tunings[first_run:]
    assert "level 1 (10%)" not in new and "level 2 (20%)" not in new and new.count("level 3 (30%)") == 2
    overlap = (folder / "report" / "mask_overlap.csv").read_text().splitlines()
    assert overlap[0] == "a,b,jaccard" and any(line.startswith("sst2,sst2,1.0") for line in overlap)
    assert len(load_plan(folder).jobs()) == 17 + 2 + 4


BAD_SPECS = [
    ("tasks: [sst2, lottery]", "unknown task 'lottery'"),
    ("baselines: [random, nope]", "unknown baseline 'nope'"),
    ("sparsities: [0.5, 1.2]", "sparsity must be in (0, 1), got 1.2"),
    ("settings: {training.lr: 1}", "unknown config key 'training.lr'"),
    ("colour: blue", "unknown key 'colour'"),
    ("transfer: {sources: [random], targets: [sst2], sparsity: 0.5}", "transfer source 'random' has no ticket"),
    ("seeds: 0", "seeds must be a whole number of at least 1"),
    ("baseline_sparsities: [0.3]", "baseline sparsity 0.3 is not one of the sparsities [0.5]"),
    ("transfer: {sources: [sst2], targets: [sst2], sparsity: 0.5, seeds: 0}", "seeds must be a whole number"),
]


@pytest.mark.parametrize(("line", "message"), BAD_SPECS)
def test_a_bad_spec_is_one_line_and_exit_2_before_any_training(line, message, tmp_path, capsys,
                                                                count_fine_tunings):
    base = {"name": "bad", "tasks": "[sst2]", "sparsities": "[0.5]"}
    key = line.split(":")[0]
    text = "\n".join(f"{k}: {v}" for k, v in base.items() if k != key) + f"\n{line}\n"
    (tmp_path / "bad.yaml").write_text(text)
    assert main(["study", str(tmp_path / "bad.yaml"), "--output-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert count_fine_tunings == [] and not (tmp_path / "s").exists()


def test_baselines_at_chosen_sparsities_and_fewer_transfer_seeds_shrink_the_plan(tiny_bert, glue_dir, tmp_path):
    from bert_tickets.studies.jobs import BaselineJob, CellJob, TicketJob
    from bert_tickets.studies.plan import StudyPlan
    from bert_tickets.studies.sources import parse_source
    from bert_tickets.studies.spec import parse_spec

    text = tiny_spec(tiny_bert, glue_dir).replace(
        "transfer: {sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2}",
        "baseline_sparsities: [0.2]\ntransfer: {sources: [sst2, mnli], targets: [sst2], sparsity: 0.2, seeds: 1}")
    plan = StudyPlan(parse_spec(text), tmp_path / "study")
    jobs = plan.jobs()
    assert {(j.task, j.sparsity) for j in jobs if isinstance(j, BaselineJob)} == {("sst2", 0.2), ("rte", 0.2)}
    # a studied task's ticket keeps the study's seeds; a source-only task's ticket and the cells take the cells'
    assert plan.engine_run(TicketJob("sst2", 0.2)).config.pruning.seeds == 2
    assert plan.engine_run(TicketJob("mnli", 0.2)).config.pruning.seeds == 1
    assert plan.engine_run(CellJob(parse_source("mnli"), "sst2", 0.2)).config.pruning.seeds == 1
    # the random control cell is the random baseline's run: trained once, with the most seeds asked for
    assert plan.engine_run(CellJob(parse_source("random"), "sst2", 0.2)).root == \
        plan.engine_run(BaselineJob("sst2", 0.2, "random")).root


def test_fewer_transfer_seeds_never_shrink_a_studied_ticket(tiny_bert, glue_dir, tmp_path, count_fine_tunings):
    text = tiny_spec(tiny_bert, glue_dir, "[0.2]").replace("tasks: [sst2, rte]", "tasks: [sst2]").replace(
        "transfer: {sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2}",
        "transfer: {sources: [sst2, rte], targets: [sst2, rte], sparsity: 0.2, seeds: 1}")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(text)
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    plan = load_plan(folder)
    from bert_tickets.studies.jobs import TicketJob

    # sst2 is studied (two seeds) and a transfer source whose cells have one: its ticket keeps both seeds
    assert plan.finished(TicketJob("sst2", 0.2))["seeds"] == [0, 1]
    assert plan.finished(TicketJob("rte", 0.2))["seeds"] == [0]  # only a source: the cells' seeds
    with (folder / "report" / "table2.csv").open() as table2:
        assert all(row["seeds"] == "2" for row in csv.DictReader(table2))  # every arm over both seeds
    trained = len(count_fine_tunings)
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    assert len(count_fine_tunings) == trained


def test_table2_says_where_the_ticket_matches_when_the_baselines_ran_elsewhere():
    from bert_tickets.studies.report import _shown_note

    row = {"highest_matching": False, "highest_matching_sparsity": 0.25}
    assert _shown_note(row) == " (highest matching: 25%, without baselines)"
    assert _shown_note(row | {"highest_matching_sparsity": None}) == " (none matching)"
    assert _shown_note(row | {"highest_matching": True}) == ""


def test_report_needs_a_study_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a study folder" in capsys.readouterr().err


def test_the_shipped_studies_parse(capsys):
    from bert_tickets.studies.spec import parse_spec, read_spec_text

    assert {"paper", "minilm", "minilm-cpu", "oneshot-vs-imp"} <= set(spec_names())
    for name in spec_names():
        spec = parse_spec(read_spec_text(name), name)
        assert spec.seeds >= 3 and "magnitude" in spec.baselines  # the one-shot θ0 control
        if name.startswith("oneshot-vs-imp"):  # one-shot masks against IMP (whole or one task): no transfer
            assert {"wanda", "sparsegpt_mask", "sparsegpt", "random"} <= set(spec.baselines)
            assert len(spec.sparsities) >= 2 or name.endswith(("-50", "-70"))  # the whole, or a quarter
            continue
        assert spec.transfer is not None and "magnitude" in spec.transfer.sources
        if name != "minilm-cpu":  # the CPU study holds the controls at 50% only
            assert len(spec.sparsities) >= 2 and "mlm" in spec.transfer.sources


def test_local_workers_run_the_tickets_first_and_train_each_run_once(tiny_bert, glue_dir, tmp_path, capsys,
                                                                     count_fine_tunings, closed_bars, monkeypatch):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec(tiny_bert, glue_dir))
    assert main(["study", str(spec), "--output-dir", str(tmp_path / "workers"), "--plan"]) == 0
    alone = int(re.findall(r"(\d+) fine-tunings in all", capsys.readouterr().out)[0])  # as one process trains it
    monkeypatch.setattr(workers, "REPORT_EVERY", 0.5)
    assert main(["study", str(spec), "--output-dir", str(tmp_path / "workers"), "--workers", "2"]) == 0
    assert count_fine_tunings == []  # the main process found everything done by its workers
    # the workers' progress reached the parent: done/total from their status files, and what each one does
    assert closed_bars[-1] == ("study tiny", alone, alone)
    err = capsys.readouterr().err
    assert re.search(rf"study tiny: \d+/{alone} fine-tunings done", err)
    assert re.search(r"worker [01]: (sst2|rte) \w+ .*step \d+/2 \(\d+ done\)", err)
    logs = {p.name: p.read_text() for p in (tmp_path / "workers" / "workers").glob("*.log")}
    assert set(logs) == {"tickets_0.log", "tickets_1.log", "runs_0.log", "runs_1.log"}
    trained = {name: len(re.findall(r"level \d+ done:|\] (ticket|dense): seed", text)) for name, text in logs.items()}
    assert sum(trained.values()) == alone and all(trained.values())
    assert {p.name for p in (tmp_path / "workers" / "report").iterdir()} == REPORT_FILES | {REPORT_MANIFEST}


def test_masks_made_from_theta0_train_in_the_first_round_beside_the_tickets(tiny_bert, glue_dir, tmp_path):
    """The first round of local workers holds every job that needs no ticket, so a task's chain of IMP levels does
    not leave the other workers idle; what takes a ticket's mask (shuffle, transfer cells) waits for the second."""
    from bert_tickets.studies.jobs import BaselineJob, CellJob, TicketJob
    from bert_tickets.studies.plan import StudyPlan
    from bert_tickets.studies.shares import study_rounds
    from bert_tickets.studies.spec import parse_spec

    plan = StudyPlan(parse_spec(tiny_spec(tiny_bert, glue_dir), "tiny.yaml"), tmp_path / "s")
    jobs = plan.jobs()
    rounds = study_rounds(plan, jobs, jobs, plan.folder).rounds
    first = {job for unit in rounds["tickets"] for job in unit}
    second = {job for unit in rounds["runs"] for job in unit}
    assert BaselineJob("sst2", 0.2, "random") in first and BaselineJob("sst2", 0.2, "shuffle") in second
    assert all(isinstance(job, TicketJob | BaselineJob) for job in first)
    assert any(isinstance(job, CellJob) for job in second) and first.isdisjoint(second)
    assert first | second == set(jobs)
