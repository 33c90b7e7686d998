"""Packed fine-tunings (bert_tickets.engine.packed): each member trains as it would alone.

Against the lone engine: float32 on the CPU, with dropout off (with dropout on, a member draws its masks from its
own stream, not the lone run's, which sdpa draws inside its kernel). Against itself in other packs: with dropout
on, a member is the same whatever K and its packmates. A pack pads every member's batch to the longest, and a
longer attention reduction rounds differently: weights agree within 1e-6, losses within 1e-6 relative, and dev
scores within 1e-3 (a tiny random model's Pearson moves in its fifth digit); masks and token counts exactly."""

import math
import shutil

import pytest
import torch
from conftest import TINY, _save_tiny
from test_imp import tiny_config

import bert_tickets.engine.run as imp
from bert_tickets import paths
from bert_tickets.config import DataConfig, PruningConfig, TrainingConfig
from bert_tickets.engine import packed
from bert_tickets.engine.masks import MaskEnforcer, full_mask, global_magnitude_mask, random_mask, select_prunable
from bert_tickets.engine.modeling import load_pretrained, load_tokenizer
from bert_tickets.engine.packed import Member, fine_tune_packed, pack_models, stack_batches
from bert_tickets.engine.run import ImpRun
from bert_tickets.engine.training import fine_tune, make_accelerator
from bert_tickets.files import read_json
from bert_tickets.tasks import get_task

WEIGHTS, LOSS, SCORE = 1e-6, 1e-6, 1e-3


@pytest.fixture(scope="session")
def tiny_bert_no_dropout(tmp_path_factory, minilm_path) -> str:
    from transformers import BertConfig

    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert-no-dropout"), config, minilm_path)


def setup(model_path, glue_dir, task_name):
    task = get_task(task_name)
    tokenizer = load_tokenizer(model_path)
    data = task.prepare(tokenizer, DataConfig(task=task_name, data_dir=str(glue_dir), max_length=32))
    pretrained = load_pretrained(model_path, task, tokenizer)
    theta0 = select_prunable(pretrained.theta0, PruningConfig().prunable)
    masks = [None, global_magnitude_mask(theta0, full_mask(theta0), 0.5),
             random_mask(theta0, 0.7, seed=3)]
    # 48 examples in batches of 10: each member's epoch ends with a batch of 8, at a step its own order decides
    training = TrainingConfig(learning_rate=1e-3, batch_size=10, max_steps=10, mixed_precision="no")
    return task, tokenizer, data, pretrained, masks, training


def alone(pretrained, data, task, tokenizer, training, seed, mask):
    model = pretrained.build(seed)
    fit = fine_tune(model, data, task, tokenizer, training, make_accelerator(training), seed, mask=mask)
    return model, fit


def max_difference(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("task_name", ["sst2", "stsb"])
def test_each_member_of_a_pack_trains_as_it_would_alone(tiny_bert_no_dropout, glue_dir, task_name, monkeypatch):
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert_no_dropout, glue_dir, task_name)
    members = [Member(pretrained.build(seed), seed, mask) for seed, mask in enumerate(masks)]
    fillers = []
    real_step = packed.PackedLoop.train_step
    monkeypatch.setattr(packed.PackedLoop, "train_step", lambda loop, batch: fillers.append(
        int((batch["real"] == 0).sum())) or real_step(loop, batch))
    fits = fine_tune_packed(members, data, task, tokenizer, training, make_accelerator(training))
    assert any(fillers)  # some step had members with different batch sizes: filler rows
    for member, fit in zip(members, fits, strict=True):
        model, lone = alone(pretrained, data, task, tokenizer, training, member.seed, member.mask)
        assert max_difference(model, member.model) < WEIGHTS
        assert fit.train_loss == pytest.approx(lone.train_loss, rel=LOSS)
        assert fit.final_train_loss == pytest.approx(lone.final_train_loss, rel=LOSS)
        assert fit.metrics.keys() == lone.metrics.keys()
        assert all(fit.metrics[k] == pytest.approx(lone.metrics[k], abs=SCORE) for k in fit.metrics)
        assert (fit.tokens, fit.steps, fit.final_learning_rate) == (lone.tokens, lone.steps, lone.final_learning_rate)
        assert fit.revived_weights == 0 and fit.pack_size == 3 and fit.to_dict()["pack_size"] == 3
        encoder = dict(member.model.base_model.named_parameters())
        for name, keep in (member.mask or {}).items():  # the pruned weights are exactly zero after training
            assert torch.count_nonzero(encoder[name][~keep]) == 0
    assert fits[0].to_dict().keys() - lone.to_dict().keys() == {"pack_size"}  # the lone record's fields, and one


