from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bert_tickets.engine.run as imp
from bert_tickets import Ticket, find_ticket, paths
from bert_tickets.cli import main
from bert_tickets.config import TrainingConfig, load_config
from bert_tickets.engine.masks import load_mask, mask_metadata, prunable_parameters, sparsity_report
from bert_tickets.engine.modeling import load_pretrained
from bert_tickets.engine.precision import resolved_precision
from bert_tickets.engine.run import ImpRun
from bert_tickets.engine.run_folder import sparsity_schedule
from bert_tickets.files import read_json
from bert_tickets.stats import is_matching
from bert_tickets.tasks import get_task


def tiny_config(model: str, data_dir: Path, out: Path, **extra):
    settings = {"model.name": model, "data.task": "sst2", "data.data_dir": str(data_dir), "output_dir": str(out),
                "pruning.sparsity": 0.2, "training.max_steps": 4, "training.batch_size": 8,
                "training.learning_rate": 1e-3, "data.max_length": 32} | extra
    return load_config(None, settings)


def test_schedules():
    assert sparsity_schedule(0.5, 0.1) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert sparsity_schedule(0.75, 0.25) == [0.0, 0.25, 0.5, 0.75]
    assert sparsity_schedule(0.45, 0.2) == [0.0, 0.2, 0.4, 0.45]  # the last level lands on the target
    geometric = sparsity_schedule(0.5, 0.2, "geometric")
    assert geometric == pytest.approx([0.0, 0.2, 0.36, 0.488, 0.5])


@pytest.mark.parametrize("native", ["1", "0"])
def test_auto_precision_is_fp32_on_any_cpu_and_bf16_on_gpus_that_have_it(native, monkeypatch):
    import bert_tickets.engine.precision as precision

    monkeypatch.setenv(precision.NATIVE_BF16_ENV, native)  # the CPU's flags no longer decide anything
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert precision.native_bf16() == (native == "1")
    assert resolved_precision(TrainingConfig(mixed_precision="no")) == "no"
    assert resolved_precision(TrainingConfig(mixed_precision="fp16")) == "fp16"
    assert resolved_precision(TrainingConfig(mixed_precision="bf16")) == "bf16"  # opt-in on a CPU
    assert resolved_precision(TrainingConfig()) == "no"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert resolved_precision(TrainingConfig()) == expected
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # `accelerate launch --mixed_precision fp16`
    assert resolved_precision(TrainingConfig()) == "fp16"


def test_the_run_hash_holds_the_resolved_precision(tmp_path, monkeypatch):
    from bert_tickets.config import dense_hash, reproduce_command, run_hash

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    auto, fp32, bf16 = (load_config(None, {"training.mixed_precision": p}) for p in ("auto", "no", "bf16"))
    assert run_hash(auto) == run_hash(fp32) != run_hash(bf16)  # auto on a CPU is fp32: the same folder
    assert dense_hash(auto) == dense_hash(fp32) != dense_hash(bf16)
    assert "training.mixed_precision=no" in reproduce_command(auto)  # the same folder on a GPU too
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert run_hash(auto) == run_hash(bf16)  # auto on a bf16 GPU: the bf16 folder, never the fp32 one


def test_finds_with_different_precisions_in_one_process(tiny_bert, glue_dir, tmp_path):
    """accelerate keeps one precision per process: each run gets its own anyway, in any order, and records it."""
    found = {}
    for precision in ("bf16", "no", "bf16", "auto"):
        ticket = find_ticket("sst2", 0.2, model=tiny_bert, data_dir=str(glue_dir), output_dir=str(tmp_path),
                             training__max_steps=2, training__batch_size=8, data__max_length=32,
                             training__mixed_precision=precision)
        expected = "no" if precision == "auto" else precision
        level = read_json(next(ticket.path.parents[1].glob("level_01_*/metrics.json")))
        assert level["precision"] == ticket.info["precision"] == expected
        found[precision] = ticket.path
    assert found["bf16"] != found["no"] == found["auto"]


