"""Task metrics as plain functions behind one interface (no Hub-hosted `evaluate` modules needed).

Each takes predictions and references as 1-D arrays and returns a float; `compute` runs several by name.
The tests check every one against scikit-learn / scipy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


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


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: Iterable[str], predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    return {name: METRICS[name](predictions, references) for name in names}
