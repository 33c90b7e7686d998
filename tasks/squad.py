"""SQuAD v1.1: extractive question answering.

Contexts longer than the window are split into overlapping windows (`data.max_length`, stride
`data.doc_stride`); a training window whose span does not contain the answer is labelled with the [CLS]
position. Evaluation takes the n-best start/end pairs of every window of an example, keeps spans inside the
context of at most `data.max_answer_length` tokens, and scores the best with the official v1.1 metrics.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bert_tickets import metrics
from bert_tickets.errors import UserError
from bert_tickets.tasks.base import (
    PreparedData,
    cache_dir,
    data_setting,
    fingerprint,
    hub_source,
    read_text,
    subsample,
    tokenizer_identity,
)

if TYPE_CHECKING:  # datasets, torch and transformers load where they are used: `--help` reads the tasks without them
    import torch
    from datasets import Dataset, Features

HUB_DATASET = "rajpurkar/squad"
FILES = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}
MODEL_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]
N_BEST = 20


def raw_features() -> Features:
    """The columns of a raw split, whether read from the official files or the Hub."""
    from datasets import Features, Sequence, Value

    return Features({"id": Value("string"), "question": Value("string"), "context": Value("string"),
                     "answer_texts": Sequence(Value("string")), "answer_starts": Sequence(Value("int64"))})


@dataclass
class SquadData:
    """SQuAD's own data settings (`data.doc_stride`, `data.max_answer_length`)."""

    doc_stride: int = data_setting(128, "SQuAD: overlap of consecutive windows of a long context",
                                   (lambda v: 1 <= v <= 65_536, "in [1, 65536]"))
    max_answer_length: int = data_setting(30, "SQuAD: longest predicted answer, in tokens",
                                          (lambda v: 1 <= v <= 65_536, "in [1, 65536]"))