def test_find_writes_levels_and_a_ticket(tiny_bert, glue_dir, tmp_path):
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.seeds": 2}))
    ticket = run.run()
    assert [p.name for p in sorted(run.root.glob("level_*"))] == [
        "level_00_sparsity_0.0000", "level_01_sparsity_0.1000", "level_02_sparsity_0.2000"]
    assert read_json(run.root / "config.json")["run_hash"] == run.root.name.removeprefix("imp_")
    masks = [load_mask(paths.mask(run.level_dir(k))) for k in (1, 2)]
    total = sparsity_report(masks[0])["prunable_weights"]
    for k, mask in zip((1, 2), masks, strict=True):
        assert sparsity_report(mask)["remaining_weights"] == total - round(run.sparsities[k] * total)
        assert read_json(paths.sparsity(run.level_dir(k)))["sparsity"] == pytest.approx(run.sparsities[k], abs=1e-4)
        level = read_json(paths.metrics(run.level_dir(k)))
        assert level["revived_weights"] == 0  # held under bf16 autocast too, where this CPU has it
        assert level["precision"] == resolved_precision(run.config.training)
    assert all(not (masks[1][n] & ~masks[0][n]).any() for n in masks[0])  # IMP prunes survivors only
    assert ticket.path == run.ticket_dir() and ticket.sparsity == pytest.approx(0.2, abs=1e-3)
    info = read_json(paths.ticket_info(ticket.path))
    assert {"task", "sparsity", "model", "method", "metrics", "matching"} <= set(info)
    assert info["method"] == "imp" and info["task"] == "sst2" and info["seeds"] == [0, 1]
    ticket_acc, dense_acc = info["metrics"]["ticket"]["accuracy"], info["metrics"]["dense"]["accuracy"]
    assert len(ticket_acc["values"]) == len(dense_acc["values"]) == 2
    assert info["matching"] == is_matching(ticket_acc, dense_acc)  # the paper's rule, failures counted
    assert ticket_acc["failed"] == sum(r["failed"] for r in info["runs"]["ticket"])
    assert (paths.ticket_seed(ticket.path, 1)).exists()
    level0 = read_json(paths.metrics(run.level_dir(0)))["metrics"]
    assert read_json(paths.dense_seed(run.dense_dir(), 0))["metrics"] == level0
    assert (paths.dense_seed(run.dense_dir(), 1)).exists() and run.dense_dir().parent == run.root.parent
    metadata = mask_metadata(paths.mask(ticket.path))  # compressed-tensors' vocabulary, our writer's version
    config = metadata["sparsity_config"]
    assert config["format"] == "sparse-bitmask" and metadata["writer"] == "bert-tickets-mask/3"
    # global_sparsity is over the whole encoder (embeddings included), so below the prunable matrices' sparsity
    assert config["sparsity_structure"] == "unstructured" and 0 < config["global_sparsity"] < ticket.sparsity


def test_rerun_skips_finished_work_and_extends_to_a_higher_sparsity(tiny_bert, glue_dir, tmp_path, monkeypatch):
    find_ticket("sst2", 0.2, model=tiny_bert, data_dir=str(glue_dir), output_dir=str(tmp_path),
                training__max_steps=4, training__batch_size=8, data__max_length=32)
    calls = []
    real = imp.fine_tune
    monkeypatch.setattr(imp, "fine_tune", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    again = find_ticket("sst2", 0.2, model=tiny_bert, data_dir=str(glue_dir), output_dir=str(tmp_path),
                        training__max_steps=4, training__batch_size=8, data__max_length=32)
    assert calls == [] and again.sparsity == pytest.approx(0.2, abs=1e-3)
    find_ticket("sst2", 0.3, model=tiny_bert, data_dir=str(glue_dir), output_dir=str(tmp_path),
                training__max_steps=4, training__batch_size=8, data__max_length=32)
    assert calls == ["level 3 (30%)"]  # levels 0-2 reused from the 20% run


def test_a_killed_run_resumes_to_the_same_masks(tiny_bert, glue_dir, tmp_path, monkeypatch):
    whole = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path / "whole", **{"pruning.sparsity": 0.3}))
    whole.run()
    real, calls = imp.fine_tune, []

    def dies_in_level_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if killed while training level 2
        return real(*args, **kwargs)

    config = tiny_config(tiny_bert, glue_dir, tmp_path / "killed", **{"pruning.sparsity": 0.3})
    monkeypatch.setattr(imp, "fine_tune", dies_in_level_2)
    with pytest.raises(KeyboardInterrupt):
        ImpRun(config).run()
    monkeypatch.setattr(imp, "fine_tune", real)
    resumed = ImpRun(config)
    assert not (paths.metrics(resumed.level_dir(2))).exists()
    resumed.run()
    for k in (1, 2, 3):
        a, b = load_mask(paths.mask(whole.level_dir(k))), load_mask(paths.mask(resumed.level_dir(k)))
        assert all(torch.equal(a[n], b[n]) for n in a), f"level {k} differs"
        assert read_json(paths.metrics(whole.level_dir(k)))["metrics"] == \
            read_json(paths.metrics(resumed.level_dir(k)))["metrics"]


