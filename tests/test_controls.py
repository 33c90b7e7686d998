"""The controls that can prove a study's claims wrong: failed runs, paired differences, one matching rule, repeated
mask searches and their noise floor, the one-shot θ0 row, weight drift, the authors' recipe, complete specs."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from safetensors.torch import load_file

from bert_tickets import paths
from bert_tickets.cli import main
from bert_tickets.engine.masks import jaccard, load_mask, relative_drift
from bert_tickets.engine.run import ImpRun
from bert_tickets.engine.training import chance_loss, failed_to_learn
from bert_tickets.files import read_json
from bert_tickets.metrics import format_mean_std
from bert_tickets.stats import (
    is_matching,
    matching_over,
    paired,
    robust_matching,
    shared_seed_matching,
    summary_text,
)
from bert_tickets.studies.baselines import DENSE, Row, verdict
from bert_tickets.studies.jobs import BaselineJob, CellJob, TicketJob
from bert_tickets.studies.plan import StudyPlan, load_plan
from bert_tickets.studies.report import Finished, table2_rows
from bert_tickets.studies.sources import parse_source
from bert_tickets.studies.spec import parse_spec, read_spec_text
from tests.test_imp import tiny_config
from tests.test_study import tiny_spec

# --- the statistics -------------------------------------------------------------------------------------


def test_paired_differences_use_the_seeds_both_arms_ran():
    a, b = {0: 0.80, 1: 0.70, 2: 0.90}, {0: 0.75, 1: 0.72, 3: 0.10}
    diff = paired(a, b)
    assert diff.seeds == (0, 1) and diff.n == 2
    assert diff.mean == pytest.approx(((0.80 - 0.75) + (0.70 - 0.72)) / 2)
    assert diff.std == pytest.approx(np.std([0.05, -0.02], ddof=1))
    assert paired(a, {5: 1.0}).n == 0 and paired(a, {5: 1.0}).text() == "–"
    assert paired({0: 0.8}, {0: 0.7}).text() == "+10.0 (n = 1)"  # one seed: no spread shown


def test_paired_intervals_and_tests_equal_scipys():
    from scipy.stats import binomtest, ttest_rel

    a = {0: 0.812, 1: 0.804, 2: 0.821, 3: 0.799, 4: 0.815}
    b = {0: 0.790, 1: 0.801, 2: 0.805, 3: 0.802, 4: 0.796, 9: 0.5}  # seed 9 has no pair: left out
    diff = paired(a, b)
    reference = ttest_rel([a[s] for s in range(5)], [b[s] for s in range(5)])
    low, high = reference.confidence_interval(0.95)
    assert diff.n == 5 and diff.interval == pytest.approx((low, high))
    assert diff.t == pytest.approx(reference.statistic) and diff.p == pytest.approx(reference.pvalue)
    assert diff.sign_p == pytest.approx(binomtest(4, 5).pvalue)  # four of five differences positive
    assert diff.text() == f"+{100 * diff.mean:.1f} [{100 * low:+.1f}, {100 * high:+.1f}] (n = 5, p = {diff.p:.2g})"
    assert paired({0: 0.8}, {0: 0.7}).interval is None and paired({0: 0.8}, {0: 0.7}).within(0.01) is None


def test_equivalence_needs_the_whole_interval_inside_the_margin():
    narrow = paired({s: 0.800 + 0.001 * s for s in range(5)}, {s: 0.800 for s in range(5)})
    assert narrow.within(0.01) is True  # [−0.0, +0.4] points inside ±1 point
    wide = paired({0: 0.80, 1: 0.83, 2: 0.78}, {0: 0.80, 1: 0.80, 2: 0.80})
    assert wide.within(0.01) is None  # crosses the margin: neither equivalent nor shown to differ
    apart = paired({s: 0.85 + 0.001 * s for s in range(5)}, {s: 0.80 for s in range(5)})
    assert apart.within(0.01) is False


def test_a_verdict_that_one_seed_decides_is_marked_fragile():
    dense = {0: 0.829, 1: 0.788, 2: 0.804}  # the minilm-cpu study's STS-B dense seeds
    one_shot = {0: 0.792, 1: 0.770, 2: 0.784}
    assert matching_over(one_shot, dense, [0, 1, 2]) is False
    assert matching_over(one_shot, dense, [0, 1]) is True  # without seed 2 it matches
    assert robust_matching(one_shot, dense) is False
    assert robust_matching({0: 0.811, 1: 0.806, 2: 0.804}, dense) is True  # the IMP ticket: matching however cut
    assert robust_matching({0: 0.8, 1: 0.8}, {0: 0.8, 1: 0.8}) is None  # two seeds: one left out leaves no verdict
    assert matching_over(one_shot, dense, [0, 1, 2], failed={0, 1, 2}, dense_failed=set()) is False


def test_a_verdict_compares_the_seeds_both_arms_ran():
    ticket = {0: 0.790, 1: 0.788, 2: 0.792}
    dense = {0: 0.800, 1: 0.790, 2: 0.790, 3: 0.805, 4: 0.806}  # two dense seeds the ticket never ran
    every = {"mean": float(np.mean(list(dense.values()))), "std": float(np.std(list(dense.values()), ddof=1)),
             "values": list(dense.values())}
    assert is_matching({"mean": 0.790, "values": list(ticket.values())}, every) is False  # lifted by seeds 3, 4
    assert shared_seed_matching(ticket, dense) is True  # over seeds 0-2, the ones both arms ran
    assert shared_seed_matching(ticket, dense) == matching_over(ticket, dense, [0, 1, 2])
    assert shared_seed_matching({0: 0.8}, dense) is None  # one shared seed: no verdict
    assert shared_seed_matching(ticket, dense, failed={0, 1, 2}, dense_failed=set()) is False


def test_one_seed_is_never_shown_with_a_spread_of_zero():
    assert summary_text([0.804]) == "80.4 (n = 1)"
    assert summary_text([0.80, 0.82]) == "81.0 ± 1.4 (n = 2)"
    assert format_mean_std("accuracy", {"mean": 0.8, "std": 0.0, "values": [0.8]}) == "80.00 % (n = 1)"
    assert format_mean_std("pearson", {"mean": 0.8, "std": 0.0, "values": [0.8]}) == "80.00 (n = 1)"


def test_one_matching_rule_with_no_verdict_on_one_seed():
    dense = {"mean": 0.80, "std": 0.02, "values": [0.78, 0.82]}
    assert is_matching({"mean": 0.79, "values": [0.78, 0.80]}, dense) is True
    assert is_matching({"mean": 0.77, "values": [0.76, 0.78]}, dense) is False
    one = {"mean": 0.80, "std": 0.0, "values": [0.80]}
    assert is_matching({"mean": 0.80, "values": [0.8, 0.8]}, one) is None  # std 0 of one seed: no spread
    assert is_matching({"mean": 0.80, "values": [0.80]}, dense) is None  # one ticket seed against two
    line = verdict([Row(DENSE, {"accuracy": one}), Row("imp", {"accuracy": {"mean": 0.79, "std": 0.0,
                                                                            "values": [0.79]}})], "accuracy", 0.5)
    assert "n/a (one seed)" in line


# --- failed fine-tunings ----------------------------------------------------------------------------------


def test_chance_loss_is_the_best_constant_prediction():
    assert chance_loss(Dataset.from_dict({"labels": [0, 0, 1, 1]})) == pytest.approx(math.log(2))
    assert chance_loss(Dataset.from_dict({"labels": [0, 0, 0, 1]})) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert chance_loss(Dataset.from_dict({"labels": [1.0, 3.0]})) == pytest.approx(1.0)  # variance, for MSE
    assert chance_loss(Dataset.from_dict({"labels": [[1, -100], [2, 3]]})) is None  # a label per token
    assert chance_loss(Dataset.from_dict({"input_ids": [[1]]})) is None
    assert failed_to_learn(0.69, math.log(2)) is True and failed_to_learn(0.45, math.log(2)) is False
    assert failed_to_learn(0.69, None) is None
    # the dev score against the best constant prediction's: 10% of the way from it to a perfect score
    assert failed_to_learn(0.45, math.log(2), 0.625, 0.625) is True  # the majority class, however low the loss
    assert failed_to_learn(None, None, 0.65, 0.625) is True and failed_to_learn(None, None, 0.67, 0.625) is False
    # the issue's three STS-B random-pruning runs (8.6, 7.8 and 7.8 Pearson) are all on one side now
    assert all(failed_to_learn(None, None, r, 0.0) for r in (0.086, 0.078, 0.078))
    assert failed_to_learn(None, None, 0.11, 0.0) is False  # correlations: 0 is the constant's
    assert failed_to_learn(None, None, float("nan"), 0.0) is True  # a NaN score learned nothing either
    assert failed_to_learn(None, None, None, 0.5) is None


def test_the_constant_predictor_is_the_training_majority_class(glue_dir, minilm_path):
    from transformers import AutoTokenizer

    from bert_tickets.config import DataConfig
    from bert_tickets.tasks import get_task

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    for name, metric in (("mrpc", "f1"), ("cola", "matthews_correlation"), ("stsb", "pearson")):
        task = get_task(name)
        data = task.prepare(tokenizer, DataConfig(task=name, data_dir=str(glue_dir), max_length=32))
        scores = task.constant_scores(data)
        if task.is_regression:
            assert scores == {"pearson": 0.0, "spearman": 0.0}
            continue
        expected = task.score("validation", _constant_arrays(data), data)
        assert scores == pytest.approx(expected) and metric in scores
    assert get_task("mlm").constant_scores(None) is None


def _constant_arrays(data):
    labels = np.asarray(data.evals["validation"]["labels"])
    majority = int(np.bincount(np.asarray(data.train["labels"])).argmax())
    return {"logits": np.eye(2)[np.full(len(labels), majority)], "labels": labels}


def test_a_run_that_cannot_learn_is_marked_and_weights_do_not_drift(tiny_bert, glue_dir, tmp_path):
    frozen = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.sparsity": 0.1}))
    frozen.config.training.learning_rate = 0.0  # past validation (which wants > 0): the rate of no movement
    frozen.run()
    level0 = read_json(paths.metrics(frozen.level_dir(0)))
    assert level0["failed"] is True and level0["final_train_loss"] >= 0.9 * level0["chance_loss"]
    assert set(level0["drift"]) >= {"all", "query", "key", "value", "attn-output", "intermediate", "output"}
    assert all(v == 0.0 for v in level0["drift"].values())  # learning rate 0: nothing moved
    assert read_json(paths.metrics(frozen.level_dir(1)))["drift"]["all"] == 0.0  # pruning is not movement
    assert "validation" in level0["eval_loss"]
    info = read_json(paths.ticket_info(frozen.ticket_dir()))
    assert [(r["seed"], r["failed"]) for r in info["runs"]["ticket"]] == [(0, True)] and info["failed_rule"]
    moving = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path / "moving", **{"pruning.sparsity": 0.1}))
    moving.run()
    assert read_json(paths.metrics(moving.level_dir(0)))["drift"]["all"] > 0
    assert read_json(paths.metrics(moving.level_dir(1)))["jaccard_to_theta0_magnitude"] > 0.9


def test_relative_drift_per_matrix_type():
    import torch

    start = {"encoder.layer.0.attention.self.query.weight": torch.ones(2, 2),
             "encoder.layer.0.output.dense.weight": torch.ones(2, 2)}
    end = {"encoder.layer.0.attention.self.query.weight": torch.ones(2, 2) * 1.5,
           "encoder.layer.0.output.dense.weight": torch.ones(2, 2)}
    drift = relative_drift(start, end)
    assert drift["query"] == pytest.approx(0.5) and drift["output"] == 0.0
    assert drift["all"] == pytest.approx(math.sqrt(4 * 0.25 / 8))


def _info(seeds, ticket, dense, failed=()):
    def summary(values):
        mean = float(np.mean(values))
        return {"mean": mean, "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "values": list(values)}

    runs = {"ticket": [{"seed": s, "failed": s in failed} for s in seeds],
            "dense": [{"seed": s, "failed": False} for s in seeds]}
    return {"seeds": list(seeds), "primary_metric": "accuracy", "matching": is_matching(summary(ticket),
                                                                                         summary(dense)),
            "metrics": {"ticket": {"accuracy": summary(ticket)}, "dense": {"accuracy": summary(dense)}},
            "runs": runs}


def test_the_report_counts_failed_runs_and_pairs_every_arm_by_seed(tmp_path):
    spec = parse_spec("name: x\ntasks: [sst2]\nsparsities: [0.5]\nbaselines: [magnitude]\nseeds: 3\n")
    plan = StudyPlan(spec, tmp_path)
    ticket = _info([0, 1, 2], [0.80, 0.81, 0.79], [0.82, 0.80, 0.81])
    oneshot = _info([0, 1, 2], [0.78, 0.51, 0.77], [0.82, 0.80, 0.81], failed={1})
    finished = Finished({TicketJob("sst2", 0.5): ticket, BaselineJob("sst2", 0.5, "magnitude"): oneshot}, [])
    rows = {r["method"]: r for r in table2_rows(plan, finished)}
    assert rows["magnitude"]["failed"] == 1 and rows["imp"]["failed"] == 0
    assert "mean_without_failed" not in rows["magnitude"]  # a failed run is an outcome, never left out
    assert rows["magnitude"]["minus_imp"] == pytest.approx(np.mean([-0.02, -0.30, -0.02]))
    assert rows["imp"]["minus_dense"] == pytest.approx(np.mean([-0.02, 0.01, -0.02]))
    assert rows["imp"]["matching"] is True


def test_an_arm_that_fails_more_often_than_dense_is_never_matching():
    good, dense = {"values": [0.80, 0.81, 0.79], "mean": 0.80, "std": 0.01}, {"values": [0.79, 0.80, 0.81],
                                                                              "mean": 0.80, "std": 0.01}
    assert is_matching(good | {"failed": 0}, dense | {"failed": 0}) is True
    assert is_matching(good | {"failed": 1}, dense | {"failed": 0}) is False  # its mean would qualify
    assert is_matching(good | {"failed": 1}, dense | {"failed": 1}) is True  # as often as dense: the mean decides
    assert is_matching(good | {"failed": 3}, dense | {"failed": 3}) is False  # learned nothing: never matching
    assert is_matching(good, dense) is True  # older records without failures: the paper's rule alone
    assert is_matching({"values": [0.9], "mean": 0.9, "std": 0.0}, dense) is None  # one ticket seed: no verdict
    # the issue's case: 78, 78 and a failed 50 beside dense 79 ± 1.5
    issue = {"values": [0.78, 0.78, 0.50], "mean": 0.6867, "std": 0.16, "failed": 1}
    assert is_matching(issue, {"values": [0.775, 0.79, 0.805], "mean": 0.79, "std": 0.015, "failed": 0}) is False


# --- a study with the controls: repeated searches, the one-shot row, one-seed cells ------------------------


def test_a_study_repeats_the_mask_search_and_reports_its_noise_floor(tiny_bert, glue_dir, tmp_path, capsys):
    text = tiny_spec(tiny_bert, glue_dir, "[0.2]").replace("tasks: [sst2, rte]", "tasks: [sst2]").replace(
        "baselines: [random, shuffle]", "baselines: [magnitude]\nsearches: 2").replace(
        "transfer: {sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2}",
        "transfer: {sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2, seeds: 1}").replace(
        "training.max_steps: 2", "training.max_steps: 6\n  training.learning_rate: 1.0e-3")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(text)
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    plan = load_plan(folder)
    first, second = (plan.ticket_run("sst2", 0.2, k) for k in (0, 1))
    assert first.root != second.root and (first.seed, second.seed) == (0, 1)
    assert first.seeds == second.seeds == [0, 1]  # evaluated alike: paired by seed, dense shared
    assert first.dense_dir() == second.dense_dir()
    masks = [load_mask(paths.mask(run.ticket_dir())) for run in (first, second)]
    assert jaccard(*masks) < 1.0  # another search, another mask
    report = folder / "report"
    with (report / "mask_overlap_floor.csv").open() as f:
        floor = list(csv.DictReader(f))
    same = [r for r in floor if r["kind"] == "same task, another search"]
    assert same and same[0]["a"] == "sst2" and same[0]["b"] == "sst2 #2"
    assert float(same[0]["jaccard"]) == pytest.approx(jaccard(*masks))
    assert any(r["kind"] == "against one-shot θ0 magnitude" for r in floor)
    with (report / "searches.csv").open() as f:
        assert [r["search"] for r in csv.DictReader(f)] == ["1", "2"]
    with (report / "transfer_paired.csv").open() as f:
        cells = {(r["source"], r["target"]): r for r in csv.DictReader(f)}
    assert ("magnitude", "sst2") in cells  # the one-shot θ0 row of the transfer matrix
    text = (report / "README.md").read_text()
    assert "Repeated mask searches" in text and "one-shot θ0 magnitude mask" in text
    assert "± 0.0 (n = 1)" not in text
    # rte is a target only: its cells have one seed, so no matching verdict, in the report as on the command line
    rte_cell = plan.finished(CellJob(parse_source("sst2"), "rte", 0.2))
    assert rte_cell["matching"] is None
    assert "rte" not in {t for (_, t) in cells}  # no own ticket to pair against: left out, and said so
    assert "Targets left out until all their cells and their own ticket are done: rte" in text


def test_the_find_command_and_ticket_json_share_the_matching_rule(tiny_bert, glue_dir, tmp_path, capsys):
    args = ["find", "--task", "sst2", "--sparsity", "0.1", "--model", tiny_bert, "--data-dir", str(glue_dir),
            "--output-dir", str(tmp_path), "--set", "training.max_steps=2", "--set", "training.batch_size=8",
            "--set", "data.max_length=32"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "n/a (one seed)" in out
    info = read_json(Path(out.strip().splitlines()[-1]) / "ticket.json")
    assert info["matching"] is None


def test_a_find_of_three_steps_is_never_matching(tiny_bert, glue_dir, tmp_path, capsys):
    """Runs that learned nothing: the ticket and dense both sit at chance, and a ticket whose runs all failed is
    never called matching (the CLI's summary and ticket.json), however its mean compares."""
    args = ["find", "--task", "mrpc", "--sparsity", "0.1", "--seeds", "2", "--model", tiny_bert, "--data-dir",
            str(glue_dir), "--output-dir", str(tmp_path), "--max-steps", "3", "--batch-size", "8",
            "--max-length", "32"]
    assert main(args) == 0
    out = capsys.readouterr().out
    info = read_json(Path(out.strip().splitlines()[-1]) / "ticket.json")
    assert [r["failed"] for r in info["runs"]["ticket"]] == [True, True] and info["matching"] is False
    assert info["metrics"]["ticket"]["accuracy"]["failed"] == 2 and "chance_score" in info["runs"]["dense"][0]
    assert "failed to learn: ticket 2 of 2, dense 2 of 2" in out and "accuracy: not matching" in out


# --- the authors' recipe -----------------------------------------------------------------------------------


def test_the_authors_level_schedule_and_carried_head(tiny_bert, glue_dir, tmp_path):
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{
        "pruning.sparsity": 0.1, "pruning.level_lr_horizon": 10.0, "pruning.carry_head": True}))
    run.run()
    level0, level1 = (read_json(paths.metrics(run.level_dir(k))) for k in (0, 1))
    lr = run.config.training.learning_rate
    assert level0["final_learning_rate"] == pytest.approx(lr * (1 - 4 / 40))  # 4 steps of a 40-step schedule
    head = load_file(str(paths.trained_head(run.level_dir(0))))
    assert set(head) == {"classifier.weight", "classifier.bias"}
    # the levels train by another recipe than the evaluation: the ticket's seed is a fine-tuning of its own
    assert run.result_path("ticket", 0) == paths.ticket_seed(run.ticket_dir(), 0)
    seed0 = read_json(run.result_path("ticket", 0))
    assert seed0["final_learning_rate"] == 0.0 and level1["final_learning_rate"] > 0
    assert not paths.metrics(run.level_dir(0)).samefile(run.result_path("dense", 0))


