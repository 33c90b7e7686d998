from pathlib import Path

import numpy as np
import pytest
from conftest import shared_glue, write_tsv
from transformers import AutoTokenizer

from bert_tickets.config import DataConfig
from bert_tickets.errors import UserError
from bert_tickets.tasks import TASKS, get_task

ALL_NINE = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}


def test_all_nine_tasks_are_registered():
    assert set(TASKS) - {"squad", "mlm", "custom"} == ALL_NINE  # custom: your own files (tests/test_own_data.py)
    assert get_task("SST-2").name == "sst2"
    with pytest.raises(UserError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("name", sorted(ALL_NINE))
def test_local_official_files_load(glue_dir, name):
    task = get_task(name)
    splits, sources = task.load_raw(str(glue_dir))
    assert set(splits) == {"train", *task.eval_files} and set(sources) == set(splits)
    train = splits["train"]
    assert len(train) == 48 and isinstance(train[0]["text_a"], str) and train[0]["text_a"]
    assert ("text_b" in train.column_names) == (len(task.file_columns) == 2)
    labels = np.array(train["label"])
    if task.is_regression:
        assert labels.dtype.kind == "f" and labels.min() >= 0 and labels.max() <= 5
    else:
        assert set(labels.tolist()) == set(range(len(task.labels)))


def test_file_quirks(glue_dir):
    cola = get_task("cola").load_raw(str(glue_dir))[0]["train"]
    assert len(cola) == 48 and cola[1]["label"] == 1 and " " in cola[0]["text_a"]  # no header, 4th column
    mrpc = get_task("mrpc").load_raw(str(glue_dir))[0]["train"]  # byte-order mark before "Quality"
    assert mrpc[1]["label"] == 1
    splits, _ = get_task("mnli").load_raw(str(glue_dir))
    assert set(splits) == {"train", "matched", "mismatched"}
    assert splits["matched"]["label"][:3] == [1, 2, 0]  # gold_label, not label1; entailment=0 neutral=1
    rte = get_task("rte").load_raw(str(glue_dir))[0]["train"]
    assert rte["label"][:2] == [0, 1]  # entailment, not_entailment


def test_real_glue_files_load_with_official_sizes():
    root = shared_glue()
    sizes = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "stsb": (5749, 1500),
             "rte": (2490, 277), "wnli": (635, 71)}
    for name, (n_train, n_dev) in sizes.items():
        splits, _ = get_task(name).load_raw(str(root))
        assert (len(splits["train"]), len(splits["validation"])) == (n_train, n_dev), name


def _break(glue_dir: Path, content: bytes) -> str:
    (glue_dir / "RTE" / "dev.tsv").write_bytes(content)
    return str(glue_dir)


@pytest.mark.parametrize(("content", "message"), [
    (b"index\tsentence1\tlabel\n0\ta\tentailment\n", r"missing column\(s\) sentence2"),
    (b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", r"dev.tsv:2: label 'maybe' is not one of"),
    (b"index\tsentence1\tsentence2\tlabel\n", "no examples"),
    (b"", "no examples"),
    (b"index\tsentence1\tsentence2\tlabel\n0\ta\xff\tb\tentailment\n", r"dev.tsv:2: not valid UTF-8"),
    (b"index\tsentence1\tsentence2\tlabel\n0\ta\n", r"dev.tsv:2: expected at least 4"),
])
def test_malformed_files_give_one_clear_error(glue_dir, content, message):
    with pytest.raises(UserError, match=message):
        get_task("rte").load_raw(_break(glue_dir, content))


def test_missing_files_and_bad_regression_labels(glue_dir, tmp_path):
    with pytest.raises(UserError, match="missing data file"):
        get_task("sst2").load_raw(str(tmp_path / "nowhere"))
    write_tsv(glue_dir / "STS-B" / "dev.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "high"]])
    with pytest.raises(UserError, match="label 'high' is not a number"):
        get_task("stsb").load_raw(str(glue_dir))


def test_prepare_tokenizes_subsamples_and_caches(glue_dir, minilm_path, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = DataConfig(task="mrpc", data_dir=str(glue_dir), max_length=16, max_train_samples=20, max_eval_samples=8)
    data = get_task("mrpc").prepare(tokenizer, config)
    assert len(data.train) == 20 and len(data.evals["validation"]) == 8
    assert set(data.train.column_names) >= {"input_ids", "attention_mask", "labels"}
    assert max(len(ids) for ids in data.train["input_ids"]) <= 16
    assert 102 in data.train[0]["input_ids"][1:-1]  # [SEP] between the two sentences
    again = get_task("mrpc").prepare(tokenizer, config)
    assert again.train.cache_files == data.train.cache_files and again.train["input_ids"] == data.train["input_ids"]


def test_scores_are_named_per_split():
    mnli = get_task("mnli")
    logits = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    arrays = {"logits": logits, "labels": np.array([0, 1, 1])}
    assert mnli.score("mismatched", arrays) == {"mismatched_accuracy": pytest.approx(2 / 3)}
    assert mnli.primary_metric == "matched_accuracy"
    arrays = {"logits": np.array([[1.0], [2.0], [3.5]]), "labels": np.array([1.0, 2.0, 3.0])}
    stsb = get_task("stsb").score("validation", arrays)
    assert stsb["pearson"] == pytest.approx(np.corrcoef([1, 2, 3.5], [1, 2, 3])[0, 1]) and stsb["spearman"] == 1.0
    assert get_task("qqp").primary_metric == "accuracy" and get_task("cola").primary_metric == "matthews_correlation"


def test_hub_columns_are_mapped_like_local_files(monkeypatch):
    import datasets

    def fake_hub(path, name, revision=None):
        assert (path, name, revision) == ("nyu-mll/glue", "mnli", "a1b2c3d")  # the pinned revision reaches the Hub
        split = datasets.Dataset.from_dict({"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [2, 0],
                                            "idx": [0, 1]})
        return datasets.DatasetDict(train=split, validation_matched=split, validation_mismatched=split)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    splits, sources = get_task("mnli").load_raw(None, revision="a1b2c3d")
    assert set(splits) == {"train", "matched", "mismatched"}
    assert splits["matched"].column_names == ["text_a", "text_b", "label"]
    assert splits["train"][0] == {"text_a": "p1", "text_b": "h1", "label": 2}


def test_hub_unreachable_says_how_to_use_local_files(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="offline, pass --data-dir"):
        get_task("rte").load_raw(None)


def test_two_revisions_of_a_tokenizer_never_share_a_cache_key(minilm_path, tmp_path):
    import shutil

    from tasks.base import tokenizer_identity

    shutil.copytree(minilm_path, tmp_path / "v2")
    for name in ("tokenizer.json", "vocab.txt"):  # another revision: one word of the vocabulary renamed
        path = tmp_path / "v2" / name
        if path.exists():
            text = path.read_text()
            path.write_text(text.replace('"film"', '"filmz"') if name.endswith(".json") else
                            text.replace("\nfilm\n", "\nfilmz\n"))
    v1, v2 = AutoTokenizer.from_pretrained(minilm_path), AutoTokenizer.from_pretrained(tmp_path / "v2")
    v2.name_or_path = v1.name_or_path  # the same Hub id at another revision
    assert v1("a film")["input_ids"] != v2("a film")["input_ids"]  # they tokenize differently ...
    assert tokenizer_identity(v1) != tokenizer_identity(v2)  # ... so they never share cached tokens
    assert tokenizer_identity(v1) == tokenizer_identity(AutoTokenizer.from_pretrained(minilm_path))