def test_ticket_applies_to_a_fresh_model(tiny_bert, glue_dir, tmp_path):
    ticket = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path)).run()
    loaded = Ticket.load(ticket.path)
    model = load_pretrained(tiny_bert, get_task("cola")).build(seed=3)  # another task's head
    loaded.apply(model)
    params = prunable_parameters(model, loaded.info["prunable"])
    assert all(torch.all(params[n][~m] == 0) and torch.all(params[n][m] != 0) for n, m in loaded.mask.items())
    assert "sparsity=0.2000" in repr(loaded)


def test_rewinding_to_an_early_step_and_keeping_the_head(tiny_bert, glue_dir, tmp_path):
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.rewind_step": 2, "pruning.keep_head": True,
                                                               "pruning.sparsity": 0.1}))
    ticket = run.run()
    assert paths.rewind_point(run.root).exists() and paths.initial_head(run.root).exists()
    assert ticket.info["rewind_step"] == 2
    rewound = run.build_model(0, rewound=True, keep_head=True)
    theta0 = run.resources.pretrained.theta0["encoder.layer.0.attention.self.query.weight"]
    assert not torch.equal(rewound.base_model.encoder.layer[0].attention.self.query.weight, theta0)
    with pytest.raises(Exception, match="beyond"):
        ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path / "far", **{"pruning.rewind_step": 99})).run()


def test_the_engine_works_on_roberta(tiny_roberta, glue_dir, tmp_path):
    ticket = ImpRun(tiny_config(tiny_roberta, glue_dir, tmp_path, **{"pruning.sparsity": 0.1})).run()
    assert ticket.sparsity == pytest.approx(0.1, abs=1e-3)
    assert "pooler.dense.weight" not in ticket.mask and len(ticket.mask) == 12


@pytest.mark.parametrize("method", ["oneshot", "magnitude", "random", "standard"])
def test_baseline_methods_make_tickets_in_the_same_format(method, tiny_bert, glue_dir, tmp_path, capsys):
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": method, "pruning.sparsity": 0.3}))
    ticket = run.run()
    levels = [0.0, 0.1, 0.2, 0.3] if method == "standard" else [0.0, 0.3]
    assert run.root.name.startswith(f"{method}_") and run.sparsities == levels
    trained_level_0 = method in ("oneshot", "standard")  # θ0-only masks need no training
    assert (paths.metrics(run.level_dir(0))).exists() == trained_level_0
    loaded = Ticket.load(ticket.path)
    assert loaded.info["method"] == method and loaded.sparsity == pytest.approx(0.3, abs=1e-3)
    assert set(loaded.info["metrics"]) == {"ticket", "dense"}
    theta0 = prunable_parameters(load_pretrained(tiny_bert, get_task("sst2")).build(0), loaded.info["prunable"])
    if method == "magnitude":  # exactly the smallest 30% of θ0
        magnitudes = torch.cat([p.detach().abs().flatten() for p in theta0.values()])
        threshold = magnitudes.kthvalue(round(0.3 * magnitudes.numel())).values
        assert all(torch.equal(loaded.mask[n], p.detach().abs() > threshold) for n, p in theta0.items())
    assert run.is_done()
    # and `bert-tickets evaluate` takes it to another task
    assert main(["evaluate", "--ticket", str(ticket.path), "--task", "rte", "--data-dir", str(glue_dir),
                 "--output-dir", str(tmp_path)]) == 0
    assert Ticket.load(capsys.readouterr().out.strip().splitlines()[-1]).task == "rte"


