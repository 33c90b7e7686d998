import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, BertConfig, BertModel

from bert_tickets.config import DEFAULT_PRUNABLE
from bert_tickets.engine.masks import (
    MaskEnforcer,
    apply_mask,
    full_mask,
    global_magnitude_mask,
    load_mask,
    prunable_parameters,
    random_mask,
    save_mask,
    sparsity_report,
)
from bert_tickets.errors import UserError

EXCLUDED = ("embeddings", "LayerNorm", "bias", "classifier")


def _classifier(path, num_labels=2):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)


def test_bert_prunable_set_is_the_papers(tiny_bert):
    params = prunable_parameters(_classifier(tiny_bert), DEFAULT_PRUNABLE)
    layers = [n for n in params if n.startswith("encoder.layer.")]
    assert len(layers) == 2 * 6  # query, key, value, attention output, intermediate, output per layer
    assert "pooler.dense.weight" in params and len(params) == 13
    assert not any(word in name for name in params for word in EXCLUDED)
    assert all(not n.startswith("bert.") for n in params)  # keys are relative to the encoder


def test_roberta_prunable_set(tiny_roberta):
    model = _classifier(tiny_roberta)
    params = prunable_parameters(model, DEFAULT_PRUNABLE)
    assert len(params) == 2 * 6  # RobertaForSequenceClassification has no pooler
    assert not any(word in name for name in params for word in EXCLUDED)
    assert set(params) == {n for n in prunable_parameters(_classifier(tiny_roberta, 3), DEFAULT_PRUNABLE)}


def test_global_magnitude_pruning_uses_one_threshold():
    weights = {"a": torch.tensor([[0.1, 0.2], [0.3, 0.4]]), "b": torch.tensor([[5.0, -0.05], [6.0, 7.0]])}
    mask = global_magnitude_mask(weights, full_mask(weights), 0.5)
    assert mask["a"].tolist() == [[False, False], [False, True]]  # 0.05, 0.1, 0.2, 0.3 are the smallest
    assert mask["b"].tolist() == [[True, False], [True, True]]
    assert sparsity_report(mask)["sparsity"] == 0.5
    assert sparsity_report(mask)["per_matrix"] == {"a": 0.75, "b": 0.25}


def test_pruning_only_removes_survivors_and_counts_from_the_original_set():
    torch.manual_seed(0)
    weights = {"a": torch.randn(30, 20), "b": torch.randn(50)}
    first = global_magnitude_mask(weights, full_mask(weights), 0.1)
    regrown = {n: torch.where(first[n], w, torch.full_like(w, 100.0)) for n, w in weights.items()}
    second = global_magnitude_mask(regrown, first, 0.2)  # pruned weights that grew stay pruned
    for n in weights:
        assert not (second[n] & ~first[n]).any()
    assert sparsity_report(second)["remaining_weights"] == 650 - round(0.2 * 650)
    with pytest.raises(ValueError, match="below the mask's current"):
        global_magnitude_mask(weights, second, 0.1)


def test_ties_are_broken_by_position_deterministically():
    weights = {"a": torch.ones(4, 4), "b": torch.ones(8)}
    mask = global_magnitude_mask(weights, full_mask(weights), 0.25)
    again = global_magnitude_mask(weights, full_mask(weights), 0.25)
    assert all(torch.equal(mask[n], again[n]) for n in weights)
    assert mask["a"].flatten().tolist() == [False] * 6 + [True] * 10  # 6 = 0.25 * 24, the first positions


def test_random_mask_has_the_exact_sparsity():
    shapes = {"a": torch.empty(64, 32), "b": torch.empty(100)}
    mask = random_mask(shapes, 0.7, seed=1)
    assert sparsity_report(mask)["remaining_weights"] == 2148 - round(0.7 * 2148)
    assert not torch.equal(mask["a"], random_mask(shapes, 0.7, seed=2)["a"])


def test_mask_file_is_bitmasks_keyed_by_encoder_names(tiny_bert, tmp_path):
    params = prunable_parameters(_classifier(tiny_bert), DEFAULT_PRUNABLE)
    mask = global_magnitude_mask(params, full_mask(params), 0.3)
    save_mask(tmp_path / "mask.safetensors", mask)
    loaded = load_mask(tmp_path / "mask.safetensors")
    assert set(loaded) == set(params) and all(m.dtype == torch.bool for m in loaded.values())
    assert all(torch.equal(loaded[n], mask[n]) for n in mask)
    as_numpy = load_numpy(str(tmp_path / "mask.safetensors"))  # plain safetensors, readable anywhere
    bits, shape = as_numpy["pooler.dense.weight.bitmask"], as_numpy["pooler.dense.weight.shape"]
    assert bits.dtype == np.uint8 and list(shape) == list(mask["pooler.dense.weight"].shape)
    unpacked = np.unpackbits(bits, axis=-1, count=int(shape[-1]), bitorder="little").astype(bool)
    assert (unpacked == mask["pooler.dense.weight"].numpy()).all()  # compressed-tensors' bitmask layout
    assert not list(tmp_path.glob("*.tmp"))


