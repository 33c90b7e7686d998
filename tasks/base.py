"""What every task adapter provides to the engine, and helpers the task families share."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from datasets import Dataset


@dataclass
class PreparedData:
    """Tokenized splits: one training set and one or more named evaluation sets."""

    train: Dataset
    evals: dict[str, Dataset]


class TaskAdapter(Protocol):
    """The engine's whole view of a task: load and tokenize data, build the head, score predictions."""

    name: str
    primary_metric: str

    def model_class(self) -> Any: ...

    def model_kwargs(self) -> dict[str, Any]: ...

    def prepare(self, tokenizer: Any, data_config: Any, seed: int = 0) -> PreparedData: ...

    def score(self, split: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]: ...


def cache_dir() -> Path:
    """Where tokenized datasets are cached (override with BERT_TICKETS_CACHE)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bert-tickets"
    return Path(os.environ.get("BERT_TICKETS_CACHE", default)) / "tokenized"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_identity(tokenizer: Any) -> list[Any]:
    """What decides a tokenizer's output, for cache keys."""
    return [tokenizer.name_or_path, type(tokenizer).__name__, len(tokenizer), tokenizer.model_max_length]
