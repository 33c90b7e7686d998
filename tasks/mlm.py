"""Masked-LM: the pre-training objective as a task, whose tickets the paper found to transfer best.

Raw text is tokenized, concatenated and cut into blocks of `data.max_length` tokens ([CLS] … [SEP]).
Training masks 15% of tokens afresh each batch (80% [MASK], 10% a random token, 10% unchanged); the
evaluation set is masked once with a fixed seed (`data.mask_seed`), so two evaluations of the same model
give the same number. Metrics: masked-token accuracy (over masked positions only), loss and perplexity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bert_tickets.errors import UserError
from bert_tickets.tasks.base import (
    PreparedData,
    cache_dir,
    data_setting,
    fingerprint,
    hub_source,
    subsample,
    tokenizer_identity,
)

if TYPE_CHECKING:  # datasets, torch and transformers load where they are used: `--help` reads the tasks without them
    import torch
    from datasets import Dataset

HUB_DATASET, HUB_CONFIG = "Salesforce/wikitext", "wikitext-103-raw-v1"
LOCAL_FILES = {"train": "train.txt", "validation": "validation.txt"}


@dataclass
class MaskedLMData:
    """Masked-LM's own data settings (`data.train_file`, ...)."""

    train_file: str | None = data_setting(
        None, "masked-LM: a raw text file to train on, instead of --data-dir or the Hub; custom: a CSV or JSON "
              "lines file with a label column (run_glue's --train_file)")
    validation_file: str | None = data_setting(
        None, "masked-LM: a raw text file to score on; custom: the CSV or JSON lines file to score on")
    mlm_probability: float = data_setting(0.15, "masked-LM: fraction of tokens masked",
                                          (lambda v: 0 < v < 1, "in (0, 1)"))
    mask_seed: int = data_setting(1234, "masked-LM: the evaluation set's masking, fixed so that scores are comparable",
                                  (lambda v: 0 <= v < 2**32, "in [0, 2**32)"))


