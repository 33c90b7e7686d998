import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_tsv

from bert_tickets import Ticket, paths
from bert_tickets.cli import main


def tiny_args(model: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["find", "--task", "sst2", "--sparsity", "0.1", "--model", model, "--data-dir", str(data_dir),
            "--output-dir", str(out), "--max-steps", "3", "--batch-size", "8", "--max-length", "32", *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_find_prints_a_summary_and_the_ticket_path_last(tiny_bert, glue_dir, tmp_path, capsys):
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ticket = Path(lines[-1])
    assert (ticket / "mask.safetensors").is_file() and (ticket / "ticket.json").is_file()
    assert any(line.startswith("accuracy") for line in lines) and any("matching" in line for line in lines)


def _bad_runs(model: str, glue_dir: Path, out: Path) -> list[tuple[list[str], str]]:
    broken = glue_dir.parent / "broken"
    write_tsv(broken / "SST-2" / "train.tsv", ["sentence", "label"], [["fine", "2"]])
    write_tsv(broken / "SST-2" / "dev.tsv", ["sentence", "label"], [["fine", "1"]])
    return [
        (["find", "--task", "nope", "--sparsity", "0.5"], "unknown task 'nope'"),
        (tiny_args(model, glue_dir, out, "--sparsity", "1.2"), "sparsity must be in (0, 1)"),
        (tiny_args(model, glue_dir, out, "--sparsity", "half"), "invalid float value"),
        (tiny_args(model, glue_dir, out, "--set", "training.lr=1"), "unknown config key 'training.lr'"),
        (tiny_args(model, glue_dir, out, "--config", "nowhere.yaml"), "neither a file nor a preset"),
        (tiny_args("/no/such/model", glue_dir, out), "cannot load model '/no/such/model'"),
        (tiny_args("no-org/no-such-model", glue_dir, out), "pass a local copy with --model PATH"),
        (tiny_args(model, broken, out), "train.tsv:2: label '2' is not one of 0, 1"),
        (tiny_args(model, glue_dir / "missing", out), "missing data file"),
    ]


def test_bad_input_is_one_line_exit_2_and_leaves_results_alone(tiny_bert, glue_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(tiny_args(tiny_bert, glue_dir, out)) == 0
    before = snapshot(out)
    capsys.readouterr()
    for args, message in _bad_runs(tiny_bert, glue_dir, out):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, args
        assert len(err) == 1 and message in err[0], (args, err)
    assert snapshot(out) == before


def test_the_installed_command_exits_2_on_bad_input():
    proc = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "find", "--task", "nope", "--sparsity", "0.5"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    known = "cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, squad, mlm, custom"
    assert proc.stderr.strip() == f"bert-tickets: error: unknown task 'nope' (known: {known})"
    assert proc.stdout == ""


@pytest.mark.parametrize("argv", [["--help"], ["find", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "bert-tickets" in capsys.readouterr().out


def test_wandb_offline_logs_each_level_as_a_run_of_the_study(tiny_bert, glue_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--report-to", "wandb")) == 0  # levels 0 and 1
    ticket = Path(capsys.readouterr().out.strip().splitlines()[-1])
    runs = sorted((ticket.parents[1] / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2
    study = f"sst2/{ticket.parents[1].name}".encode()
    for level, run in enumerate(runs):  # the run records hold group, job type, name and config as plain strings
        record = run.read_bytes()
        assert study in record and b"level" in record and f"sst2-imp-level{level}".encode() in record
        assert b"run_hash" in record


def test_evaluate_fine_tunes_a_ticket_on_another_task(tiny_bert, glue_dir, tmp_path, capsys):
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--method", "magnitude", "--sparsity", "0.4")) == 0
    source = capsys.readouterr().out.strip().splitlines()[-1]
    args = ["evaluate", "--ticket", source, "--task", "rte", "--data-dir", str(glue_dir), "--output-dir",
            str(tmp_path), "--seeds", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = Ticket.load(out[-1])
    assert result.task == "rte" and result.info["method"] == "ticket" and result.info["source_ticket"] == source
    assert result.sparsity == pytest.approx(0.4, abs=1e-3) and result.info["model"] == tiny_bert
    assert all(torch.equal(result.mask[n], m) for n, m in Ticket.load(source).mask.items())
    assert result.info["config"]["training.max_steps"] == 3  # the source ticket's recipe is inherited
    assert len(result.info["metrics"]["dense"]["accuracy"]["values"]) == 2
    assert any(line.startswith("accuracy") for line in out)
    assert main(["evaluate", "--ticket", str(tmp_path / "nope"), "--task", "rte"]) == 2
    assert "is not a ticket folder" in capsys.readouterr().err


def test_evaluate_trains_a_changed_mask_anew_in_the_same_output_folder(tiny_bert, glue_dir, tmp_path, capsys):
    """Results are found by the mask's content, not by ticket.json: a copy whose mask was inverted is another run."""
    import shutil

    from bert_tickets.engine.masks import save_mask

    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--method", "magnitude", "--sparsity", "0.5")) == 0
    source = Path(capsys.readouterr().out.strip().splitlines()[-1])
    args = ["evaluate", "--task", "rte", "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "evals")]
    assert main([*args, "--ticket", str(source)]) == 0
    first = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    inverted = tmp_path / "inverted"
    shutil.copytree(source, inverted)  # the same ticket.json
    save_mask(paths.mask(inverted), {n: ~m for n, m in Ticket.load(source).mask.items()})
    assert main([*args, "--ticket", str(inverted)]) == 0
    second = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert second.path != first.path
    assert all(torch.equal(second.mask[n], ~m) for n, m in first.mask.items())  # trained on the inverted mask
    assert main([*args, "--ticket", str(source)]) == 0  # the original again: its results, found by its mask
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == first.path


def test_reinit_applies_a_ticket_to_random_weights(tiny_bert, glue_dir, tmp_path, capsys):
    from bert_tickets.config import load_config
    from bert_tickets.engine.run import ImpRun

    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--method", "magnitude", "--sparsity", "0.4")) == 0
    source = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--method", "reinit", "--ticket", source,
                          "--sparsity", "0.4")) == 0
    result = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert result.info["method"] == "reinit" and result.info["source_ticket"] == source
    assert main(["evaluate", "--ticket", str(result.path), "--task", "rte", "--data-dir", str(glue_dir),
                 "--output-dir", str(tmp_path)]) == 0  # a reinit ticket goes through evaluate like any other
    assert Ticket.load(capsys.readouterr().out.strip().splitlines()[-1]).task == "rte"
    run = ImpRun(load_config(None, {"model.name": tiny_bert, "data.task": "sst2", "pruning.method": "reinit",
                                    "pruning.ticket": source, "pruning.sparsity": 0.4}))
    query = "encoder.layer.0.attention.self.query.weight"
    # (the tiny checkpoint is itself a seed-0 random init, so look at another seed)
    random_weights = run.build_model(5, rewound=True).base_model.state_dict()[query]
    assert not torch.equal(random_weights, run.resources.pretrained.theta0[query])
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--method", "reinit", "--ticket", source,
                          "--sparsity", "0.5")) == 2
    assert "the ticket's sparsity is 0.4000, not 0.5" in capsys.readouterr().err


def test_find_packs_evaluation_seeds_into_local_workers(tiny_bert, glue_dir, tmp_path, capsys):
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path / "w", "--seeds", "3", "--workers", "2")) == 0
    ticket = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    logs = {p.name: p.read_text() for p in (ticket.path.parents[1] / "workers").glob("*.log")}
    # seed 0 is the levels' own; seeds 1 and 2 of the ticket and of dense: one fine-tuning each, split in two
    assert sorted(re.findall(r"(ticket|dense): seed (\d)", logs["seeds_0.log"] + logs["seeds_1.log"])) == [
        ("dense", "1"), ("dense", "2"), ("ticket", "1"), ("ticket", "2")]
    assert ticket.info["seeds"] == [0, 1, 2]
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path / "one", "--seeds", "3")) == 0
    alone = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    for kind in ("ticket", "dense"):  # the same fine-tunings, one process or two
        assert ticket.info["metrics"][kind]["accuracy"]["values"] == alone.info["metrics"][kind]["accuracy"]["values"]


def test_task_scoped_settings_apply_to_that_task_only(capsys):
    from bert_tickets.cli import build_parser, find_overrides

    args = build_parser().parse_args(["transfer", "--sources", "sst2,mlm", "--targets", "sst2", "--sparsity", "0.5",
                                      "--max-steps", "10", "--set", "mlm:data.train_file=wiki.txt",
                                      "--set", "training.seed=3", "--set", "MLM:training.max_steps=20"])
    # a task's own setting beats the flag for everyone
    assert find_overrides(args, "mlm") == {"data.train_file": "wiki.txt", "training.seed": "3",
                                           "training.max_steps": "20", "pruning.sparsity": 0.5}
    assert find_overrides(args, "sst2") == {"training.seed": "3", "training.max_steps": "10", "pruning.sparsity": 0.5}
    assert main(["transfer", "--sources", "sst2", "--targets", "sst2", "--sparsity", "0.5", "--set",
                 "qqq:training.seed=1"]) == 2
    assert capsys.readouterr().err.strip() == ("bert-tickets: error: unknown task 'qqq' (known: cola, sst2, mrpc, "
                                               "stsb, qqp, mnli, qnli, rte, wnli, squad, mlm, custom)")


def test_baselines_run_beside_the_ticket_with_its_recipe_and_seeds(tiny_bert, glue_dir, tmp_path, capsys):
    from bert_tickets.files import read_json

    args = tiny_args(tiny_bert, glue_dir, tmp_path, "--seeds", "2", "--baselines", "random,shuffle,reinit")
    assert main(args) == 0
    out = capsys.readouterr().out
    ticket = Ticket.load(out.strip().splitlines()[-1])
    comparison = read_json(paths.comparison(ticket.path))
    assert [r["method"] for r in comparison["rows"]] == ["dense", "imp", "random", "shuffle", "reinit"]
    for row in comparison["rows"]:
        assert len(row["metrics"]["accuracy"]["values"]) == 2  # every arm over the same two seeds
    runs = {p.name.split("_")[0] for p in ticket.path.parents[2].iterdir()}
    assert {"imp", "random", "shuffle", "reinit", "dense"} <= runs
    reinit = next(p for p in ticket.path.parents[2].iterdir() if p.name.startswith("reinit_"))
    reinit_info = read_json(next(reinit.glob("tickets/*/ticket.json")))
    assert reinit_info["source_ticket"] == str(ticket.path.resolve())
    assert reinit_info["config"]["training.max_steps"] == 3  # the ticket's recipe
    assert "random pruning (θ0)" in out and "IMP mask, shuffled θ0" in out
    random = comparison["rows"][2]["metrics"]["accuracy"]  # each arm's failures beside its score (3 steps: all)
    assert re.search(rf"random pruning \(θ0\) +[\d. ±%]+ +{random['failed']} of 2", out)
    assert f"verdict: {comparison['verdict']}" in out and "at 10% sparsity the IMP ticket" in out
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--baselines", "random,lottery")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown baseline 'lottery'" in err[0]


def test_every_flag_takes_the_underscore_spelling(tmp_path, capsys):
    from bert_tickets.cli import dashed

    assert dashed(["push", "--repo_id", "a/b_c", "--dry_run=out_dir", "--set", "training.max_steps=3"]) == [
        "push", "--repo-id", "a/b_c", "--dry-run=out_dir", "--set", "training.max_steps=3"]
    assert main(["push", "--ticket", str(tmp_path), "--repo_id", "a/x--y", "--dry_run", str(tmp_path / "o")]) == 2
    assert "'a/x--y' is not a valid Hub repository id" in capsys.readouterr().err  # parsed, then refused


def test_hugging_face_habits_are_understood_or_refused_with_a_hint(tmp_path, monkeypatch, capsys):
    import inspect

    import bert_tickets as bt
    from bert_tickets.cli import build_parser, dashed, find_overrides
    from bert_tickets.config import load_config
    from bert_tickets.engine.resources import RunResources
    from bert_tickets.errors import UserError
    from bert_tickets.tasks import get_task

    argv = ["find", "--task_name", "sst2", "--sparsity", "0.5", "--model_name_or_path", "some/model",
            "--max_seq_length", "64", "--num_train_epochs", "2"]
    args = build_parser().parse_args(dashed(argv))
    args.argv = argv
    assert args.task == "sst2"
    assert find_overrides(args) == {"model.name": "some/model", "data.max_length": "64", "training.epochs": "2",
                                    "data.task": "sst2", "pruning.sparsity": 0.5}
    with pytest.raises(SystemExit):
        build_parser().parse_args(dashed([*argv, "--per_device_train_batch_size", "16"]))
    assert "--batch-size here is the global batch" in capsys.readouterr().err
    text = build_parser()._subparsers._group_actions[0].choices["find"].format_help()
    assert "--no-group-by-length" in text and "--no-group_by_length" not in text and "--learning_rate" not in text
    assert issubclass(UserError, ValueError)  # what Python code catches for bad arguments
    assert {"learning_rate", "max_steps", "seeds"} <= set(inspect.signature(bt.find_ticket).parameters)
    assert "learning_rate: peak learning rate of AdamW" in bt.find_ticket.__doc__
    monkeypatch.setenv("WANDB_PROJECT", "from-my-env")  # what Trainer users set
    config = load_config(None, {"data.task": "sst2"})
    assert RunResources(config, get_task("sst2"), tmp_path).tracker.project == "from-my-env"
    config.training.wandb_project = "given"
    assert RunResources(config, get_task("sst2"), tmp_path).tracker.project == "given"
