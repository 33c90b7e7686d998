"""SQuAD v1.1's official evaluation (evaluate-v1.1.py) as an `evaluate` module shipped inside bert-tickets.

    metric = evaluate.load(".../squad_v1")
    metric.compute(predictions=[{"id": "q1", "prediction_text": "Denver Broncos"}],
                   references=[{"id": "q1", "answers": {"text": ["Denver Broncos"], "answer_start": [177]}}])

Exact match and F1 per question are the maximum over its gold answers after the official normalisation
(lower-case, no punctuation, no articles a/an/the, single spaces); a question without a prediction (its
prediction_text None) scores 0.
Unlike the Hub's `squad` metric, the means are fractions (0.8, not 80), like every other bert-tickets score.
"""

import re
import string
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = "SQuAD v1.1 exact match and token F1, as the official evaluation script computes them."
_INPUTS = """
Args:
    predictions: [{"id": str, "prediction_text": str}]
    references: [{"id": str, "answers": {"text": [str], "answer_start": [int]}}]
Returns: {"exact_match": float, "f1": float}, means over the references, as fractions.
"""
_CITATION = """@inproceedings{rajpurkar2016squad, title={{SQuAD}: 100,000+ Questions for Machine Comprehension of
Text}, author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy}, booktitle={EMNLP},
year={2016}}"""


def normalize_answer(text: str) -> str:
    """The official normalisation: lower-case, drop punctuation, drop a/an/the, collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class SquadV1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        answers = datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")})
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"), "answers": answers}}))

    def _compute(self, predictions, references):
        predicted = {p["id"]: p["prediction_text"] for p in predictions}
        em = f1 = 0.0
        for reference in references:
            golds = reference["answers"]["text"]
            prediction = predicted.get(reference["id"])
            if prediction is None or not golds:
                continue  # scores 0, as in the official script
            em += max(exact_match(prediction, g) for g in golds)
            f1 += max(token_f1(prediction, g) for g in golds)
        n = max(len(references), 1)
        return {"exact_match": em / n, "f1": f1 / n}