def test_training_never_asks_whether_a_batch_has_padding(tiny_bert_no_dropout, glue_dir, monkeypatch):
    """transformers' check `padding_mask.all()` reads a device value: on a GPU, a wait for the device per step."""
    import transformers.masking_utils as masking

    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert_no_dropout, glue_dir, "sst2")
    checks = []
    real = masking._ignore_bidirectional_mask_sdpa
    monkeypatch.setattr(masking, "_ignore_bidirectional_mask_sdpa", lambda *a, **k: checks.append(1) or real(*a, **k))
    pretrained.build(0)(**tokenizer(["a test"], return_tensors="pt"))
    assert checks == [1]  # the spy sees the check where a 2D mask goes in
    checks.clear()
    alone(pretrained, data, task, tokenizer, training, 0, masks[1])
    fine_tune_packed([Member(pretrained.build(s), s) for s in (0, 1)], data, task, tokenizer, training,
                     make_accelerator(training))
    assert checks == []


def test_a_diverging_member_leaves_the_others_as_they_would_be_alone(tiny_bert_no_dropout, glue_dir):
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert_no_dropout, glue_dir, "sst2")
    members = [Member(pretrained.build(seed), seed, mask) for seed, mask in enumerate(masks)]
    with torch.no_grad():
        members[1].model.classifier.weight.fill_(math.nan)  # member 1 fails: its loss is NaN from the first step
    fits = fine_tune_packed(members, data, task, tokenizer, training, make_accelerator(training))
    assert math.isnan(fits[1].train_loss)
    for k in (0, 2):
        model, lone = alone(pretrained, data, task, tokenizer, training, k, masks[k])
        assert max_difference(model, members[k].model) < WEIGHTS
        assert fits[k].train_loss == pytest.approx(lone.train_loss, rel=LOSS)


def test_a_packed_forward_and_loss_with_dropout_trace_as_one_graph(tiny_bert, glue_dir):
    """Counter-based dropout keeps every draw inside the graph (a torch generator breaks it at each draw), so
    the packed forward, dropout on, and the members' losses are one graph to capture."""
    from bert_tickets.engine.packed import DropoutStreams, member_losses
    from bert_tickets.engine.training import with_4d_mask

    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert, glue_dir, "sst2")
    streams = DropoutStreams([0, 1], training.batch_size, 32, torch.device("cpu"))
    model = pack_models([pretrained.build(seed) for seed in (0, 1)], streams).train()
    rows, length = 2 * training.batch_size, 16
    batch = {"input_ids": torch.randint(1000, 2000, (rows, length)), "attention_mask": torch.ones(rows, length,
             dtype=torch.long), "position_ids": torch.arange(length).repeat(rows, 1)}
    labels, real = torch.randint(0, 2, (rows,)), torch.ones(rows, dtype=torch.long)

    def forward_and_loss(batch, labels, real):
        return member_losses(model(**with_4d_mask(batch)).logits, labels, real, 2).sum()

    explained = torch._dynamo.explain(forward_and_loss)(batch, labels, real)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    first = streams.keep(torch.Size([rows, length, 32]), 0.1, (1,), site=2)
    streams.advance()
    assert not torch.equal(first, streams.keep(torch.Size([rows, length, 32]), 0.1, (1,), site=2))  # a new step
    assert 0.05 < 1 - first.float().mean() < 0.15  # about p dropped