def test_the_final_fine_tunings_take_their_own_steps_and_batch(tiny_bert, glue_dir, tmp_path):
    """The authors' masked-LM evaluation is not its level recipe (20,000 steps of batch 8 against 10,000 of 16):
    levels keep max_steps and batch_size, every evaluation seed (ticket and dense) takes the final ones."""
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{
        "pruning.sparsity": 0.1, "training.final_max_steps": 6, "training.final_batch_size": 4}))
    run.run()
    assert not run.levels_are_evaluations
    assert [read_json(paths.metrics(run.level_dir(k)))["steps"] for k in (0, 1)] == [4, 4]
    ticket, dense = read_json(run.result_path("ticket", 0)), read_json(run.result_path("dense", 0))
    assert ticket["steps"] == dense["steps"] == 6
    assert ticket["tokens"] < read_json(paths.metrics(run.level_dir(1)))["tokens"] * 6 / 4  # batch 4, not 8


def test_the_reported_score_is_final_or_the_best_during_training(tiny_bert, glue_dir, tmp_path, capsys):
    from bert_tickets.engine.training import reported_scores

    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{
        "pruning.sparsity": 0.1, "training.eval_every_steps": 2, "training.reported_score": "best"}))
    run.run()
    record = read_json(run.result_path("ticket", 0))
    assert [e["step"] for e in record["evaluations"]] == [2, 4] and record["reported"] == "best"
    best = max(e["metrics"]["accuracy"] for e in record["evaluations"])
    assert record["metrics"]["accuracy"] == best
    evaluations = [{"step": 2, "metrics": {"accuracy": 0.7}}, {"step": 4, "metrics": {"accuracy": 0.6}},
                   {"step": 6, "metrics": {"accuracy": float("nan")}}]
    assert reported_scores(evaluations, "accuracy", "best") == {"accuracy": 0.7}
    assert math.isnan(reported_scores(evaluations, "accuracy", "final")["accuracy"])
    args = ["find", "--task", "sst2", "--sparsity", "0.1", "--model", tiny_bert, "--data-dir", str(glue_dir),
            "--output-dir", str(tmp_path / "x"), "--set", "training.reported_score=best"]
    assert main(args) == 2
    assert "set training.eval_every_steps too" in capsys.readouterr().err


