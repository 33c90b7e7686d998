"""Pruning methods as registered strategies: what each declares, and a new method added as one class plus one
registry line running through the engine, the config, the command line and the exporter."""

from pathlib import Path

import pytest

from bert_tickets import Ticket, paths
from bert_tickets.cli import main
from bert_tickets.errors import UserError
from bert_tickets.methods import METHODS, baselines, get_method
from bert_tickets.methods.base import PrunedAfterTraining

# What the engine knew about each method before the registry, as string lists in imp.py, config.py and hub.py.
DECLARED = {  # name: trains a dense level, iterative, rewinds, needs a ticket, exportable, LoRA allowed
    "imp": (True, True, True, False, True, False),
    "oneshot": (True, False, True, False, True, False),
    "standard": (True, True, False, False, False, False),
    "magnitude": (False, False, True, False, True, True),
    "random": (False, False, True, False, True, True),
    "ticket": (False, False, True, True, True, True),
    "reinit": (False, False, True, True, False, True),
    "shuffle": (False, False, True, True, False, True),
    "shuffle_layers": (False, False, True, True, False, True),
    "wanda": (False, False, True, False, True, True),
    "sparsegpt_mask": (False, False, True, False, True, True),
    "sparsegpt": (False, False, True, False, False, True),  # its weights are its reconstruction, not θ0
}


def test_every_method_declares_what_the_engine_used_to_hard_code():
    assert set(METHODS) == set(DECLARED)
    for name, flags in DECLARED.items():
        m = get_method(name)
        assert (m.trains_dense_level, m.iterative, m.rewinds, m.needs_ticket, m.exportable, m.allows_lora) == flags
        assert m.name == name and m.label and m.help and m.weights
    assert baselines() == ["random", "reinit", "shuffle", "magnitude", "oneshot", "standard", "shuffle_layers",
                           "wanda", "sparsegpt_mask", "sparsegpt"]
    with pytest.raises(UserError, match="unknown method 'nope'"):
        get_method("nope")


class PruneAndFineTune(PrunedAfterTraining):
    """Defined here as a user would in a file of its own: one dense fine-tuning, pruned to the target by
    magnitude, then fine-tuned on from the trained weights (no rewinding)."""

    name = "prune-finetune"
    label = "pruned, then fine-tuned (no rewind)"
    help = "one dense fine-tuning, pruned at once, trained on without rewinding"
    weights = "the dense fine-tuned weights, pruned (no rewinding)"
    rewinds = False
    exportable = False


def test_a_new_method_is_one_class_and_one_registry_line(tiny_bert, glue_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(METHODS, PruneAndFineTune.name, PruneAndFineTune())  # the registry line
    args = ["find", "--task", "sst2", "--sparsity", "0.3", "--model", tiny_bert, "--data-dir", str(glue_dir),
            "--output-dir", str(tmp_path / "runs"), "--max-steps", "3", "--batch-size", "8", "--max-length", "32",
            "--seeds", "2"]
    assert main([*args, "--method", "prune-finetune"]) == 0  # a --method choice, validated by the config
    ticket = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert ticket.info["method"] == "prune-finetune" and ticket.info["weights"] == PruneAndFineTune.weights
    assert ticket.sparsity == pytest.approx(0.3, abs=1e-3)
    run = Path(ticket.info["run_dir"])
    level0, level1 = sorted(run.glob("level_*"))
    assert paths.trained_model(level0).is_file()  # no rewinding: level 1 went on from level 0's trained network
    assert paths.trained_prunable(level0).exists()  # kept: another target is another level 1, pruned from it
    chain = [p for p in run.parent.glob("prune-finetune_*") if p != run]
    assert len(chain) == 1  # seed 1 of a non-rewinding method is another whole chain of levels
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/x", "--dry-run",
                 str(tmp_path / "out")]) == 2  # not θ0: the exporter refuses it
    assert "not supported" in capsys.readouterr().err
    assert main([*args, "--seeds", "1", "--baselines", "prune-finetune"]) == 0  # and a baseline beside IMP
    assert "pruned, then fine-tuned (no rewind)" in capsys.readouterr().out