def test_the_compiled_step_equals_the_eager_step(tiny_bert, glue_dir):
    """Dropout on, masked: the whole compiled step (forward with the losses, its backward, and the flat update with
    its masking, per-member clip and AdamW under a tensor learning rate) trains as the eager step does, within
    inductor's rounding, and says so in the records; the schedule's learning rate reaches the compiled update."""
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert, glue_dir, "sst2")
    training.max_steps, training.max_grad_norm = 4, 0.05  # a clip that bites, so the per-member norm matters
    runs = []
    for mode in ("eager", "compiled"):
        members = [Member(pretrained.build(seed), seed, masks[1]) for seed in (0, 1)]
        fits = fine_tune_packed(members, data, task, tokenizer, training, make_accelerator(training), step_mode=mode)
        runs.append((members, fits))
    (eager, eager_fits), (compiled, compiled_fits) = runs
    start = pretrained.build(0)
    assert max_difference(eager[0].model, start) > 1e-4  # it trained: the comparison below means something
    for a, b, fa, fb in zip(eager, compiled, eager_fits, compiled_fits, strict=True):
        assert max_difference(a.model, b.model) < 1e-5  # inductor's fused kernels round differently
        assert fb.train_loss == pytest.approx(fa.train_loss, rel=1e-5) and fb.revived_weights == 0
        assert fb.final_learning_rate == pytest.approx(fa.final_learning_rate)
        assert "pack_step" not in fa.to_dict() and fb.to_dict()["pack_step"] == "compiled"
    for member in compiled:  # the weights written back into each member's model: pruned ones exactly zero
        enforcer = MaskEnforcer(member.model, member.mask)
        assert all(bool((p[m == 0] == 0).all()) for p, m in zip(enforcer.params, enforcer.masks, strict=True))


def test_a_cuda_graph_step_off_cuda_steps_eagerly_and_says_so(tiny_bert, glue_dir, capsys):
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert, glue_dir, "sst2")
    training.max_steps = 2
    members = [Member(pretrained.build(seed), seed) for seed in (0, 1)]
    fits = fine_tune_packed(members, data, task, tokenizer, training, make_accelerator(training), step_mode="graph")
    assert "CUDA graphs need a CUDA device" in capsys.readouterr().err
    assert "pack_step" not in fits[0].to_dict()  # what ran: eager