def test_rewinding_needs_a_trained_level(tiny_bert, glue_dir, tmp_path):
    with pytest.raises(Exception, match="needs a trained level 0"):
        ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": "random", "pruning.rewind_step": 1}))


def test_dense_runs_are_shared_by_every_method(tiny_bert, glue_dir, tmp_path, monkeypatch):
    ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.sparsity": 0.1})).run()
    calls = []
    real = imp.fine_tune
    monkeypatch.setattr(imp, "fine_tune", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    random_run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": "random"}))
    ticket = random_run.run()
    assert calls == ["level 1 (20%)"]  # the dense reference came from the IMP run's level 0
    assert ticket.info["metrics"]["dense"]["accuracy"]["values"] == [
        read_json(paths.dense_seed(random_run.dense_dir(), 0))["metrics"]["accuracy"]]


def test_standard_pruning_trains_on_without_rewinding(tiny_bert, glue_dir, tmp_path, monkeypatch):
    starts = {}
    real = imp.fine_tune

    def record_start(model, *args, **kwargs):
        starts.setdefault(kwargs["desc"], []).append(model.base_model.encoder.layer[0].output.dense.weight.clone())
        return real(model, *args, **kwargs)

    monkeypatch.setattr(imp, "fine_tune", record_start)
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": "standard", "pruning.seeds": 2}))
    ticket = run.run()
    trained = load_file(str(paths.trained_model(run.level_dir(0))))
    trained0 = trained["bert.encoder.layer.0.output.dense.weight"]
    assert torch.equal(starts["level 1 (10%)"][0].detach(), trained0)  # level 1 began where level 0 ended
    assert not torch.equal(trained0, run.resources.pretrained.theta0["encoder.layer.0.output.dense.weight"])
    assert ticket.info["method"] == "standard" and "no rewinding" in ticket.info["weights"]
    assert len(ticket.info["metrics"]["ticket"]["accuracy"]["values"]) == 2  # seed 1 ran a chain of its own
    assert len(starts["level 2 (20%)"]) == 2  # the second seed's chain went through its own levels


@pytest.fixture()
def bert_with_a_tiny_pooler(tiny_bert, tmp_path):
    """The tiny BERT with a pooler a thousand times smaller than the rest, like MiniLM's never-trained one."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.pooler.dense.weight.mul_(1e-3)
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def test_a_matrix_emptied_by_the_global_threshold_is_flagged_everywhere(bert_with_a_tiny_pooler, glue_dir, tmp_path,
                                                                         capsys):
    args = ["find", "--task", "sst2", "--sparsity", "0.3", "--rate", "0.3", "--model", bert_with_a_tiny_pooler,
            "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs"), "--max-steps", "2",
            "--batch-size", "8", "--max-length", "32"]
    assert main(args) == 0
    captured = capsys.readouterr()
    info = Ticket.load(captured.out.strip().splitlines()[-1]).info
    assert info["collapsed_matrices"] == {"pooler.dense.weight": 1.0}
    assert info["per_matrix_sparsity"]["pooler.dense.weight"] == 1.0 and info["scope"] == "global"
    assert "COLLAPSED: pooler.dense.weight is 100.0% pruned" in captured.out
    assert "warning: level 1: 1 matrix(es) pruned far beyond" in captured.err
    assert "warning: pooler.dense.weight has mean |w|" in captured.err  # said before any pruning
    # per matrix, nothing collapses
    assert main(args + ["--set", "pruning.scope=layerwise"]) == 0
    captured = capsys.readouterr()
    info = Ticket.load(captured.out.strip().splitlines()[-1]).info
    assert info["collapsed_matrices"] == {} and "COLLAPSED" not in captured.out and "pruned far" not in captured.err
    assert all(s == pytest.approx(0.3, abs=1e-3) for s in info["per_matrix_sparsity"].values())


def test_the_authors_shuffle_permutes_whole_layers_under_the_tickets_mask(tiny_bert, glue_dir, tmp_path):
    import re

    source = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.sparsity": 0.2})).run()
    config = tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": "shuffle_layers",
                                                           "pruning.sparsity": 0.2, "pruning.ticket": str(source.path)})
    run = ImpRun(config)
    theta0 = run.resources.pretrained.theta0
    layers = sorted({int(m.group(1)) for n in theta0 if (m := re.search(r"layer\.(\d+)\.", n))})
    moved = {}
    for seed in (3, 4, 5, 6):  # two layers: some seed swaps them
        state = run.build_model(seed, rewound=True).base_model.state_dict()
        for name in source.mask:
            if (m := re.search(r"layer\.(\d+)\.", name)) is None:
                assert torch.equal(state[name], theta0[name]), name  # the pooler stays in place
                continue
            same = [k for k in layers if torch.equal(state[name], theta0[name.replace(m.group(0), f"layer.{k}.")])]
            assert same, name  # a whole matrix of some layer, not entries shuffled within one
            moved.setdefault(seed, {})[(int(m.group(1)), name.split(m.group(0))[1])] = same[0]
        for name in theta0:
            if name not in source.mask:
                assert torch.equal(state[name], theta0[name]), name  # embeddings, LayerNorms, biases: θ0
        sources = {layer: {src for (lay, _), src in moved[seed].items() if lay == layer} for layer in layers}
        assert all(len(s) == 1 for s in sources.values())  # one permutation for every matrix type of a layer
    assert any(moved[s][key] != key[0] for s in moved for key in moved[s])  # some seed moved a layer
    ticket = run.run()
    assert ticket.info["method"] == "shuffle_layers" and all(torch.equal(ticket.mask[n], source.mask[n])
                                                             for n in source.mask)


def test_shuffle_keeps_each_matrix_multiset_under_the_tickets_mask(tiny_bert, glue_dir, tmp_path):
    source = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.sparsity": 0.2})).run()
    config = tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": "shuffle", "pruning.sparsity": 0.2,
                                                           "pruning.ticket": str(source.path)})
    run = ImpRun(config)
    theta0 = run.resources.pretrained.theta0
    prunable = set(source.mask)
    shuffled = run.build_model(3, rewound=True).base_model.state_dict()
    for name, w in theta0.items():
        if name in prunable:  # same values, other places
            assert torch.equal(shuffled[name].flatten().sort().values, w.flatten().sort().values)
            assert not torch.equal(shuffled[name], w)
        else:  # embeddings, LayerNorms, biases: θ0 as it is
            assert torch.equal(shuffled[name], w), name
    assert torch.equal(run.build_model(3, rewound=True).base_model.state_dict()[name], shuffled[name])  # seeded
    other_seed = run.build_model(4, rewound=True).base_model.state_dict()
    assert not all(torch.equal(other_seed[n], shuffled[n]) for n in prunable)
    ticket = run.run()
    assert ticket.info["method"] == "shuffle" and "shuffled" in ticket.info["weights"]
    assert ticket.sparsity == pytest.approx(source.sparsity)
    assert all(torch.equal(ticket.mask[n], source.mask[n]) for n in source.mask)
    assert read_json(paths.metrics(run.level_dir(1)))["revived_weights"] == 0


def _grad_norms_seen(config) -> list[float]:
    """The global gradient norm that every optimizer step of a run actually used."""
    norms: list[float] = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(record)
    try:
        ImpRun(config).run_levels()
    finally:
        handle.remove()
    return norms


def test_gradients_are_clipped_to_max_grad_norm_and_0_turns_it_off(tiny_bert, glue_dir, tmp_path):
    clipped = _grad_norms_seen(tiny_config(tiny_bert, glue_dir, tmp_path / "a", **{"training.max_grad_norm": 0.05}))
    assert len(clipped) == 3 * 4 and max(clipped) == pytest.approx(0.05, rel=1e-4)  # three levels of 4 steps
    unclipped = _grad_norms_seen(tiny_config(tiny_bert, glue_dir, tmp_path / "b", **{"training.max_grad_norm": 0}))
    assert min(unclipped) > 0.05  # off: every step used a gradient the 0.05 clip would have cut
    assert load_config(None).training.max_grad_norm == 1.0  # the paper's (and HF's) default


def test_gradient_accumulation_counts_optimizer_steps(tiny_bert, glue_dir, tmp_path):
    config = tiny_config(tiny_bert, glue_dir, tmp_path, **{"training.max_steps": None, "training.epochs": 1.0,
                                                           "training.batch_size": 4,
                                                           "training.gradient_accumulation_steps": 3})
    norms = _grad_norms_seen(config)
    level0 = read_json(paths.metrics(ImpRun(config).level_dir(0)))
    assert level0["steps"] == 4 and len(norms) == 3 * 4  # 48 examples / 4 = 12 micro-batches, 3 per step
    with pytest.raises(Exception, match="gradient_accumulation_steps must be in \\[1, 1048576\\]"):
        tiny_config(tiny_bert, glue_dir, tmp_path, **{"training.gradient_accumulation_steps": 0}).validate()


def test_a_find_gives_one_answer_whether_the_cpu_has_native_bf16_or_not(tiny_bert, glue_dir, tmp_path):
    """The host's CPU flags decide nothing: forced either way, the same run folder, precision and scores."""
    import json
    import os
    import subprocess
    import sys

    from bert_tickets.engine.precision import NATIVE_BF16_ENV

    found = {}
    for native in ("1", "0"):
        out = tmp_path / native
        done = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "find", "--task", "sst2", "--sparsity", "0.1",
                               "--model", tiny_bert, "--data-dir", str(glue_dir), "--output-dir", str(out),
                               "--max-steps", "3", "--batch-size", "8", "--max-length", "32"],
                              env=os.environ | {NATIVE_BF16_ENV: native}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        ticket = Path(done.stdout.strip().splitlines()[-1])
        found[native] = (ticket.relative_to(out), json.loads((ticket / "ticket.json").read_text()))
    (path_bf16, info_bf16), (path_fp32, info_fp32) = found["1"], found["0"]
    assert path_bf16 == path_fp32 and info_bf16["precision"] == info_fp32["precision"] == "no"
    assert info_bf16["metrics"] == info_fp32["metrics"]


def test_a_study_reads_the_precision_it_first_ran_in_on_any_host(tiny_bert, glue_dir, tmp_path, monkeypatch):
    """A study's "auto" is pinned in its folder where it first runs: a GPU (auto: bf16) reading a study made on a
    CPU (auto: fp32) finds the CPU's run folders, not folders of its own precision."""
    from bert_tickets.studies.plan import load_plan, pin_precision
    from bert_tickets.studies.spec import parse_spec

    text = (f"name: pinned\ndata_dir: {glue_dir}\nsettings: {{model.name: {tiny_bert}, training.max_steps: 2}}\n"
            "tasks: [sst2]\nsparsities: [0.1]\nbaselines: []\nseeds: 1\n")
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "study.yaml").write_text(text)
    pin_precision(parse_spec(text, "pinned"), folder, write=True)
    assert read_json(folder / "precision.json") == {"training.mixed_precision": "no"}
    made_here = load_plan(folder).ticket_run("sst2", 0.1).root
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert load_plan(folder).ticket_run("sst2", 0.1).root == made_here
    (folder / "precision.json").unlink()
    assert load_plan(folder).ticket_run("sst2", 0.1).root != made_here  # unpinned, auto is bf16 on that host
