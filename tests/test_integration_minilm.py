"""Two IMP levels on real SST-2 with the pre-trained MiniLM checkpoint (a few hundred examples, CPU)."""

import pytest
import torch
from conftest import shared_glue

from bert_tickets import paths
from bert_tickets.config import load_config
from bert_tickets.engine.masks import prunable_parameters
from bert_tickets.engine.run import ImpRun
from bert_tickets.engine.training import fine_tune
from bert_tickets.files import read_json

pytestmark = pytest.mark.slow
UNTOUCHED = ("embeddings", "LayerNorm", "bias", "classifier")


def test_two_imp_levels_on_real_sst2(tmp_path):
    config = load_config("minilm", {
        "data.task": "sst2", "data.data_dir": str(shared_glue()), "output_dir": str(tmp_path),
        "pruning.sparsity": 0.2, "pruning.rate": 0.1, "training.max_steps": 8, "training.batch_size": 16,
        "data.max_train_samples": 300, "data.max_eval_samples": 200})
    run = ImpRun(config)
    ticket = run.run()

    # sparsity over the prunable set, to 1e-3, level by level
    assert run.sparsities == [0.0, 0.1, 0.2]
    for k in (1, 2):
        assert read_json(paths.sparsity(run.level_dir(k)))["sparsity"] == pytest.approx(run.sparsities[k], abs=1e-3)
    assert ticket.sparsity == pytest.approx(0.2, abs=1e-3)

    # only encoder attention / feed-forward matrices are in the mask: the preset leaves MiniLM's untrained pooler
    assert len(ticket.mask) == 6 * 6 and not any("pooler" in name for name in ticket.mask)
    assert ticket.info["collapsed_matrices"] == {}
    assert not any(word in name for name in ticket.mask for word in UNTOUCHED)

    # the dev metric is computed on the 200 dev examples, for every level, ticket and dense
    for k in range(3):
        accuracy = read_json(paths.metrics(run.level_dir(k)))["metrics"]["accuracy"]
        assert 0.0 <= accuracy <= 1.0 and (accuracy * 200) == pytest.approx(round(accuracy * 200))
    assert set(ticket.info["metrics"]["ticket"]) == set(ticket.info["metrics"]["dense"]) == {"accuracy"}

    # train the ticket again, then look at the weights themselves: pruned ones are exactly zero,
    # everything outside the mask (embeddings, LayerNorms, biases, head) trained freely
    model = run.build_model(seed=5, rewound=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loaded = run.resources
    result = fine_tune(model, loaded.data, run.task, loaded.tokenizer, config.training, loaded.accelerator, seed=5,
                       mask=ticket.mask)
    assert result.revived_weights == 0
    params = prunable_parameters(model, config.pruning.prunable)
    for name, keep in ticket.mask.items():
        assert torch.all(params[name][~keep] == 0), name
        assert torch.all(params[name][keep] != 0), name
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    for word in ("embeddings.word_embeddings", "LayerNorm", "bias", "classifier"):
        assert any(word in n for n in changed), word