def test_a_smaller_member_batch_gets_filler_rows_that_count_for_nothing():
    short = {"input_ids": torch.tensor([[101, 7, 102, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0]]),
             "labels": torch.tensor([1])}
    long = {"input_ids": torch.tensor([[101, 5, 6, 8, 102], [101, 9, 102, 0, 0]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), "labels": torch.tensor([0, 1])}
    batch = stack_batches([short, long], pad_id=0)
    assert batch["input_ids"].shape == (4, 5) and batch["real"].tolist() == [1, 0, 1, 1]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["position_ids"].tolist() == [list(range(5))] * 4 and batch["labels"].tolist() == [1, 0, 0, 1]
    logits = torch.tensor([[0.0, 2.0], [50.0, -50.0], [1.0, 0.0], [0.0, 1.0]])
    losses = packed.member_losses(logits, batch["labels"], batch["real"], k=2)
    expected = torch.nn.functional.cross_entropy(logits[[0]], torch.tensor([1]))  # the filler row's huge loss: no
    assert losses[0].item() == pytest.approx(expected.item())


def test_packing_keeps_parameter_names_and_stacks_the_members(tiny_bert):
    task = get_task("sst2")
    pretrained = load_pretrained(tiny_bert, task)
    models = [pretrained.build(seed) for seed in (0, 1)]
    packed = pack_models(models)
    assert [n for n, _ in packed.named_parameters()] == [n for n, _ in models[0].named_parameters()]
    for name, param in packed.named_parameters():
        assert torch.equal(param[1], models[1].get_parameter(name))


def test_find_with_packs_writes_the_records_lone_runs_write(tiny_bert_no_dropout, glue_dir, tmp_path, monkeypatch):
    settings = {"pruning.seeds": 3, "data.max_length": 32}
    lone = ImpRun(tiny_config(tiny_bert_no_dropout, glue_dir, tmp_path / "lone", **settings)).run()
    packs = []
    real = imp.packed.fine_tune_packed
    monkeypatch.setattr(imp.packed, "fine_tune_packed", lambda members, *a, **k: packs.append(
        [m.seed for m in members]) or real(members, *a, **k))
    run = ImpRun(tiny_config(tiny_bert_no_dropout, glue_dir, tmp_path / "packed", **settings,
                             **{"training.pack": 4}))
    ticket = run.run()
    assert run.root.name != lone.path.parents[1].name  # packed or not is part of the hash (dropout streams)
    assert packs == [[0, 0, 1, 1], [2, 2]]  # every evaluation fine-tuning, seed 0's too (no level doubles as one)
    for kind, seed in (("ticket", 0), ("ticket", 1), ("ticket", 2), ("dense", 0), ("dense", 1), ("dense", 2)):
        record = read_json(run.result_path(kind, seed))
        expected = read_json(ImpRun(tiny_config(tiny_bert_no_dropout, glue_dir, tmp_path / "lone", **settings))
                             .result_path(kind, seed))
        assert record["pack_size"] == (4 if seed < 2 else 2)
        assert {"pack_size"} <= record.keys() - expected.keys() <= {"pack_size", "seed"}  # seed 0's: a level alone
        assert record["revived_weights"] == 0 and record["tokens"] == expected["tokens"]
        assert record["metrics"]["accuracy"] == pytest.approx(expected["metrics"]["accuracy"], abs=SCORE)
        assert record["train_loss"] == pytest.approx(expected["train_loss"], rel=LOSS)
    assert ticket.info["seeds"] == [0, 1, 2] and ticket.info["matching"] == lone.info["matching"]


def test_a_member_whose_record_fails_leaves_the_others_written(tiny_bert, glue_dir, tmp_path, monkeypatch):
    config = tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.seeds": 2, "training.pack": 4})
    run = ImpRun(config)
    real = imp.write_json_record

    def write(path, record):
        if path == run.result_path("ticket", 1):
            raise OSError(28, "No space left on device")
        return real(path, record)

    monkeypatch.setattr(imp, "write_json_record", write)
    with pytest.raises(OSError, match="No space left"):
        run.run()
    assert not paths.ticket_seed(run.ticket_dir(), 1).exists() and run.result_path("dense", 1).exists()
    monkeypatch.setattr(imp, "write_json_record", real)
    packs, lone = [], []
    real_packed = imp.packed.fine_tune_packed
    monkeypatch.setattr(imp.packed, "fine_tune_packed",
                        lambda members, *a, **k: packs.append(members) or real_packed(members, *a, **k))
    real_fine_tune = imp.fine_tune
    monkeypatch.setattr(imp, "fine_tune", lambda *a, **k: lone.append(k["desc"]) or real_fine_tune(*a, **k))
    ImpRun(config).run()
    # only the member whose record was lost trains again, as a pack of one (every record of the folder is packed)
    assert [[(m.seed, m.mask is not None) for m in pack] for pack in packs] == [[(1, True)]] and lone == []


def test_a_member_is_the_same_in_any_pack_with_dropout_on(tiny_bert, glue_dir):
    """Each member draws its dropout from its own stream at a canonical shape: alone in a pack, second of two or
    third of three beside other masks, seed 1's dense fine-tuning ends the same (the padded length, set by the
    longest member, moves float32 rounding only)."""
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert, glue_dir, "sst2")
    assert pretrained.config.hidden_dropout_prob > 0 and pretrained.config.attention_probs_dropout_prob > 0
    packs = {"alone": [(1, None)], "second of two": [(2, masks[1]), (1, None)],
             "third of three": [(0, masks[2]), (2, masks[1]), (1, None)]}
    found = {}
    for name, pack in packs.items():
        members = [Member(pretrained.build(seed), seed, mask) for seed, mask in pack]
        fits = fine_tune_packed(members, data, task, tokenizer, training, make_accelerator(training))
        found[name] = members[-1].model, fits[-1]
    model, fit = found["alone"]
    for name in ("second of two", "third of three"):
        other, other_fit = found[name]
        assert max_difference(model, other) < 1e-7, name
        assert other_fit.train_loss == pytest.approx(fit.train_loss, rel=1e-6) and other_fit.metrics == fit.metrics
        assert other_fit.tokens == fit.tokens
    lone_model, _ = alone(pretrained, data, task, tokenizer, training, 1, None)
    assert max_difference(model, lone_model) > 1e-4  # dropout is on: a lone run's stream is another one


