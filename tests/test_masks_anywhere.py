"""Masks anyone can use: compact bitmask files in compressed-tensors' vocabulary (the older boolean files still
load), `Ticket.from_pretrained` from the Hub, and `KeepMask` keeping the zeros in a user's own `Trainer`."""

import subprocess
import sys

import pytest
import torch
from fake_hub import FakeHub, hub_env
from safetensors import safe_open
from safetensors.torch import save_file
from test_hardening import world  # noqa: F401 (a fixture)
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from bert_tickets import KeepMask, Ticket, paths
from bert_tickets.engine.masks import load_mask, mask_metadata, save_mask
from bert_tickets.errors import UserError


def _random_mask() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (384, 384), "b.weight": (37, 13), "c.weight": (5,), "d.weight": (2, 3, 9)}
    return {name: torch.rand(shape, generator=generator) > 0.7 for name, shape in shapes.items()}


def test_a_bitmask_file_round_trips_at_one_bit_a_weight(tmp_path):
    mask = _random_mask()
    save_mask(tmp_path / "bits.safetensors", mask, ["a", "b"])
    back = load_mask(tmp_path / "bits.safetensors")
    assert back.keys() == mask.keys() and all(torch.equal(back[k], mask[k]) for k in mask)
    meta = mask_metadata(tmp_path / "bits.safetensors")
    assert meta["writer"] == "bert-tickets-mask/3" and meta["prunable"] == ["a", "b"]
    config = meta["sparsity_config"]
    assert config["format"] == "sparse-bitmask" and config["sparsity_structure"] == "unstructured"
    assert config["targets"] == [f"re:(.*\\.)?{m}$" for m in "abcd"] and 0.69 < config["global_sparsity"] < 0.71
    save_mask(tmp_path / "again.safetensors", mask, ["a", "b"])  # the same mask, the same bytes
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "bits.safetensors").read_bytes()
    save_file(mask, str(tmp_path / "bools.safetensors"))  # the older layout: one byte a weight
    legacy = load_mask(tmp_path / "bools.safetensors")
    assert all(torch.equal(legacy[k], mask[k]) for k in mask)
    ratio = (tmp_path / "bools.safetensors").stat().st_size / (tmp_path / "bits.safetensors").stat().st_size
    assert ratio > 6  # 8x on the tensors, less the header and the shapes


def test_a_bitmask_file_with_a_stray_entry_is_refused(tmp_path):
    mask = _random_mask()
    save_mask(tmp_path / "m.safetensors", mask)
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors | {"e.weight": torch.zeros(3, dtype=torch.bool)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(UserError, match="e.weight is neither a bitmask nor its shape"):
        load_mask(tmp_path / "m.safetensors")


def test_a_released_ticket_is_used_by_its_hub_id(world, tmp_path):  # noqa: F811
    files = {name: (world["ticket"] / name).read_bytes() for name in (paths.MASK, paths.TICKET_INFO)}
    with FakeHub({"model:someone/tiny-ticket": False}) as hub:
        hub.repos["model:someone/tiny-ticket"]["files"]["main"] = files
        done = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "evaluate", "--ticket", "someone/tiny-ticket",
                               "--task", "rte", "--data-dir", str(world["glue"]), "--output-dir",
                               str(tmp_path / "runs"), "--max-steps", "2", "--max-length", "32"],
                              env=hub_env(hub, tmp_path / "hf_home"), capture_output=True, text=True, timeout=300)
        missing = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "evaluate", "--ticket", "someone/absent",
                                  "--task", "rte"], env=hub_env(hub, tmp_path / "hf_home"), capture_output=True,
                                 text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = Ticket.load(done.stdout.strip().splitlines()[-1])
    mask = load_mask(world["ticket"] / paths.MASK)
    assert all(torch.equal(evaluated.mask[k], mask[k]) for k in mask)  # the Hub's mask, fine-tuned on RTE
    assert missing.returncode == 2 and "'someone/absent' is no folder here, and the Hub could not give it" in \
        missing.stderr and "Traceback" not in missing.stderr


def _train(model_path: str, ticket: Ticket, tmp_path, callbacks: list) -> torch.nn.Module:
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(1000, 2000, (12,), generator=generator), "labels": i % 2} for i in range(32)]
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=6, per_device_train_batch_size=8,
                             learning_rate=1e-2, weight_decay=0.1, report_to=[], use_cpu=True, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=rows, callbacks=callbacks).train()
    return model


def test_keep_mask_keeps_the_zeros_in_a_real_trainer(world, tmp_path):  # noqa: F811
    ticket = Ticket.load(world["ticket"])
    kept = _train(world["model"], ticket, tmp_path, [KeepMask(ticket)])
    free = _train(world["model"], ticket, tmp_path, [])
    for model, expect_zeros in ((kept, True), (free, False)):
        params = dict(model.base_model.named_parameters())
        pruned = [params[name].detach()[~keep] for name, keep in ticket.mask.items() if name in params]
        assert (sum(int((p != 0).sum()) for p in pruned) == 0) is expect_zeros  # without it, they revive
    moved = dict(kept.base_model.named_parameters())
    start = AutoModelForSequenceClassification.from_pretrained(world["model"], num_labels=2).base_model
    name = next(iter(ticket.mask))
    assert not torch.equal(moved[name].detach(), start.get_parameter(name).detach())  # the kept weights trained


def test_the_mask_reads_back_with_compressed_tensors_own_config_bitmasks_and_matcher(tiny_bert, tmp_path):
    """compressed-tensors' vocabulary exactly: its BitmaskConfig takes our sparsity_config with no field left over,
    its unpack_bitmasks reads our bits, its matcher finds every target among a task model's modules, and
    global_sparsity is over the whole model, as its "average sparsity of the entire model"."""
    ct = pytest.importorskip("compressed_tensors")
    from compressed_tensors.config import BitmaskConfig
    from compressed_tensors.utils import match_named_modules

    from bert_tickets.engine.masks import encoder_of, random_mask, select_prunable

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    prunable = select_prunable(dict(encoder_of(model).named_parameters()), [r"encoder\.layer\.\d+\..*weight$"])
    prunable = {k: v for k, v in prunable.items() if v.dim() == 2}
    mask = random_mask(prunable, 0.6, seed=1)
    encoder_weights = sum(p.numel() for p in encoder_of(model).parameters())
    save_mask(tmp_path / "m.safetensors", mask, sorted(mask), model_weights=encoder_weights)
    config = mask_metadata(tmp_path / "m.safetensors")["sparsity_config"]
    parsed = BitmaskConfig.model_validate(config)
    assert set(config) <= set(BitmaskConfig.model_fields) and parsed.model_dump(include=set(config)) == config
    pruned = sum(int((~m).sum()) for m in mask.values())
    assert config["global_sparsity"] == pytest.approx(pruned / encoder_weights)
    assert config["global_sparsity"] < 0.5  # the embeddings and LayerNorms stay dense
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        for name, keep in mask.items():
            shape = f.get_tensor(f"{name}.shape").tolist()
            assert torch.equal(ct.unpack_bitmasks(f.get_tensor(f"{name}.bitmask"), shape), keep)
            assert torch.equal(ct.pack_bitmasks(keep), f.get_tensor(f"{name}.bitmask"))
    found = {name for name, _ in match_named_modules(model, config["targets"])}
    assert found == {f"bert.{name.removesuffix('.weight')}" for name in mask}  # all of them, nothing else
