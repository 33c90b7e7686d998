"""Wanda and SparseGPT masks from calibration inputs (Sun et al. 2024; Frantar and Alistarh 2023)."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from bert_tickets import paths
from bert_tickets.cli import main
from bert_tickets.engine.calibration import input_statistics
from bert_tickets.engine.masks import layerwise_magnitude_mask, load_mask, select_prunable
from bert_tickets.engine.pruners import lowest_per_row, sparsegpt_layer, wanda_mask, wanda_scores
from bert_tickets.engine.run import ImpRun
from bert_tickets.files import read_json
from bert_tickets.methods.sparsegpt import RECONSTRUCTED
from bert_tickets.ticket import Ticket
from tests.test_imp import tiny_config


class OneLinear(nn.Module):
    """An encoder of one linear layer whose `input_ids` are its input vectors (known inputs)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lin(input_ids)


def test_wanda_equals_its_formula_and_keeps_the_fraction_in_every_row():
    torch.manual_seed(0)
    weight = torch.randn(6, 10)
    x = torch.randn(2, 5, 10) * torch.linspace(0.1, 3.0, 10)  # columns of very different norms
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    x[1, 3:] = 100.0  # padding: must not count
    norms = input_statistics(OneLinear(weight), [{"input_ids": x, "attention_mask": attention}], ["lin.weight"],
                             gram=False)
    real = x[attention.bool()]
    assert torch.allclose(norms["lin.weight"], (real.double() ** 2).sum(0))
    scores = wanda_scores({"lin.weight": weight}, norms)
    expected = weight.abs().double() * real.double().norm(dim=0)
    assert torch.allclose(scores["lin.weight"], expected)
    mask = wanda_mask(scores, 0.3, "row")["lin.weight"]
    assert (mask.sum(1) == 7).all()  # 3 of 10 pruned in every row
    for row in range(6):  # and they are that row's 3 lowest scores
        assert set(torch.nonzero(~mask[row]).flatten().tolist()) == set(expected[row].argsort()[:3].tolist())
    assert lowest_per_row({"w": torch.tensor([[3.0, 1.0, 2.0]])}, 0.34)["w"].tolist() == [[True, False, True]]
    globally = wanda_mask(scores, 0.3, "global")["lin.weight"]
    assert int((~globally).sum()) == 18 and not torch.equal(globally, mask)


def test_sparsegpt_reconstructs_a_layers_outputs_better_than_its_magnitude_mask(minilm_path, glue_dir):
    """On MiniLM's own layers and inputs (sentences of the SST-2 train file): the error of the layer's outputs,
    ‖X (W' − W)ᵀ‖ = sqrt(tr((W' − W) H (W' − W)ᵀ)), is below the magnitude mask's at the same sparsity."""
    tokenizer, encoder = AutoTokenizer.from_pretrained(minilm_path), AutoModel.from_pretrained(minilm_path)
    lines = [line.split("\t")[0] for line in (glue_dir / "SST-2" / "train.tsv").read_text().splitlines()[1:33]]
    batches = [dict(tokenizer(lines[i:i + 16], padding=True, return_tensors="pt")) for i in range(0, len(lines), 16)]
    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.3.output.dense.weight"]
    grams = input_statistics(encoder, batches, names, gram=True)
    weights = dict(encoder.named_parameters())
    for name in names:
        weight, gram = weights[name].detach().double(), grams[name]

        def output_error(pruned: torch.Tensor, weight: torch.Tensor = weight, gram: torch.Tensor = gram) -> float:
            d = pruned.double() - weight
            return float(torch.trace(d @ gram @ d.T).sqrt())

        pruned, keep = sparsegpt_layer(weight, gram, 0.5)
        assert int((~keep).sum()) == weight.numel() // 2 and bool((pruned[~keep] == 0).all())
        everything = {"w": torch.ones_like(weight, dtype=torch.bool)}
        magnitude = weight * layerwise_magnitude_mask({"w": weight}, everything, 0.5)["w"]
        assert output_error(pruned) < 0.9 * output_error(magnitude), name


