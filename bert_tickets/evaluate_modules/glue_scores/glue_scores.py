"""GLUE's metrics as an `evaluate` module shipped inside bert-tickets (loaded by path, so it works offline).

    metric = evaluate.load(".../glue_scores", "classification")   # or "regression" (STS-B)
    metric.compute(predictions=[...], references=[...], metrics=["accuracy", "f1"])

scikit-learn and scipy compute; where they have no defined value (a constant prediction makes Pearson and
Spearman NaN), the score is 0.0, as for Matthews' correlation in scikit-learn: a constant prediction carries
no correlation, and a NaN would poison every mean over seeds downstream.
"""

import math
import warnings

import datasets
import evaluate
from scipy import stats
from sklearn import metrics as skm

_DESCRIPTION = "GLUE scores: accuracy, binary F1 (label 1), Matthews correlation, Pearson and Spearman."
_INPUTS = """
Args:
    predictions: predicted labels (classification) or scores (regression).
    references: gold labels or scores.
    metrics: which scores to return, among accuracy, f1, matthews_correlation, pearson, spearman.
Returns: {name: float} for each requested metric, as fractions (accuracy 0.5, not 50).
"""
_CITATION = """@inproceedings{wang2019glue, title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for
Natural Language Understanding}, author={Wang, Alex and others}, booktitle={ICLR}, year={2019}}"""


def _defined(value: float) -> float:
    return 0.0 if math.isnan(value) else float(value)


SCORES = {
    "accuracy": lambda p, r: float(skm.accuracy_score(r, p)),
    "f1": lambda p, r: float(skm.f1_score(r, p, pos_label=1, zero_division=0.0)),
    "matthews_correlation": lambda p, r: float(skm.matthews_corrcoef(r, p)),
    "pearson": lambda p, r: _defined(stats.pearsonr(p, r)[0]) if len(p) > 1 else 0.0,
    "spearman": lambda p, r: _defined(stats.spearmanr(p, r)[0]) if len(p) > 1 else 0.0,
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class GlueScores(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        kind = datasets.Value("float64" if self.config_name == "regression" else "int64")
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
                                   features=datasets.Features({"predictions": kind, "references": kind}))

    def _compute(self, predictions, references, metrics=("accuracy",)):
        unknown = [m for m in metrics if m not in SCORES]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(SCORES)}")
        with warnings.catch_warnings():  # scipy warns on a constant input; the value is defined above
            warnings.simplefilter("ignore")
            return {name: SCORES[name](predictions, references) for name in metrics}
