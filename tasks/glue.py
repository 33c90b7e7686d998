"""The nine GLUE tasks as data: where their files are, which columns hold text and label, which metrics.

One family class (`GlueTask`) holds the code: reading the Hub dataset `nyu-mll/glue` or an official
`glue_data` folder, tokenizing sentence (pairs) with `datasets.map` (cached), and scoring.
Adding a GLUE-like task is one more `GlueTask(...)` record.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bert_tickets import metrics
from bert_tickets.errors import UserError
from bert_tickets.tasks.base import (
    PreparedData,
    cache_dir,
    fingerprint,
    hub_source,
    read_text,
    subsample,
    tokenizer_identity,
)

if TYPE_CHECKING:  # datasets, torch and transformers load where they are used: `--help` reads the tasks without them
    import torch
    from datasets import Dataset

HUB_DATASET = "nyu-mll/glue"
HUB_METRIC_IDS = {"pearson": "pearsonr", "spearman": "spearmanr"}  # our score names -> the Hub's metric ids
Column = str | int  # a header name, or a 0-based index for header-less files (CoLA)


@dataclass(frozen=True)
class GlueTask:
    name: str
    hub_config: str
    folder: str  # the task's folder inside glue_data
    hub_columns: tuple[str, ...]  # one or two text columns in the Hub dataset
    file_columns: tuple[Column, ...]  # the same text columns in the official TSV
    file_label: Column
    labels: tuple[str, ...] | None  # label strings in the TSV, in id order; None for regression
    metric_names: tuple[str, ...]
    primary: str
    eval_files: dict[str, str] = field(default_factory=lambda: {"validation": "dev.tsv"})
    hub_eval_splits: dict[str, str] = field(default_factory=lambda: {"validation": "validation"})
    has_header: bool = True
    recipe: dict[str, Any] = field(default_factory=dict)  # the code defaults are the paper's GLUE recipe
    label_names: tuple[str, ...] | None = None  # the Hub dataset's names of the label ids, for id2label
    task_type: ClassVar[str] = "text-classification"
    language: ClassVar[str] = "en"
    hub_dataset: ClassVar[str] = HUB_DATASET
    data_settings: ClassVar[type | None] = None  # the common data settings are all GLUE needs

    @property
    def hub_dataset_config(self) -> str | None:
        return self.hub_config

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def label_dtype(self) -> str:
        return "float32" if self.is_regression else "int64"

    @property
    def primary_metric(self) -> str:
        return self.metric_key(next(iter(self.eval_files)), self.primary)

    def metric_key(self, split: str, metric: str) -> str:
        return metric if len(self.eval_files) == 1 else f"{split}_{metric}"

    # --- model -----------------------------------------------------------------------------------
    def check_data(self, data_config: Any) -> None:
        """Its data settings are all the common ones, checked by the config."""

    def model_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self) -> dict[str, Any]:
        if self.labels is None:  # regression
            return {"num_labels": 1, "problem_type": "regression"}
        names = self.label_names or self.labels
        return {"num_labels": len(self.labels), "problem_type": "single_label_classification",
                "id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}

    def hub_metric(self, metric: str) -> tuple[str, str]:
        for split, hub_split in self.hub_eval_splits.items():
            for name in self.metric_names:
                if self.metric_key(split, name) == metric:
                    return hub_split, HUB_METRIC_IDS.get(name, name)
        raise KeyError(f"{self.name} has no metric {metric!r}")

    # --- data ------------------------------------------------------------------------------------
    def load_raw(self, data_dir: str | None, revision: str | None = None) -> tuple[dict[str, Dataset], dict[str, str]]:
        """Untokenized splits with columns text_a[, text_b], label; plus a fingerprint of each source."""
        if data_dir is None:
            return self._load_hub(revision)
        splits, sources = {}, {}
        for split, path in self._local_files(data_dir).items():
            splits[split], sources[split] = read_tsv(self, path)
        return splits, sources

    def _local_files(self, data_dir: str) -> dict[str, Path]:
        folder = Path(data_dir) / self.folder
        if not folder.is_dir():
            folder = Path(data_dir)  # a folder holding this task's files directly
        return {split: folder / name for split, name in {"train": "train.tsv", **self.eval_files}.items()}

    def data_source(self, data_config: Any) -> dict[str, Any]:
        """Where the data comes from, for ticket.json and the model card."""
        if data_config.data_dir is None:
            return hub_source(self, data_config)
        return {"local_files": [str(p) for p in self._local_files(data_config.data_dir).values()],
                "official_format_of": HUB_DATASET}

    def _load_hub(self, revision: str | None) -> tuple[dict[str, Dataset], dict[str, str]]:
        import datasets

        try:
            hub = datasets.load_dataset(HUB_DATASET, self.hub_config, revision=revision)
        except Exception as exc:
            raise UserError(f"could not load {HUB_DATASET}/{self.hub_config} from the Hub ({type(exc).__name__}); "
                            "offline, pass --data-dir pointing at a glue_data folder") from None
        names = {"train": "train", **self.hub_eval_splits}
        splits, sources = {}, {}
        for split, hub_split in names.items():
            ds = hub[hub_split]
            renamed = {col: f"text_{'ab'[i]}" for i, col in enumerate(self.hub_columns)}
            splits[split] = ds.select_columns([*self.hub_columns, "label"]).rename_columns(renamed)
            sources[split] = ds._fingerprint
        return splits, sources

    def prepare(self, tokenizer: Any, data_config: Any, seed: int = 0) -> PreparedData:
        splits, sources = self.load_raw(data_config.data_dir, data_config.revision)
        limits = {"train": data_config.max_train_samples}
        prepared: dict[str, Dataset] = {}
        sizes: dict[str, tuple[int, int | None]] = {}
        for split, ds in splits.items():
            limit = limits.get(split, data_config.max_eval_samples)
            whole = len(ds)
            ds = subsample(ds, limit, split == "train", seed)
            sizes[split] = (len(ds), whole)
            key = fingerprint(self.name, split, sources[split], limit, seed, data_config.max_length,
                              tokenizer_identity(tokenizer))
            prepared[split] = self._tokenize(ds, tokenizer, data_config.max_length, key)
        sizes.pop("train")
        return PreparedData(train=prepared.pop("train"), evals=prepared, eval_sizes=sizes)

    def _tokenize(self, ds: Dataset, tokenizer: Any, max_length: int, key: str) -> Dataset:
        pair = "text_b" in ds.column_names

        def encode(batch: dict[str, list]) -> dict[str, list]:
            texts = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
            return tokenizer(*texts, truncation=True, max_length=max_length)

        path = cache_dir() / f"{self.name}-{key}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = ds.map(encode, batched=True, remove_columns=[c for c in ds.column_names if c != "label"],
                    cache_file_name=str(path), desc=f"tokenizing {self.name}")
        return ds.rename_column("label", "labels")

    # --- scoring ---------------------------------------------------------------------------------
    def collator(self, tokenizer: Any, train: bool, pad_to_multiple_of: int | None, data: Any = None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def eval_outputs(self, outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": outputs.logits.float(), "labels": batch["labels"]}

    def score(self, split: str, arrays: dict[str, np.ndarray], data: Any = None) -> dict[str, float]:
        logits = arrays["logits"]
        predictions = logits.reshape(-1) if self.is_regression else logits.argmax(-1)
        scores = metrics.compute(self.metric_names, predictions, arrays["labels"], regression=self.is_regression)
        return {self.metric_key(split, name): value for name, value in scores.items()}

    def constant_scores(self, data: Any) -> dict[str, float]:
        return majority_class_scores(self, data)




ENTAILMENT = ("entailment", "not_entailment")
def majority_class_scores(task: GlueTask, data: Any) -> dict[str, float]:
    """The training set's majority class predicted for every evaluation example (classification); a constant for
    regression, whose correlations are 0 by definition (undefined for a constant: no linear relation)."""
    if task.is_regression:
        return {task.metric_key(split, name): 0.0 for split in data.evals for name in task.metric_names}
    majority = int(np.bincount(np.asarray(data.train["labels"], dtype=np.int64)).argmax())
    scores: dict[str, float] = {}
    for split, dataset in data.evals.items():
        labels = np.asarray(dataset["labels"])
        found = metrics.compute(task.metric_names, np.full(len(labels), majority), labels, regression=False)
        scores.update({task.metric_key(split, name): value for name, value in found.items()})
    return scores


def read_tsv(task: GlueTask, path: Path) -> tuple[Dataset, str]:
    """One split from an official glue_data TSV file: text columns and labels, or one clear error."""
    from datasets import Dataset, Features, Value

    text, source = read_text(path, task.name)  # MRPC's files start with a byte-order mark
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        rows = list(reader)
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise UserError(f"{path}:{reader.line_num}: unreadable row ({exc})") from None
    if not rows:
        raise UserError(f"{path}: no examples (empty file)")
    header: list[str] = rows.pop(0) if task.has_header else []
    index = _column_indices(task, path, header)
    columns: dict[str, list[Any]] = {f"text_{'ab'[i]}": [] for i in range(len(task.file_columns))}
    columns["label"] = []
    for line_no, row in enumerate(rows, start=2 if task.has_header else 1):
        if not row:
            continue
        if len(row) <= max(index.values()):
            raise UserError(f"{path}:{line_no}: expected at least {max(index.values()) + 1} "
                            f"tab-separated columns, found {len(row)}")
        for name, i in index.items():
            columns[name].append(parse_label(task.labels, path, line_no, row[i]) if name == "label" else row[i])
    if not columns["label"]:
        raise UserError(f"{path}: no examples (empty split)")
    features = Features({name: Value("string") for name in columns if name != "label"}
                        | {"label": Value(task.label_dtype)})
    return Dataset.from_dict(columns, features=features), source

def _column_indices(task: GlueTask, path: Path, header: list[str]) -> dict[str, int]:
    wanted = {f"text_{'ab'[i]}": c for i, c in enumerate(task.file_columns)} | {"label": task.file_label}
    if not task.has_header:
        return dict(wanted)  # type: ignore[arg-type]
    missing = [str(c) for c in wanted.values() if c not in header]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (header has: {', '.join(header)})")
    return {name: header.index(c) for name, c in wanted.items()}  # type: ignore[arg-type]


PLAIN_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_label(labels: tuple[str, ...] | None, path: Path, line_no: int, value: str) -> float | int:
    """A TSV label: a number for regression (`labels` None), else the index of the label string."""
    value = value.strip()
    if labels is None:
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"{path}:{line_no}: label {value!r} is not a number") from None
        if not math.isfinite(number):
            raise UserError(f"{path}:{line_no}: label {value!r} is not a finite number")
        if not PLAIN_DECIMAL.fullmatch(value):  # float() also takes 1_000 and other scripts' digits (٣)
            raise UserError(f"{path}:{line_no}: label {value!r} is not a plain decimal number")
        return number
    if value in labels:
        return labels.index(value)
    raise UserError(f"{path}:{line_no}: label {value!r} is not one of {', '.join(labels)}")


PAIR = ("sentence1", "sentence2")

GLUE_TASKS = [
    GlueTask("cola", "cola", "CoLA", ("sentence",), (3,), 1, ("0", "1"),
             ("matthews_correlation",), "matthews_correlation", has_header=False,
             label_names=("unacceptable", "acceptable")),
    GlueTask("sst2", "sst2", "SST-2", ("sentence",), ("sentence",), "label", ("0", "1"),
             ("accuracy",), "accuracy", label_names=("negative", "positive")),
    GlueTask("mrpc", "mrpc", "MRPC", PAIR, ("#1 String", "#2 String"), "Quality", ("0", "1"),
             ("accuracy", "f1"), "accuracy", label_names=("not_equivalent", "equivalent")),
    GlueTask("stsb", "stsb", "STS-B", PAIR, PAIR, "score", None, ("pearson", "spearman"), "pearson"),
    GlueTask("qqp", "qqp", "QQP", ("question1", "question2"), ("question1", "question2"), "is_duplicate",
             ("0", "1"), ("accuracy", "f1"), "accuracy", label_names=("not_duplicate", "duplicate")),
    GlueTask("mnli", "mnli", "MNLI", ("premise", "hypothesis"), PAIR, "gold_label",
             ("entailment", "neutral", "contradiction"), ("accuracy",), "accuracy",
             eval_files={"matched": "dev_matched.tsv", "mismatched": "dev_mismatched.tsv"},
             hub_eval_splits={"matched": "validation_matched", "mismatched": "validation_mismatched"}),
    GlueTask("qnli", "qnli", "QNLI", ("question", "sentence"), ("question", "sentence"), "label", ENTAILMENT,
             ("accuracy",), "accuracy"),
    GlueTask("rte", "rte", "RTE", PAIR, PAIR, "label", ENTAILMENT, ("accuracy",), "accuracy"),
    GlueTask("wnli", "wnli", "WNLI", PAIR, PAIR, "label", ("0", "1"), ("accuracy",), "accuracy",
             label_names=("not_entailment", "entailment")),
]