def test_a_mask_applies_across_heads(tiny_bert):
    params = prunable_parameters(_classifier(tiny_bert), DEFAULT_PRUNABLE)
    mask = global_magnitude_mask(params, full_mask(params), 0.5)
    for other in (AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=5),
                  BertModel.from_pretrained(tiny_bert), _classifier(tiny_bert, num_labels=3)):
        apply_mask(other, mask)
        pruned = prunable_parameters(other, DEFAULT_PRUNABLE)
        assert all(torch.all(pruned[n][~mask[n]] == 0) for n in pruned)
        assert set(mask) - set(pruned) <= {"pooler.dense.weight"}  # token classifiers have no pooler
        if "pooler.dense.weight" in pruned:
            assert sparsity_report({n: p != 0 for n, p in pruned.items()})["sparsity"] == pytest.approx(0.5, abs=1e-6)


def test_a_mask_that_does_not_fit_is_a_clear_error(tiny_bert, tiny_roberta):
    params = prunable_parameters(_classifier(tiny_bert), DEFAULT_PRUNABLE)
    mask = full_mask(params)
    wider = BertModel(BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64))
    with pytest.raises(UserError, match="has shape"):
        apply_mask(wider, mask)
    deeper_mask = mask | {"encoder.layer.7.output.dense.weight": torch.ones(32, 64, dtype=torch.bool)}
    with pytest.raises(UserError, match="not in its encoder"):
        apply_mask(_classifier(tiny_bert), deeper_mask)
    apply_mask(_classifier(tiny_roberta), mask)  # same shapes; the pooler entry has nowhere to go: skipped


def _train(model, mask, enforce: bool, steps: int = 15, fused: bool = False):
    """As the engine does: gradients masked before each step, weights never touched again."""
    enforcer = MaskEnforcer(model, mask) if enforce else None
    if not enforce:
        apply_mask(model, mask)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)
    torch.manual_seed(0)
    for _ in range(steps):
        ids = torch.randint(5, 1000, (4, 12))
        loss = model(input_ids=ids, labels=torch.randint(0, 2, (4,))).loss
        loss.backward()
        if enforcer:
            enforcer.mask_gradients()
        optimizer.step()
        optimizer.zero_grad()
    return optimizer


@pytest.mark.parametrize("fused", [False, True])  # the fused kernel is what a GPU run uses
def test_masked_weights_stay_exactly_zero_through_adamw(tiny_bert, fused):
    model = _classifier(tiny_bert)
    params = prunable_parameters(model, DEFAULT_PRUNABLE)
    mask = global_magnitude_mask(params, full_mask(params), 0.6)
    optimizer = _train(model, mask, enforce=True, fused=fused)
    for name, p in prunable_parameters(model, DEFAULT_PRUNABLE).items():
        assert torch.all(p[~mask[name]] == 0)
        state = optimizer.state[p]
        assert torch.all(state["exp_avg"][~mask[name]] == 0) and torch.all(state["exp_avg_sq"][~mask[name]] == 0)
    assert MaskEnforcer(model, mask).count_revived() == 0
    # The control: without enforcement, training revives pruned weights, so the check above can fail.
    control = _classifier(tiny_bert)
    _train(control, mask, enforce=False)
    revived = sum(int((p[~mask[n]] != 0).sum()) for n, p in prunable_parameters(control, DEFAULT_PRUNABLE).items())
    assert revived > 0


def test_a_matrix_emptied_by_the_global_threshold_is_flagged():
    from bert_tickets.engine.masks import collapse_warning, magnitude_outliers

    torch.manual_seed(0)
    weights = {f"encoder.layer.{i}.output.dense.weight": torch.randn(16, 16) for i in range(3)}
    weights["pooler.dense.weight"] = 1e-3 * torch.randn(16, 16)  # an untrained layer: tiny weights
    report = sparsity_report(global_magnitude_mask(weights, full_mask(weights), 0.3))
    assert report["per_matrix"]["pooler.dense.weight"] == 1.0  # emptied first by the one threshold
    assert report["collapsed"] == {"pooler.dense.weight": 1.0}
    assert "pooler.dense.weight 100.0%" in collapse_warning(report)
    assert set(magnitude_outliers(weights)) == {"pooler.dense.weight"}
    healthy = sparsity_report(global_magnitude_mask(weights, full_mask(weights), 0.1) | {
        "pooler.dense.weight": torch.ones(16, 16, dtype=torch.bool)})
    assert healthy["collapsed"] == {} and collapse_warning(healthy) is None


def test_layerwise_scope_prunes_each_matrix_to_the_level():
    from bert_tickets.engine.masks import magnitude_mask

    torch.manual_seed(0)
    weights = {"a": torch.randn(10, 10), "b": 1e-3 * torch.randn(20, 5)}
    mask = magnitude_mask(weights, full_mask(weights), 0.3, scope="layerwise")
    assert sparsity_report(mask)["per_matrix"] == {"a": pytest.approx(0.3), "b": pytest.approx(0.3)}
    for name, w in weights.items():  # within a matrix, still the smallest magnitudes
        assert w[~mask[name]].abs().max() <= w[mask[name]].abs().min()
    again = magnitude_mask(weights, mask, 0.5, scope="layerwise")  # survivors only, counted from the original
    assert all(not (again[n] & ~mask[n]).any() for n in weights)
    assert sparsity_report(again)["per_matrix"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    one_threshold = sparsity_report(magnitude_mask(weights, full_mask(weights), 0.3))["per_matrix"]
    assert one_threshold["b"] > 0.55 and one_threshold["a"] < 0.05  # global: the small matrix goes first
