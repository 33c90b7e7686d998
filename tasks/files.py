"""Your own data, as run_glue reads it: `--task custom --train-file train.csv --validation-file dev.csv` (CSV or
JSON lines), classification or regression.

As in transformers' run_glue.py: the label column is `label`; a float label means regression, otherwise the classes
are the training file's distinct labels, sorted; the text is `sentence1` and `sentence2` where both are columns,
else the first two other columns, else the only one. Scores: accuracy (classification), Pearson and Spearman
(regression).

The classes are known only once the files are read, and the model's head needs their number: a run binds the task
to its files (`bind`, in `RunFolder`) into a `GlueTask` record whose TSV reading is replaced by `datasets`' CSV and
JSON loaders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bert_tickets.errors import UserError
from bert_tickets.logs import quiet
from bert_tickets.tasks.glue import HUB_METRIC_IDS, GlueTask

if TYPE_CHECKING:  # datasets loads where it reads: `--help` reads the tasks without it
    from datasets import Dataset

LOADERS = {".csv": "csv", ".json": "json", ".jsonl": "json"}


@dataclass(frozen=True)
class FileTask(GlueTask):
    train_file: str | None = None  # the files it is bound to (`bind`)
    validation_file: str | None = None
    shared_data_settings: ClassVar[tuple[str, ...]] = ("train_file", "validation_file")  # masked-LM's settings

    def check_data(self, data_config: Any) -> None:
        files = (("--train-file", data_config.train_file), ("--validation-file", data_config.validation_file))
        for flag, path in files:
            if path is None:
                raise UserError(f"task custom reads your own files: give {flag} (CSV or JSON lines, as run_glue)")
            if Path(path).suffix.lower() not in LOADERS:
                raise UserError(f"{flag} {path}: expected a .csv, .json or .jsonl file")
            if not Path(path).is_file():
                raise UserError(f"{flag} {path}: no such file")

    def bind(self, data_config: Any) -> FileTask:
        """This task for the given files: their text columns, and the label set or regression."""
        self.check_data(data_config)
        train = _load(data_config.train_file)
        if "label" not in train.column_names:
            raise UserError(f"{data_config.train_file}: no 'label' column (run_glue's name for it)")
        columns = [c for c in train.column_names if c != "label"]
        if {"sentence1", "sentence2"} <= set(columns):
            columns = ["sentence1", "sentence2"]
        if not columns:
            raise UserError(f"{data_config.train_file}: no text column beside 'label'")
        regression = train.features["label"].dtype in ("float32", "float64")
        labels = None if regression else tuple(sorted({str(v) for v in train["label"]}))
        metrics = ("pearson", "spearman") if regression else ("accuracy",)
        bound: dict[str, Any] = {"file_columns": tuple(columns[:2]), "hub_columns": tuple(columns[:2]),
                                 "labels": labels, "metric_names": metrics, "primary": metrics[0],
                                 "train_file": data_config.train_file, "validation_file": data_config.validation_file}
        return dataclasses.replace(self, **bound)  # (mypy's replace() knows no inherited frozen fields)

    def load_raw(self, data_dir: str | None, revision: str | None = None) -> tuple[dict[str, Dataset], dict[str, str]]:
        if self.train_file is None or self.validation_file is None:
            raise UserError("task custom must be bound to its files first (--train-file, --validation-file)")
        splits, sources = {}, {}
        for split, path in (("train", self.train_file), ("validation", self.validation_file)):
            ds = _load(path)
            missing = [c for c in (*self.file_columns, "label") if c not in ds.column_names]
            if missing:
                raise UserError(f"{path}: no column {missing[0]!r} (the training file has it)")
            with quiet("datasets"):
                splits[split], sources[split] = self._as_pairs(ds, path), ds._fingerprint
        return splits, sources

    def _as_pairs(self, ds: Dataset, path: str) -> Dataset:
        """Columns text_a[, text_b] and label (a class id, or the float for regression)."""
        from datasets import ClassLabel, Value

        renamed = {col: f"text_{'ab'[i]}" for i, col in enumerate(self.file_columns)}
        ds = ds.select_columns([*self.file_columns, "label"]).rename_columns(renamed)
        if self.labels is None:
            return ds.cast_column("label", Value("float32"))
        if unknown := sorted({str(v) for v in ds["label"]} - set(self.labels)):
            raise UserError(f"{path}: label {unknown[0]!r} is not among the training file's "
                            f"({', '.join(self.labels)})")
        # names to ids by datasets' own ClassLabel (its cast maps each name to its index)
        return ds.cast_column("label", Value("string")).cast_column("label", ClassLabel(names=list(self.labels)))

    def hub_metric(self, metric: str) -> tuple[str, str]:
        """Any of its scores, on the validation file (a card reads a ticket's task unbound: its scores decide)."""
        return "validation", HUB_METRIC_IDS.get(metric, metric)

    def data_source(self, data_config: Any) -> dict[str, Any]:
        return {"local_files": [str(data_config.train_file), str(data_config.validation_file)]}


def _load(path: str) -> Dataset:
    import datasets

    try:
        with quiet("datasets"):
            return datasets.load_dataset(LOADERS[Path(path).suffix.lower()], data_files={"train": path},
                                         split="train")
    except Exception as exc:  # a damaged or unreadable file: one line, as every bad input
        raise UserError(f"{path}: not readable as {LOADERS[Path(path).suffix.lower()].upper()} "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


CUSTOM = FileTask(name="custom", hub_config="", folder="", hub_columns=(), file_columns=(), file_label="label",
                  labels=None, metric_names=("accuracy",), primary="accuracy")
