"""Task metrics, computed by the `evaluate` modules shipped in `bert_tickets/evaluate_modules/`, and how a
score is written for people (its unit).

The modules load by path (`evaluate.load(<folder>)`), so they work offline and travel with the package;
scikit-learn, scipy and SQuAD's official v1.1 rules do the computing inside them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bert_tickets.logs import quiet

MODULES = Path(__file__).parent / "evaluate_modules"
# Scores that are fractions of examples (shown in %); correlations are coefficients and masked-LM's loss and
# perplexity have their own units: those are shown as they are.
PERCENT_METRICS = frozenset({"accuracy", "f1", "exact_match"})


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


def display_value(metric: str, value: float) -> float:
    """The number people read: percent for percentages, the value itself otherwise."""
    return 100 * value if is_percent(metric) else value


def format_mean_std(metric: str, summary: dict[str, float]) -> str:
    """'mean ± std' over seeds, in the metric's unit: '84.31 ± 0.52 %', '0.8712 ± 0.0031', '11.02 ± 0.10'; one seed
    has no spread: '84.31 % (n = 1)'."""
    if len(summary.get("values", [None, None])) == 1:
        digits = 2 if is_percent(metric) or metric.endswith(("loss", "perplexity")) else 4
        value = 100 * summary["mean"] if is_percent(metric) else summary["mean"]
        return f"{value:.{digits}f}{' %' if is_percent(metric) else ''} (n = 1)"
    if is_percent(metric):
        return f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} %"
    digits = 2 if metric.endswith(("loss", "perplexity")) else 4
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"