def test_carry_head_and_keep_head_exclude_each_other(tiny_bert, glue_dir, tmp_path, capsys):
    args = ["find", "--task", "sst2", "--sparsity", "0.1", "--model", tiny_bert, "--data-dir", str(glue_dir),
            "--output-dir", str(tmp_path), "--set", "pruning.carry_head=true", "--set", "pruning.keep_head=true"]
    assert main(args) == 2
    assert "set one" in capsys.readouterr().err


# --- complete study specs ----------------------------------------------------------------------------------


def test_the_paper_study_plans_table2s_eleven_columns_90_percent_and_the_one_shot_row(tmp_path):
    spec = parse_spec(read_spec_text("paper"), "paper")
    assert set(spec.tasks) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "squad", "mlm"}
    assert 0.9 in spec.sparsities and spec.seeds == 5 and spec.searches >= 2
    assert "magnitude" in spec.baselines and spec.transfer.sparsity == 0.7 and spec.transfer.seeds == 3
    jobs = StudyPlan(spec, tmp_path).jobs()
    assert {j.task for j in jobs if isinstance(j, TicketJob) and j.sparsity == 0.9} == set(spec.tasks)
    assert {j.task for j in jobs if isinstance(j, CellJob) and j.source.name == "magnitude"} == \
        set(spec.transfer.targets)
    config = StudyPlan(spec, tmp_path).ticket_run("mnli", 0.7).config
    assert config.training.mixed_precision == "no" and not config.training.group_by_length
    assert (config.training.seed, config.pruning.search_seed) == (5, 57)
    assert config.pruning.carry_head and config.pruning.level_lr_horizon == 10
    assert StudyPlan(spec, tmp_path).ticket_run("squad", 0.7).config.training.epochs == 4
    assert StudyPlan(spec, tmp_path).ticket_run("mlm", 0.7).config.pruning.level_lr_horizon == 9  # LT_pretrain.py
    assert {"shuffle", "shuffle_layers"} <= set(spec.baselines)  # ours and the authors' shuffle, side by side
