"""Task metrics, computed by the `evaluate` modules shipped in `bert_tickets/evaluate_modules/`, and how a
score is written for people (its unit).

The modules load by path (`evaluate.load(<folder>)`), so they work offline and travel with the package;
scikit-learn, scipy and SQuAD's official v1.1 rules do the computing inside them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bert_tickets.logs import quiet

MODULES = Path(__file__).parent / "evaluate_modules"
# One unit in every printed table, figure and verdict, the paper's: a score is shown × 100 (fractions of examples
# in %, correlations as coefficient × 100); masked-LM's loss and perplexity have their own units, shown as they are.
PERCENT_METRICS = frozenset({"accuracy", "f1", "exact_match"})
OWN_UNITS = ("loss", "perplexity")
NAMES = {"pearson": "Pearson r", "spearman": "Spearman ρ", "matthews": "Matthews corr.",
         "matthews_correlation": "Matthews corr."}


@functools.cache
def load_module(name: str, config_name: str | None = None) -> Any:
    """One of our evaluate modules ('glue_scores' with 'classification'/'regression', or 'squad_v1')."""
    import evaluate

    with quiet("evaluate"):
        return evaluate.load(str(MODULES / name), config_name, keep_in_memory=True)


def compute(names: Iterable[str], predictions: np.ndarray, references: np.ndarray,
            regression: bool = False) -> dict[str, float]:
    """GLUE scores by name: accuracy, f1, matthews_correlation, pearson, spearman."""
    module = load_module("glue_scores", "regression" if regression else "classification")
    with quiet("evaluate"):
        return module.compute(predictions=np.asarray(predictions).tolist(),
                              references=np.asarray(references).tolist(), metrics=list(names))


def squad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """Mean exact match and F1 over every question with gold answers (a missing prediction scores 0)."""
    module = load_module("squad_v1")
    with quiet("evaluate"):
        return module.compute(
            predictions=[{"id": qid, "prediction_text": predictions.get(qid)} for qid in golds],  # None: unanswered
            references=[{"id": qid, "answers": {"text": answers, "answer_start": [0] * len(answers)}}  # unused
                        for qid, answers in golds.items()])


def is_percent(metric: str) -> bool:
    """accuracy, f1 and exact_match, also under a split prefix (MNLI's matched_accuracy)."""
    return any(metric == name or metric.endswith(f"_{name}") for name in PERCENT_METRICS)


def is_scaled(metric: str) -> bool:
    """Shown × 100: every score but a loss or a perplexity."""
    return not metric.endswith(OWN_UNITS)


def display_value(metric: str, value: float) -> float:
    """The number people read: the score × 100, a loss or perplexity as it is."""
    return 100 * value if is_scaled(metric) else value


def metric_label(metric: str) -> str:
    """A metric with the unit it is shown in: 'accuracy (%)', 'Pearson r × 100', 'perplexity'."""
    if is_percent(metric):
        return f"{metric.replace('_', ' ')} (%)"
    if not is_scaled(metric):
        return metric
    return f"{NAMES.get(metric, metric)} × 100"


def format_mean_std(metric: str, summary: Mapping[str, Any]) -> str:
    """'mean ± std' over seeds in the metric's unit (`display_value`): '84.31 ± 0.52 %' (accuracy), '87.12 ± 0.31'
    (Pearson r × 100), '11.02 ± 0.10' (perplexity); one seed has no spread: '84.31 % (n = 1)'."""
    suffix = " %" if is_percent(metric) else ""
    mean = display_value(metric, summary["mean"])
    if len(summary.get("values", [None, None])) == 1:
        return f"{mean:.2f}{suffix} (n = 1)"
    return f"{mean:.2f} ± {display_value(metric, summary['std']):.2f}{suffix}"


def index_value(metric: str, value: float) -> float:
    """A score in a model card's model-index (read by machines, not people): percentages in %, a correlation, loss
    or perplexity as `evaluate` computes it, as the Hub's other cards give them."""
    return 100 * value if is_percent(metric) else value
