"""Task metrics as plain functions behind one interface (no Hub-hosted `evaluate` modules needed).

Each takes predictions and references as 1-D arrays and returns a float; `compute` runs several by name.
The tests check every one against scikit-learn / scipy.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

_PUNCTUATION = set(string.punctuation)


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(references)))


def f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP."""
    p, r = np.asarray(predictions) == 1, np.asarray(references) == 1
    tp = np.sum(p & r)
    denominator = np.sum(p) + np.sum(r)
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    p, r = np.asarray(predictions) == 1, np.asarray(references) == 1
    tp, tn = np.sum(p & r), np.sum(~p & ~r)
    fp, fn = np.sum(p & ~r), np.sum(~p & r)
    denominator = np.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(references, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def spearman(predictions: np.ndarray, references: np.ndarray) -> float:
    return pearson(_average_ranks(predictions), _average_ranks(references))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values))
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def percent_mean_std(summary: dict[str, float]) -> str:
    """'mean ± std' in percent, for a summary of a metric over seeds."""
    return f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f}"


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: Iterable[str], predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    return {name: METRICS[name](predictions, references) for name in names}


# --- SQuAD v1.1, as its official evaluation script computes it ---------------------------------------
def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_exact_match(prediction: str, golds: Iterable[str]) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)


def squad_f1(prediction: str, golds: Iterable[str]) -> float:
    return max(_token_f1(normalize_answer(prediction).split(), normalize_answer(g).split()) for g in golds)


def _token_f1(prediction: list[str], gold: list[str]) -> float:
    common = sum((Counter(prediction) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """Mean exact match and F1 over every question with gold answers (a missing prediction scores 0)."""
    em = [squad_exact_match(predictions.get(qid, ""), answers) for qid, answers in golds.items()]
    f1_ = [squad_f1(predictions.get(qid, ""), answers) for qid, answers in golds.items()]
    return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1_))}