@dataclass(frozen=True)
class MaskedLMTask:
    name: str = "mlm"
    primary_metric: str = "accuracy"
    task_type: ClassVar[str] = "fill-mask"
    language: ClassVar[str] = "en"
    hub_dataset: ClassVar[str] = HUB_DATASET
    hub_dataset_config: ClassVar[str | None] = HUB_CONFIG
    data_settings: ClassVar[type | None] = MaskedLMData
    # θ0 is the whole pre-trained masked-LM network where the checkpoint ships its head (the authors load
    # BertForMaskedLM.from_pretrained: LT_pretrain.py, pretrain_trans.py); a checkpoint without one gets a new head
    pretrained_head: ClassVar[bool] = True
    # The paper's masked-LM recipe for IMP levels: batch 16, lr 5e-5, 10,000 steps per level.
    recipe: dict[str, Any] = field(default_factory=lambda: {
        "training.batch_size": 16, "training.learning_rate": 5e-5, "training.max_steps": 10_000,
        "training.eval_batch_size": 16, "data.max_length": 512})

    def check_data(self, data_config: Any) -> None:
        """Nothing to check before loading: its own settings (files, masking) are checked by their field rules,
        and the files themselves when they are read."""

    def model_class(self) -> Any:
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def hub_metric(self, metric: str) -> tuple[str, str]:
        return "validation", metric  # the Hub's ids already

    # --- data ------------------------------------------------------------------------------------
    def data_source(self, data_config: Any) -> dict[str, Any]:
        files = self._files(data_config)
        if all(f is None for f in files.values()):
            return hub_source(self, data_config)
        return {"local_files": [f for f in files.values() if f is not None]}

    def _files(self, data_config: Any) -> dict[str, str | None]:
        files = {"train": data_config.train_file, "validation": data_config.validation_file}
        if data_config.data_dir is not None:
            files = {s: f or str(Path(data_config.data_dir) / LOCAL_FILES[s]) for s, f in files.items()}
        return files

    def load_texts(self, data_config: Any) -> tuple[dict[str, Dataset], dict[str, str]]:
        """Each split as a Dataset of non-empty lines (column `text`, on disk: a corpus never has to fit in
        memory as Python strings), and a fingerprint of its source."""
        files = self._files(data_config)
        if all(f is None for f in files.values()):
            return self._load_hub(data_config.revision)
        if any(f is None for f in files.values()):
            raise UserError("mlm: give both a training and a validation text file (or --data-dir with "
                            "train.txt and validation.txt)")
        texts, sources = {}, {}
        for split, name in files.items():
            texts[split], sources[split] = _read_lines(Path(str(name)))  # both given (checked above)
        return texts, sources

    def _load_hub(self, revision: str | None) -> tuple[dict[str, Dataset], dict[str, str]]:
        import datasets

        try:
            hub = datasets.load_dataset(HUB_DATASET, HUB_CONFIG, revision=revision)
        except Exception as exc:
            raise UserError(f"could not load {HUB_DATASET}/{HUB_CONFIG} from the Hub ({type(exc).__name__}); "
                            "offline, pass --set data.train_file=... --set data.validation_file=...") from None
        texts = {s: _non_empty(hub[s].select_columns(["text"])) for s in LOCAL_FILES}
        return texts, {s: hub[s]._fingerprint for s in LOCAL_FILES}

    def prepare(self, tokenizer: Any, data_config: Any, seed: int = 0) -> PreparedData:
        from datasets import Dataset

        texts, sources = self.load_texts(data_config)
        block = min(data_config.max_length, tokenizer.model_max_length)
        limits = {"train": data_config.max_train_samples, "validation": data_config.max_eval_samples}
        prepared, wholes = {}, {}
        for split, lines in texts.items():
            key = fingerprint("mlm-v2", split, sources[split], block, limits[split], seed, data_config.mask_seed,
                              data_config.mlm_probability, tokenizer_identity(tokenizer))
            path = cache_dir() / f"mlm-{key}.arrow"
            if path.exists():
                prepared[split] = Dataset.from_file(str(path))
                wholes[split] = len(prepared[split]) if limits[split] is None else None  # not counted again
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            # the blocks depend on the text, the block size and the tokenizer only: other seeds, subsets and
            # maskings of the same corpus reuse them instead of tokenizing it again
            blocks_key = fingerprint("mlm-blocks", split, sources[split], block, tokenizer_identity(tokenizer))
            blocks = _blocks(tokenizer, lines, block, str(cache_dir() / f"mlm-{blocks_key}.arrow"))
            if not len(blocks):
                raise UserError(f"mlm: the {split} text is shorter than one block of {block} tokens")
            wholes[split] = len(blocks)
            ds = subsample(blocks, limits[split], split == "train", seed)
            if split == "validation":
                ds = _mask_once(ds, tokenizer, data_config.mlm_probability, data_config.mask_seed)
            prepared[split] = ds.map(lambda b: b, batched=True, cache_file_name=str(path),
                                     desc=f"caching mlm {split} blocks")
        return PreparedData(train=prepared["train"], evals={"validation": prepared["validation"]},
                            extras={"mlm_probability": data_config.mlm_probability},
                            eval_sizes={"validation": (len(prepared["validation"]), wholes["validation"])})

    # --- training and evaluation -----------------------------------------------------------------
    def collator(self, tokenizer: Any, train: bool, pad_to_multiple_of: int | None,
                 data: PreparedData | None = None) -> Any:
        from transformers import DataCollatorForLanguageModeling, default_data_collator

        if train:  # fresh masks every batch, drawn from the run's seeded global generator, at data.mlm_probability
            probability = data.extras.get("mlm_probability", 0.15) if data is not None else 0.15
            return DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability)
        return default_data_collator  # blocks are pre-masked and all the same length

    def eval_outputs(self, outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        import torch

        logits, labels = outputs.logits.float(), batch["labels"]
        masked = labels != -100
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        return {"correct": ((logits.argmax(-1) == labels) & masked).sum(1), "masked": masked.sum(1),
                "loss_sum": loss.sum(1)}

    def score(self, split: str, arrays: dict[str, np.ndarray], data: PreparedData) -> dict[str, float]:
        masked = float(arrays["masked"].sum())
        loss = float(arrays["loss_sum"].sum()) / masked
        return {"accuracy": float(arrays["correct"].sum()) / masked, "loss": loss,
                "perplexity": math.exp(min(loss, 50.0))}

    def constant_scores(self, data: PreparedData) -> None:
        """Not computed (the most frequent token's accuracy would need a pass over the masked tokens): a masked-LM
        fine-tuning's failure is judged by its training loss alone (which has no chance level here either)."""
        return None


def _read_lines(path: Path) -> tuple[Dataset, str]:
    """A text file's non-empty lines as a Dataset, read by `datasets`' text loader (Arrow on disk), after one
    streaming pass that checks it is UTF-8 (with the line of the first bad byte) and fingerprints its bytes."""
    import datasets

    source = _check_text_file(path)
    lines = datasets.load_dataset("text", data_files=str(path), split="train", cache_dir=str(cache_dir() / "text"))
    lines = _non_empty(lines)
    if not len(lines):
        raise UserError(f"{path}: no text (empty split)")
    return lines, source


def _check_text_file(path: Path) -> str:
    import codecs
    import hashlib

    if not path.is_file():
        raise UserError(f"mlm: missing data file {path}")
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, 1):
                digest.update(raw)
                try:
                    decoder.decode(raw)
                except UnicodeDecodeError as exc:
                    raise UserError(f"{path}:{line_no}: not valid UTF-8 (byte {exc.start} of the line)") from None
    except OSError as exc:
        raise UserError(f"mlm: cannot read {path} ({exc.strerror or exc})") from None
    return fingerprint(str(path), digest.hexdigest())