@dataclass(frozen=True)
class SquadTask:
    name: str = "squad"
    primary_metric: str = "f1"
    task_type: ClassVar[str] = "question-answering"
    language: ClassVar[str] = "en"
    hub_dataset: ClassVar[str] = HUB_DATASET
    hub_dataset_config: ClassVar[str | None] = None
    data_settings: ClassVar[type | None] = SquadData
    # The paper's SQuAD recipe, on top of the GLUE defaults.
    recipe: dict[str, Any] = field(default_factory=lambda: {
        "training.batch_size": 16, "training.learning_rate": 3e-5, "training.epochs": 2.0, "data.max_length": 384})

    def model_class(self) -> Any:
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def check_data(self, data_config: Any) -> None:
        if data_config.doc_stride >= data_config.max_length:
            raise UserError(f"data.doc_stride must be below data.max_length ({data_config.max_length}), "
                            f"got {data_config.doc_stride}")

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def hub_metric(self, metric: str) -> tuple[str, str]:
        return "validation", metric  # the Hub's ids already

    # --- data ------------------------------------------------------------------------------------
    def data_source(self, data_config: Any) -> dict[str, Any]:
        if data_config.data_dir is None:
            return hub_source(self, data_config)
        return {"local_files": [str(Path(data_config.data_dir) / f) for f in FILES.values()],
                "official_format_of": HUB_DATASET}

    def load_raw(self, data_dir: str | None, revision: str | None = None) -> tuple[dict[str, Dataset], dict[str, str]]:
        if data_dir is None:
            return self._load_hub(revision)
        splits, sources = {}, {}
        for split, filename in FILES.items():
            path = Path(data_dir) / filename
            splits[split], sources[split] = read_squad_json(path)
        return splits, sources

    def _load_hub(self, revision: str | None) -> tuple[dict[str, Dataset], dict[str, str]]:
        import datasets

        try:
            hub = datasets.load_dataset(HUB_DATASET, revision=revision)
        except Exception as exc:
            raise UserError(f"could not load {HUB_DATASET} from the Hub ({type(exc).__name__}); offline, pass "
                            "--data-dir holding train-v1.1.json and dev-v1.1.json") from None

        def flatten(batch: dict[str, list]) -> dict[str, list]:
            return {"answer_texts": [a["text"] for a in batch["answers"]],
                    "answer_starts": [a["answer_start"] for a in batch["answers"]]}

        splits = {s: hub[s].map(flatten, batched=True, remove_columns=["answers", "title"]).cast(raw_features())
                  for s in FILES}
        return splits, {s: ds._fingerprint for s, ds in splits.items()}

    def prepare(self, tokenizer: Any, data_config: Any, seed: int = 0) -> PreparedData:
        if not getattr(tokenizer, "is_fast", False):
            raise UserError("SQuAD needs a fast tokenizer (for offset mappings)")
        splits, sources = self.load_raw(data_config.data_dir, data_config.revision)
        train = subsample(splits["train"], data_config.max_train_samples, True, seed)
        examples = subsample(splits["validation"], data_config.max_eval_samples, False, seed)
        window = (data_config.max_length, data_config.doc_stride, tokenizer_identity(tokenizer))
        train_key = fingerprint("squad-train", sources["train"], len(train), seed, window)
        eval_key = fingerprint("squad-eval", sources["validation"], len(examples), window)
        features_train = self._map(train, _train_encoder(tokenizer, *window[:2]), train_key, "train windows")
        features_eval = self._map(examples, _eval_encoder(tokenizer, *window[:2]), eval_key, "dev windows",
                                  with_indices=True)
        extras = {"validation": {"examples": examples, "max_answer_length": data_config.max_answer_length,
                                 "features": features_eval.select_columns(["example_index", "offset_mapping"])}}
        return PreparedData(train=features_train, evals={"validation": features_eval.select_columns(
            [c for c in MODEL_INPUTS if c in features_eval.column_names])}, extras=extras,
            eval_sizes={"validation": (len(examples), len(splits["validation"]))})  # questions, not windows

    def _map(self, ds: Dataset, encode: Any, key: str, desc: str, with_indices: bool = False) -> Dataset:
        path = cache_dir() / f"squad-{key}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        return ds.map(encode, batched=True, remove_columns=ds.column_names, with_indices=with_indices,
                      cache_file_name=str(path), desc=f"tokenizing SQuAD {desc}")

    # --- evaluation ------------------------------------------------------------------------------
    def collator(self, tokenizer: Any, train: bool, pad_to_multiple_of: int | None,
                 data: PreparedData | None = None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def eval_outputs(self, outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"start_logits": outputs.start_logits.float(), "end_logits": outputs.end_logits.float()}

    def score(self, split: str, arrays: dict[str, np.ndarray], data: PreparedData) -> dict[str, float]:
        extra = data.extras[split]
        predictions = best_answers(extra["examples"], extra["features"], arrays["start_logits"],
                                   arrays["end_logits"], extra["max_answer_length"])
        golds = {ex["id"]: ex["answer_texts"] for ex in extra["examples"]}
        return metrics.squad_scores(predictions, golds)

    def constant_scores(self, data: PreparedData) -> dict[str, float]:
        """No answer for every question (the official script scores it 0): no other constant answers better."""
        return {"exact_match": 0.0, "f1": 0.0}


def read_squad_json(path: Path) -> tuple[Dataset, str]:
    """The official v1.1 schema: {"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
    "answers": [{"text", "answer_start"}]}]}]}]}."""
    from datasets import Dataset

    text, source = read_text(path, "squad")
    features = raw_features()
    try:
        articles = json.loads(text)["data"]
        rows: dict[str, list] = {name: [] for name in features}
        for article in articles:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = qa["answers"]
                    if not answers:
                        raise UserError(f"{path}: question {qa['id']} has no answers (SQuAD v1.1 needs at least one)")
                    for answer in answers:
                        if not 0 <= int(answer["answer_start"]) <= len(context) - len(answer["text"]):
                            raise UserError(f"{path}: question {qa['id']}: answer_start is outside its context")
                    rows["id"].append(str(qa["id"]))
                    rows["question"].append(qa["question"])
                    rows["context"].append(context)
                    rows["answer_texts"].append([a["text"] for a in answers])
                    rows["answer_starts"].append([int(a["answer_start"]) for a in answers])
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not in the SQuAD v1.1 schema ({type(exc).__name__}: {exc})") from None
    if not rows["id"]:
        raise UserError(f"{path}: no questions (empty split)")
    return Dataset.from_dict(rows, features=features), source


def _windows(tokenizer: Any, batch: dict[str, list], max_length: int, stride: int) -> Any:
    return tokenizer([q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
                     max_length=max_length, stride=stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True)


def _context_span(sequence_ids: list[int | None]) -> tuple[int, int]:
    first = sequence_ids.index(1)
    return first, len(sequence_ids) - 1 - sequence_ids[::-1].index(1)


def _train_encoder(tokenizer: Any, max_length: int, stride: int) -> Any:
    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = _windows(tokenizer, batch, max_length, stride)
        starts, ends = [], []
        for i, offsets in enumerate(enc.pop("offset_mapping")):
            example = enc["overflow_to_sample_mapping"][i]
            answer_start = batch["answer_starts"][example][0]
            answer_end = answer_start + len(batch["answer_texts"][example][0])
            first, last = _context_span(enc.sequence_ids(i))
            if offsets[first][0] > answer_start or offsets[last][1] < answer_end:
                starts.append(0)  # the answer is not (wholly) in this window: point at [CLS]
                ends.append(0)
                continue
            start = first
            while start <= last and offsets[start][0] <= answer_start:
                start += 1
            end = last
            while end >= first and offsets[end][1] >= answer_end:
                end -= 1
            starts.append(start - 1)
            ends.append(end + 1)
        enc.pop("overflow_to_sample_mapping")
        return {**enc, "start_positions": starts, "end_positions": ends}

    return encode


def _eval_encoder(tokenizer: Any, max_length: int, stride: int) -> Any:
    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        enc = _windows(tokenizer, batch, max_length, stride)
        offsets = []
        for i, window in enumerate(enc["offset_mapping"]):
            ids = enc.sequence_ids(i)
            offsets.append([list(o) if ids[k] == 1 else [-1, -1] for k, o in enumerate(window)])
        enc["offset_mapping"] = offsets
        enc["example_index"] = [indices[j] for j in enc.pop("overflow_to_sample_mapping")]
        return dict(enc)

    return encode


def best_answers(examples: Dataset, features: Dataset, start_logits: np.ndarray, end_logits: np.ndarray,
                 max_answer_length: int, n_best: int = N_BEST) -> dict[str, str]:
    """The highest-scoring valid span over all windows of each example (score = start + end logit)."""
    windows: dict[int, list[int]] = defaultdict(list)
    for i, example in enumerate(features["example_index"]):
        windows[example].append(i)
    all_offsets = features["offset_mapping"]
    predictions = {}
    for index, example in enumerate(examples):
        best_score, best_text = -np.inf, ""
        for f in windows.get(index, []):
            offsets = all_offsets[f]
            starts, ends = start_logits[f][: len(offsets)], end_logits[f][: len(offsets)]
            for s in np.argsort(starts)[::-1][:n_best]:
                for e in np.argsort(ends)[::-1][:n_best]:
                    if offsets[s][0] < 0 or offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    if starts[s] + ends[e] > best_score:
                        best_score = starts[s] + ends[e]
                        best_text = example["context"][offsets[s][0]: offsets[e][1]]
        predictions[example["id"]] = best_text
    return predictions
