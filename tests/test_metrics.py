import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from bert_tickets import metrics


@pytest.fixture(params=range(5))
def labels(request):
    rng = np.random.default_rng(request.param)
    return rng.integers(0, 2, 200), rng.integers(0, 2, 200)


def test_classification_metrics_match_sklearn(labels):
    pred, ref = labels
    assert metrics.accuracy(pred, ref) == pytest.approx(skm.accuracy_score(ref, pred))
    assert metrics.f1(pred, ref) == pytest.approx(skm.f1_score(ref, pred))
    assert metrics.matthews_correlation(pred, ref) == pytest.approx(skm.matthews_corrcoef(ref, pred))


def test_degenerate_cases_match_sklearn():
    ref = np.array([0, 0, 1, 1])
    constant = np.zeros(4, dtype=int)
    assert metrics.matthews_correlation(constant, ref) == skm.matthews_corrcoef(ref, constant) == 0.0
    assert metrics.f1(constant, ref) == skm.f1_score(ref, constant, zero_division=0.0) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_including_ties(seed):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 6, 300) / 1.25  # STS-B-like scores with many ties
    pred = ref + rng.normal(0, 1.0, 300)
    pred[:50] = np.round(pred[:50])
    assert metrics.pearson(pred, ref) == pytest.approx(stats.pearsonr(pred, ref)[0])
    assert metrics.spearman(pred, ref) == pytest.approx(stats.spearmanr(pred, ref)[0])


def test_compute_by_name():
    out = metrics.compute(["accuracy", "f1"], np.array([1, 0, 1]), np.array([1, 1, 1]))
    assert out == {"accuracy": pytest.approx(2 / 3), "f1": pytest.approx(0.8)}