def test_padding_leaves_the_statistics_unchanged(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    encoder = AutoModel.from_pretrained(tiny_bert)
    texts = ["a short one", "a much longer sentence than the first, with many more words in it", "mid length text"]
    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.1.output.dense.weight",
             "pooler.dense.weight"]
    padded = [dict(tokenizer(texts, padding=True, return_tensors="pt"))]
    alone = [dict(tokenizer([t], return_tensors="pt")) for t in texts]
    assert padded[0]["attention_mask"].sum() < padded[0]["attention_mask"].numel()  # there is padding
    for gram in (False, True):
        with_padding, without = (input_statistics(encoder, b, names, gram) for b in (padded, alone))
        for name in names:
            assert torch.allclose(with_padding[name], without[name], rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("method", ["wanda", "sparsegpt_mask", "sparsegpt"])
def test_data_aware_masks_are_keyed_like_every_mask_and_evaluate_as_tickets(method, tiny_bert, glue_dir, tmp_path,
                                                                          capsys):
    run = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{
        "pruning.method": method, "pruning.sparsity": 0.5, "pruning.calibration_samples": 16}))
    ticket = run.run()
    prunable = select_prunable(run.theta0(), run.config.pruning.prunable)
    assert set(ticket.mask) == set(prunable)
    for name, keep in ticket.mask.items():  # half of each matrix (of each row, for Wanda's default)
        assert int((~keep).sum()) == keep.numel() // 2, name
    if method == "sparsegpt":  # its fine-tunings start from the reconstructed weights, not θ0
        reconstructed = load_file(str(run.method_file(RECONSTRUCTED)))
        model = run.build_model(0, rewound=True)
        weight = model.bert.encoder.layer[0].attention.self.query.weight
        assert torch.equal(weight, reconstructed["encoder.layer.0.attention.self.query.weight"])
        assert not torch.equal(weight * ticket.mask["encoder.layer.0.attention.self.query.weight"],
                               prunable["encoder.layer.0.attention.self.query.weight"]
                               * ticket.mask["encoder.layer.0.attention.self.query.weight"])
    assert load_mask(paths.mask(ticket.path)).keys() == ticket.mask.keys()
    args = ["evaluate", "--ticket", str(ticket.path), "--task", "rte", "--data-dir", str(glue_dir), "--output-dir",
            str(tmp_path / "evals"), "--max-steps", "2", "--batch-size", "8", "--max-length", "32"]
    assert main(args) == 0
    evaluated = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated.task == "rte" and all(torch.equal(evaluated.mask[n], m) for n, m in ticket.mask.items())


def test_each_mask_records_what_finding_it_cost(tiny_bert, glue_dir, tmp_path):
    """IMP pays for its levels' fine-tunings; a one-shot mask that sees data pays one calibration pass."""
    imp = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.sparsity": 0.2, "pruning.rate": 0.1}))
    cost = imp.run().info["mask_cost"]
    levels = [read_json(paths.metrics(imp.level_dir(k))) for k in (0, 1)]  # level 2 fine-tunes the 20% mask
    assert cost["levels_trained"] == 2 and cost["fine_tuning_steps"] == 8 == sum(r["steps"] for r in levels)
    assert cost["seconds"]["fine_tuning"] == pytest.approx(sum(r["seconds"] for r in levels), abs=0.02)
    assert cost["seconds"]["making_masks"] >= 0
    wanda = ImpRun(tiny_config(tiny_bert, glue_dir, tmp_path, **{"pruning.method": "wanda", "pruning.sparsity": 0.2}))
    cost = wanda.run().info["mask_cost"]
    assert (cost["levels_trained"], cost["fine_tuning_steps"], cost["seconds"]["fine_tuning"]) == (0, 0, 0)
    assert cost["seconds"]["making_masks"] == read_json(paths.mask_cost(wanda.level_dir(1)))["seconds"] > 0


def test_every_method_has_a_colour_of_its_own_in_the_figures():
    from bert_tickets.methods import METHODS
    from bert_tickets.studies.report import arm_color

    colours = [arm_color(name) for name in METHODS]
    assert len(set(colours)) == len(colours) and arm_color("dense") not in colours


def test_the_report_sets_each_masks_score_against_its_cost(tiny_bert, glue_dir, tmp_path):
    import csv

    spec = tmp_path / "cost.yaml"
    spec.write_text(f"""
name: cost
data_dir: {glue_dir}
settings: {{model.name: {tiny_bert}, training.max_steps: 2, training.batch_size: 8, data.max_length: 32,
           pruning.rate: 0.1, pruning.calibration_samples: 16}}
tasks: [sst2]
sparsities: [0.2]
baselines: [magnitude, wanda]
seeds: 2
""")
    assert main(["study", str(spec), "--output-dir", str(tmp_path / "study")]) == 0
    report = tmp_path / "study" / "report"
    rows = {r["method"]: r for r in csv.DictReader((report / "cost.csv").open())}
    assert set(rows) == {"imp", "magnitude", "wanda"} and (report / "cost.png").stat().st_size > 0
    assert rows["imp"]["levels_trained"] == "2" and rows["imp"]["fine_tuning_steps"] == "4"  # levels 0 and 1
    assert rows["imp"]["fraction_of_imp"] == "1.0"
    assert rows["wanda"]["fine_tuning_steps"] == "0" and float(rows["wanda"]["fraction_of_imp"]) > 0
    assert "## Score against the compute of finding the mask" in (report / "README.md").read_text()
