"""What every task adapter provides to the engine, and helpers the task families share."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bert_tickets.errors import UserError

if TYPE_CHECKING:  # annotations only: the task registry is read by `--help`, which loads no torch
    import numpy as np
    import torch
    from datasets import Dataset


def data_setting(default: Any, help: str, domain: tuple[Callable[[Any], bool], str] | None = None) -> Any:
    """A task's own data setting (`data.<name>`, a field of its `data_settings` dataclass): its default, its help
    for `--help` and docs/reference.md, and where it is numeric the values it may take (a check and its words),
    which the config enforces like every built-in setting's."""
    return field(default=default, metadata={"help": help, "domain": domain})


@dataclass
class PreparedData:
    """Tokenized splits: one training set and one or more named evaluation sets (model inputs only), plus
    per split whatever scoring needs beyond the model's outputs (e.g. SQuAD's offsets and gold answers)."""

    train: Dataset
    evals: dict[str, Dataset]
    extras: dict[str, Any] = field(default_factory=dict)
    # per evaluation split: (examples scored, examples in the whole split; None where not known), so that a score on
    # part of a split (`data.max_eval_samples`) is never presented as the split's
    eval_sizes: dict[str, tuple[int, int | None]] = field(default_factory=dict)


class TaskAdapter(Protocol):
    """The engine's whole view of a task: load and tokenize data, build the head, score predictions; and what
    the config and the Hub release need to know about it."""

    # read-only attributes (properties here, so that a field, a class variable or a property all satisfy them)
    @property
    def name(self) -> str: ...

    @property
    def primary_metric(self) -> str: ...

    @property
    def recipe(self) -> dict[str, Any]:
        """`section.key` settings layered under any preset (e.g. SQuAD's batch 16, lr 3e-5)."""
        ...

    @property
    def language(self) -> str:
        """The data's language, for model cards."""
        ...

    @property
    def task_type(self) -> str:
        """The Hub's task type, for model cards (text-classification, question-answering, fill-mask)."""
        ...

    @property
    def hub_dataset(self) -> str:
        """The Hub dataset the task reads without --data-dir, and a model card names."""
        ...

    @property
    def hub_dataset_config(self) -> str | None: ...

    @property
    def data_settings(self) -> type | None:
        """A dataclass of the task's own `data.*` settings, merged into the config."""
        ...

    def model_class(self) -> Any: ...

    def check_data(self, data_config: Any) -> None:
        """Raise a UserError for data settings this task cannot use (called when the config is validated)."""
        ...

    def model_kwargs(self) -> dict[str, Any]: ...

    def data_source(self, data_config: Any) -> dict[str, Any]:
        """Where the data comes from: {"local_files": [...]} or the Hub dataset, config and revision."""
        ...

    def hub_metric(self, metric: str) -> tuple[str, str]:
        """A score's (Hub split, Hub metric id) for model cards: MNLI's matched_accuracy is ('validation_matched',
        'accuracy'), STS-B's pearson is ('validation', 'pearsonr')."""
        ...

    def prepare(self, tokenizer: Any, data_config: Any, seed: int = 0) -> PreparedData: ...

    def collator(self, tokenizer: Any, train: bool, pad_to_multiple_of: int | None,
                 data: PreparedData | None = None) -> Callable:
        """Batches for training or evaluation; `data` carries what the task prepared (e.g. masked-LM's rate)."""
        ...

    def eval_outputs(self, outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reduce one evaluation batch to per-example tensors (first dimension = batch) for `score`."""
        ...

    def score(self, split: str, arrays: dict[str, np.ndarray], data: PreparedData) -> dict[str, float]: ...

    def constant_scores(self, data: PreparedData) -> dict[str, float] | None:
        """The scores of the best constant prediction on the evaluation splits (a model that learned nothing):
        what a fine-tuning's dev score is judged against; None where the task has none."""
        ...


def read_text(path: Path, task: str) -> tuple[str, str]:
    """A data file's text (UTF-8, a byte-order mark allowed) and a fingerprint of its bytes, or one clear error."""
    if not path.is_file():
        raise UserError(f"{task}: missing data file {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{task}: cannot read {path} ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    return text, fingerprint(str(path), hashlib.sha256(raw).hexdigest())


def hub_source(task: Any, data_config: Any) -> dict[str, Any]:
    """The Hub dataset a task reads without local files, and the revision asked for (None: the default branch)."""
    return {"hub_dataset": task.hub_dataset, "config": task.hub_dataset_config, "revision": data_config.revision}


def subsample(ds: Dataset, limit: int | None, train: bool, seed: int) -> Dataset:
    """At most `limit` examples: a seeded shuffle first for training (so a small subset still has every label),
    the first ones for evaluation (so every run scores the same examples)."""
    if limit is None or limit >= len(ds):
        return ds
    return (ds.shuffle(seed=seed) if train else ds).select(range(limit))


def cache_dir() -> Path:
    """Where tokenized datasets are cached (override with BERT_TICKETS_CACHE)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bert-tickets"
    return Path(os.environ.get("BERT_TICKETS_CACHE", default)) / "tokenized"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_identity(tokenizer: Any) -> list[Any]:
    """What decides a tokenizer's output, for cache keys: its content (vocabulary, normalizer, special tokens), not
    its name, so two revisions of one Hub tokenizer never share a cache entry."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # its padding and truncation are the last call's, not the tokenizer's: left out
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
        content = json.dumps(spec, sort_keys=True)
    else:
        content = json.dumps(sorted(tokenizer.get_vocab().items()))
    return [type(tokenizer).__name__, len(tokenizer), tokenizer.model_max_length,
            hashlib.sha256(content.encode()).hexdigest()[:16]]


def raw_constant_score(task: Any, data_dir: str, max_eval_samples: int | None = None) -> float | None:
    """The task's own best constant prediction (`constant_scores`) on its raw local files, as its primary metric:
    labels are all it reads, so nothing is tokenized (for tasks with `load_raw`: GLUE). The first
    `max_eval_samples` of each evaluation split, as a run with that setting scores them."""
    splits, _ = task.load_raw(data_dir)
    labelled = {name: split.rename_column("label", "labels") for name, split in splits.items()}
    train = labelled.pop("train")
    if max_eval_samples is not None:
        labelled = {name: split.select(range(min(max_eval_samples, len(split)))) for name, split in labelled.items()}
    scores = task.constant_scores(PreparedData(train=train, evals=labelled))
    return None if scores is None else scores.get(task.primary_metric)
