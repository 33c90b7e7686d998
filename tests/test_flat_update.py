"""The flat update (bert_tickets.engine.flat_update): the per-tensor update of each member within fp32 rounding, masked
weights exactly zero, gradients landing in the flat buffers."""

import torch
from torch import nn

from bert_tickets.config import TrainingConfig
from bert_tickets.engine.flat_update import FlatUpdate
from bert_tickets.engine.packed import pack_models, unpack_into

K, B, D = 3, 4, 8


def member(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 16), nn.LayerNorm(16), nn.Linear(16, 2))


def masks_for(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + seed)
    return {"0.weight": torch.rand(16, D, generator=g) > 0.5, "2.weight": torch.rand(2, 16, generator=g) > 0.3}


def data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return torch.randn(K, B, D, generator=g) * 3, torch.randint(0, 2, (K, B), generator=g)


def per_tensor_reference(training: TrainingConfig, steps: int) -> list[nn.Module]:
    """Each member alone, as `training._optimizer_step` does it: mask the gradients, clip_grad_norm_, AdamW."""
    models = []
    for k in range(K):
        model, masks = member(k), masks_for(k)
        with torch.no_grad():
            for name, m in masks.items():
                model.get_parameter(name).mul_(m)
        decay = [p for p in model.parameters() if p.ndim == 2]
        rest = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": training.weight_decay},
                                       {"params": rest, "weight_decay": 0.0}], lr=training.learning_rate)
        for step in range(steps):
            x, y = data(step)
            nn.functional.cross_entropy(model(x[k]), y[k]).backward()
            for name, m in masks.items():
                model.get_parameter(name).grad.mul_(m)
            nn.utils.clip_grad_norm_(model.parameters(), training.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        models.append(model)
    return models


def test_the_flat_update_is_each_members_per_tensor_update():
    training = TrainingConfig(learning_rate=0.05, weight_decay=0.1, max_grad_norm=0.5)
    members = [member(k) for k in range(K)]
    for k, model in enumerate(members):
        with torch.no_grad():
            for name, m in masks_for(k).items():
                model.get_parameter(name).mul_(m)
    packed = pack_models(members)
    stacked = {name: torch.stack([masks_for(k)[name] for k in range(K)]).float() for name in masks_for(0)}
    update = FlatUpdate(packed, K, stacked, training)
    assert len(update.optimizer.param_groups) == 2 and sum(len(g["params"]) for g in update.optimizer.param_groups) == 2
    for step in range(4):
        x, y = data(step)
        logits = packed(x.reshape(K * B, D)).reshape(K, B, 2)
        losses = torch.stack([nn.functional.cross_entropy(logits[k], y[k]) for k in range(K)])
        losses.sum().backward()
        assert update.decay.grad.abs().sum() > 0  # autograd added into the flat buffer itself
        update.step()
    for name, mask in stacked.items():  # masked weights exactly zero, every member
        assert torch.all(packed.get_parameter(name).detach()[mask == 0] == 0)
    assert update.revived() == [0, 0, 0]
    reference = per_tensor_reference(training, 4)
    pruned = (stacked["0.weight"][1] == 0).nonzero()[0]  # member 1's first pruned weight, set by hand
    with torch.no_grad():
        packed.get_parameter("0.weight")[1][tuple(pruned)] = 0.5
    assert update.revived() == [0, 1, 0]  # the check that would see a weight revived
    with torch.no_grad():
        packed.get_parameter("0.weight")[1][tuple(pruned)] = 0.0
    for k in range(K):
        unpack_into(packed, k, members[k])
        for (name, got), want in zip(members[k].named_parameters(), reference[k].parameters(), strict=True):
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (k, name, (got - want).abs().max())


def test_a_packed_embedding_reads_a_strided_flat_table():
    members = [nn.Sequential(nn.Embedding(11, 4, padding_idx=0), nn.Linear(4, 2)) for _ in range(K)]
    packed = pack_models(members)
    FlatUpdate(packed, K, {}, TrainingConfig())
    assert not packed[0].weight.is_contiguous()  # a (K, 11, 4) view whose member stride is the whole row
    ids = torch.randint(0, 11, (K * 2, 5))
    got = packed(ids).reshape(K, 2, 5, 2)
    for k in range(K):
        assert torch.allclose(got[k], members[k](ids.reshape(K, 2, 5)[k]), atol=1e-6)