def test_packed_records_do_not_depend_on_the_pack_or_on_what_ran_before(tiny_bert, glue_dir, tmp_path):
    """The issue's case: `--seeds 2 --pack 3` then `--seeds 3 --pack 3`, against one `--seeds 3 --pack 3` and one
    `--seeds 3 --pack 2`: every seed's record is the same (dense seed 1 trained in a pack of one, of two or of
    three), dropout on."""
    from bert_tickets.cli import main

    def find(out, seeds, pack):
        assert main(["find", "--task", "sst2", "--sparsity", "0.1", "--model", tiny_bert, "--data-dir",
                     str(glue_dir), "--output-dir", str(out), "--max-steps", "6", "--batch-size", "8",
                     "--max-length", "32", "--seeds", str(seeds), "--pack", str(pack)]) == 0
        return next(out.glob("sst2/imp_*/tickets/sparsity_0.1000"))

    find(tmp_path / "grown", 2, 3)
    runs = {"grown": find(tmp_path / "grown", 3, 3), "at once": find(tmp_path / "once", 3, 3),
            "pairs": find(tmp_path / "pairs", 3, 2)}
    assert len({path.parents[1].name for path in runs.values()}) == 1  # one hash for any K > 1
    infos = {name: read_json(path / "ticket.json") for name, path in runs.items()}
    for name in ("at once", "pairs"):
        assert infos[name]["metrics"] == infos["grown"]["metrics"], name
        for arm in ("ticket", "dense"):
            for a, b in zip(infos[name]["runs"][arm], infos["grown"]["runs"][arm], strict=True):
                assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6), (name, arm, a["seed"])


class Interrupted(Exception):
    """Stands for a kill in the middle of a pack (after a checkpoint was written)."""


def test_a_pack_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(tiny_bert, glue_dir, tmp_path, capsys):
    """A pack trains in the one training loop a lone fine-tuning does: it saves its state every checkpoint_steps, and
    a rerun of the same members resumes from it and ends bit for bit as an unbroken pack (dropout on: the dropout
    counter is part of the state); a checkpoint saved by other members is discarded with one line."""
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert, glue_dir, "sst2")
    training.checkpoint_steps = 3
    pack = [(0, masks[2]), (1, None)]

    def train(checkpoint=None, on_step=None, members=pack):
        built = [Member(pretrained.build(seed), seed, mask) for seed, mask in members]
        fits = fine_tune_packed(built, data, task, tokenizer, training, make_accelerator(training),
                                on_step=on_step, checkpoint=checkpoint)
        return built, fits

    whole, whole_fits = train()

    def killed_at_step_7(step):
        if step == 7:
            raise Interrupted

    folder = tmp_path / "pack.checkpoint"
    with pytest.raises(Interrupted):
        train(folder, killed_at_step_7)
    assert read_json(folder / "progress.json")["step"] == 6 and (folder / packed.PACK_STATE).is_file()
    capsys.readouterr()
    resumed, resumed_fits = train(folder)
    assert "resuming at step 6" in capsys.readouterr().err
    for a, b in zip(whole, resumed, strict=True):
        assert max_difference(a.model, b.model) == 0.0
    for a, b in zip(whole_fits, resumed_fits, strict=True):
        assert (a.train_loss, a.final_train_loss, a.tokens, a.metrics, a.steps) == \
            (b.train_loss, b.final_train_loss, b.tokens, b.metrics, b.steps)

    shutil.rmtree(folder)  # the engine removes a pack's checkpoint once its records are written
    with pytest.raises(Interrupted):
        train(folder, killed_at_step_7)
    capsys.readouterr()
    other, _ = train(folder, members=[(0, masks[1]), (1, None)])  # another mask: another pack's checkpoint
    err = capsys.readouterr().err
    assert "was saved by other fine-tunings (another pack): discarded" in err and "resuming" not in err


