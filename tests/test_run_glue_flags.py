"""The flags run_glue users type, the trackers they report to, and evaluate's refusal of mask-finding flags."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import tiny_args

from bert_tickets.cli import build_parser, dashed, find_overrides, main
from bert_tickets.config import TrainingConfig
from bert_tickets.engine.training import linear_schedule


def overrides(*argv: str) -> dict:
    args = build_parser().parse_args(dashed(["find", "--task", "rte", "--sparsity", "0.5", *argv]))
    return find_overrides(args, args.task)


@pytest.mark.parametrize("flag, precision", [("--bf16", "bf16"), ("--fp16", "fp16")])
def test_bf16_and_fp16_are_the_mixed_precision_setting(flag, precision):
    assert overrides(flag)["training.mixed_precision"] == precision


@pytest.mark.parametrize("argv", [["--bf16", "--fp16"], ["--bf16", "--mixed_precision", "no"],
                                  ["--mixed-precision", "bf16", "--fp16"]])
def test_two_precisions_are_refused_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        overrides(*argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "two spellings of one setting" in err[0]


def test_warmup_steps_replace_the_ratio_as_in_training_arguments():
    assert overrides("--warmup_steps", "5")["training.warmup_steps"] == "5"
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = linear_schedule(optimizer, TrainingConfig(warmup_steps=4, warmup_ratio=0.5), 20)
    rates = []
    for _ in range(8):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]  # 4 steps up, not the ratio's 10
    assert rates[5] == pytest.approx(15 / 16)


@pytest.mark.parametrize("batch, ours", [("train", "--batch-size"), ("eval", "--eval-batch-size")])
def test_per_device_batches_say_what_to_give_instead(batch, ours, capsys):
    with pytest.raises(SystemExit) as exc:
        overrides(f"--per_device_{batch}_batch_size", "16")
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and f"give {ours} 16 × the number of processes" in err and "\n" not in err


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"bert-tickets {version('bert-tickets')}"


@pytest.mark.parametrize("extra", [["--rate", "0.2"], ["--keep-head"], ["--level_lr_horizon", "10"],
                                   ["--set", "pruning.rate=0.2"]])
def test_evaluate_refuses_how_a_mask_is_found_in_one_line(extra, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "evaluate", "--ticket", str(tmp_path),
                           "--task", "rte", *extra], capture_output=True, text=True, check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "evaluate applies the ticket's mask: drop it" in err[0], err


def test_tensorboard_gets_each_fine_tuning_as_event_files_it_reads(tiny_bert, glue_dir, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--report_to", "tensorboard")) == 0
    ticket = Path(capsys.readouterr().out.strip().splitlines()[-1])
    boards = sorted(p for p in (ticket.parents[1] / "tensorboard").iterdir())
    assert [p.name for p in boards][:2] == ["sst2-imp-level0", "sst2-imp-level1"]
    events = EventAccumulator(str(boards[0])).Reload()
    assert {"train_loss", "eval/accuracy"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("eval/accuracy")] == [3]  # after the level's 3 steps


def test_wandb_dir_is_honoured(tiny_bert, glue_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path / "out", "--report-to", "wandb")) == 0
    ticket = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(list((tmp_path / "elsewhere" / "wandb").glob("offline-run-*/run-*.wandb"))) == 2
    assert not (ticket.parents[1] / "wandb").exists()