def _non_empty(lines: Dataset) -> Dataset:
    return lines.filter(lambda batch: [bool(t.strip()) for t in batch["text"]], batched=True,
                        desc="dropping empty lines")


def _blocks(tokenizer: Any, lines: Dataset, block: int, cache_file: str) -> Dataset:
    """Tokenize the lines in batches and cut the concatenated tokens of each batch of 1,000 lines into
    [CLS] + (block - 2) tokens + [SEP] (a batch's tail that doesn't fill a block is dropped, as in transformers'
    run_mlm.py): batched `Dataset.map`, so memory holds one batch, never the corpus."""
    body = block - 2

    def to_blocks(batch: dict[str, list]) -> dict[str, list]:
        ids = [t for encoded in tokenizer(batch["text"], add_special_tokens=False)["input_ids"] for t in encoded]
        return {"input_ids": [[tokenizer.cls_token_id, *ids[i: i + body], tokenizer.sep_token_id]
                              for i in range(0, len(ids) - body + 1, body)]}

    return lines.map(to_blocks, batched=True, batch_size=1000, remove_columns=lines.column_names,
                     cache_file_name=cache_file, num_proc=_processes(len(lines)), desc="tokenizing mlm text")


def _processes(n_lines: int) -> int | None:
    """Worker processes for tokenizing a large corpus (the tokenizer is fast, but one process for 1.8M lines of
    wikitext-103 is minutes); small ones are done in-process."""
    import os

    return min(8, os.cpu_count() or 1) if n_lines >= 200_000 else None


def _mask_once(ds: Dataset, tokenizer: Any, probability: float, seed: int) -> Dataset:
    """The 80/10/10 masking, drawn once with a fixed seed (batch by batch, in order): the evaluation set is the
    same on every run."""
    from transformers import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, seed=seed)

    def mask(batch: dict[str, list]) -> dict[str, list]:
        masked = collate([{"input_ids": ids} for ids in batch["input_ids"]])
        return {"input_ids": masked["input_ids"].tolist(), "labels": masked["labels"].tolist()}

    return ds.map(mask, batched=True, batch_size=1000, desc="masking the mlm evaluation set once")