def test_a_study_packs_its_runs_evaluations_together_and_each_record_is_its_own(tiny_bert, glue_dir, tmp_path,
                                                                               monkeypatch, caplog):
    """`find --baselines` with --pack 8: the ticket's and the random baseline's evaluation seeds (the first phase's
    runs) train in one pack; every record equals the one each run's own packs write (dropout on), only its
    pack_size says more members shared it. The comparison is the same."""
    import logging

    import bert_tickets as bt
    import bert_tickets.studies.jobs as jobs

    recipe = dict(model=tiny_bert, data_dir=str(glue_dir), max_steps=3, training__batch_size=8, rate=0.2, seeds=2,
                  baselines=["random", "reinit"], settings={"data.max_length": 32, "training.pack": 8})
    with caplog.at_level(logging.INFO, logger="bert_tickets"):
        together = bt.find_ticket("rte", 0.2, output_dir=str(tmp_path / "together"), **recipe)
    packed_logs = [r.getMessage() for r in caplog.records if "fine-tunings packed" in r.getMessage()]
    assert any("imp 20% ticket seed 1" in m and "random 20% ticket seed 0" in m for m in packed_logs), packed_logs
    monkeypatch.setattr(jobs, "pack_across_runs", lambda runs: None)  # each run packs its own seeds only
    apart = bt.find_ticket("rte", 0.2, output_dir=str(tmp_path / "apart"), **recipe)

    def records(root):
        found = {p.relative_to(root): read_json(p) for p in root.rglob("*.json") if "train_loss" in p.read_text()}
        return {path: r for path, r in found.items() if "train_loss" in r}

    mine, theirs = records(tmp_path / "together"), records(tmp_path / "apart")
    assert mine.keys() == theirs.keys() and len(mine) >= 7  # levels, ticket, dense, random and reinit seeds
    for path, record in mine.items():
        other = theirs[path]
        assert record["train_loss"] == pytest.approx(other["train_loss"], rel=1e-5), path
        assert record["metrics"] == pytest.approx(other["metrics"], rel=1e-4, abs=1e-6), path
        assert record["revived_weights"] == 0 and record.get("pack_size", 1) >= other.get("pack_size", 1)
    assert max(r.get("pack_size", 1) for r in mine.values()) > max(r.get("pack_size", 1) for r in theirs.values())
    comparisons = [read_json(t.path / "comparison.json")["rows"] for t in (together, apart)]
    assert [r["method"] for r in comparisons[0]] == [r["method"] for r in comparisons[1]]


@pytest.mark.parametrize("task_name", ["sst2", "rte"])
def test_an_unpadded_pack_trains_as_the_padded_pack(tiny_bert, glue_dir, task_name, monkeypatch):
    """Dropout on, masked, members of other lengths at each step: the pack that computes on the real tokens only
    ends with the padded pack's weights and losses within float32 rounding; pruned weights stay exactly zero."""
    task, tokenizer, data, pretrained, masks, training = setup(tiny_bert, glue_dir, task_name)
    sizes = []  # the tokens each grouped product saw: the real ones only

    def counted(x, weight, bias, counts):
        sizes.append(sum(counts))
        return grouped_linear(x, weight, bias, counts)

    from bert_tickets.engine.unpadded import grouped_linear
    monkeypatch.setattr(packed, "grouped_linear", counted)
    training.max_steps = 4
    runs = []
    for unpad in (False, True):
        training.pack_unpad = unpad
        members = [Member(pretrained.build(seed), seed, masks[seed % 3]) for seed in range(3)]
        runs.append((members, fine_tune_packed(members, data, task, tokenizer, training, make_accelerator(training))))
    (padded, padded_fits), (unpadded, unpadded_fits) = runs
    assert max_difference(padded[0].model, pretrained.build(0)) > 1e-4  # it trained
    for a, b, fa, fb in zip(padded, unpadded, padded_fits, unpadded_fits, strict=True):
        assert max_difference(a.model, b.model) < 1e-5
        assert fb.train_loss == pytest.approx(fa.train_loss, rel=1e-5) and fb.tokens == fa.tokens
        assert fb.revived_weights == 0 and fb.to_dict()["pack_step"] == "eager, unpadded"
        assert "pack_step" not in fa.to_dict()
    layers = TINY["num_hidden_layers"]
    assert len(sizes) == 4 * 6 * layers  # 4 steps, 6 products a layer (q, k, v, out, up, down) took the real tokens
    real = sum(f.tokens for f in unpadded_fits)  # and only those: the real rows' tokens, and a filler row's first
    assert real <= sum(sizes) // (6 * layers) <= real + 3 * training.batch_size


def test_the_unpadded_layout_takes_the_real_tokens_and_puts_them_back():
    from bert_tickets.engine.unpadded import Unpadded

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])  # two members of two rows
    layout = Unpadded(mask, k=2)
    ids = torch.arange(16).reshape(4, 4)
    assert layout.flat(ids).tolist() == [[0, 1, 2, 4, 5, 8, 12, 13, 14, 15]]
    assert layout.counts == [5, 5] and layout.members.tolist() == [0] * 5 + [1] * 5
    assert layout.starts.tolist() == [0, 3, 5, 6]  # each row's first (CLS) token among the real ones
    back = layout.pad(layout.flat(ids)[0])
    assert torch.equal(back, ids * mask) and torch.equal(layout.unpad(back), layout.flat(ids)[0])
