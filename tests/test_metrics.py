import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from bert_tickets import metrics


@pytest.fixture(params=range(5))
def labels(request):
    rng = np.random.default_rng(request.param)
    return rng.integers(0, 2, 200), rng.integers(0, 2, 200)


def test_glue_module_matches_sklearn(labels):
    pred, ref = labels
    scores = metrics.compute(["accuracy", "f1", "matthews_correlation"], pred, ref)
    assert scores == {"accuracy": pytest.approx(skm.accuracy_score(ref, pred)),
                      "f1": pytest.approx(skm.f1_score(ref, pred)),
                      "matthews_correlation": pytest.approx(skm.matthews_corrcoef(ref, pred))}


def test_the_metrics_are_evaluate_modules_loaded_from_the_package():
    import evaluate

    module = metrics.load_module("glue_scores", "classification")
    assert isinstance(module, evaluate.Metric) and module.config_name == "classification"
    assert (metrics.MODULES / "glue_scores" / "glue_scores.py").is_file()
    assert (metrics.MODULES / "squad_v1" / "squad_v1.py").is_file()
    with pytest.raises(ValueError, match="unknown metric"):
        module.compute(predictions=[1], references=[1], metrics=["bleu"])


def test_constant_predictions_keep_a_defined_value():
    ref = np.array([0, 0, 1, 1])
    constant = np.zeros(4, dtype=int)
    scores = metrics.compute(["matthews_correlation", "f1"], constant, ref)
    assert scores["matthews_correlation"] == skm.matthews_corrcoef(ref, constant) == 0.0
    assert scores["f1"] == skm.f1_score(ref, constant, zero_division=0.0) == 0.0
    flat = metrics.compute(["pearson", "spearman"], np.full(4, 2.5), np.array([0.0, 1.0, 2.0, 5.0]), regression=True)
    with pytest.warns(stats.ConstantInputWarning):  # scipy has no value here ...
        assert np.isnan(stats.pearsonr(np.full(4, 2.5), [0.0, 1.0, 2.0, 5.0])[0])
    assert flat == {"pearson": 0.0, "spearman": 0.0}  # ... the module keeps a defined one


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_including_ties(seed):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 6, 300) / 1.25  # STS-B-like scores with many ties
    pred = ref + rng.normal(0, 1.0, 300)
    pred[:50] = np.round(pred[:50])
    scores = metrics.compute(["pearson", "spearman"], pred, ref, regression=True)
    assert scores["pearson"] == pytest.approx(stats.pearsonr(pred, ref)[0])
    assert scores["spearman"] == pytest.approx(stats.spearmanr(pred, ref)[0])


def test_squad_module_is_the_official_v1_1_computation():
    squad = metrics.load_module("squad_v1")
    module = squad.__class__.__module__
    import sys

    official = sys.modules[module]
    assert official.normalize_answer("  The Cat,  sat! ") == "cat sat"
    assert official.normalize_answer("An apple a day") == "apple day"
    assert official.token_f1("cat sat on mat", "the cat sat") == pytest.approx(2 / 3)  # P 2/4, R 2/2
    assert official.token_f1("the", "a") == 0.0  # both normalise to nothing
    # by hand: q1 exact (after normalisation), q2 F1 = max(0, 2·0.5·1/1.5), q3 unanswered scores 0
    scores = metrics.squad_scores({"q1": "the Broncos.", "q2": "cat sat on mat"},
                                  {"q1": ["Denver", "Broncos"], "q2": ["dog", "on the mat"], "q3": ["x"]})
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 * 0.5 / 1.5) / 3)


def test_one_unit_for_every_score_the_papers():
    assert metrics.format_mean_std("matched_accuracy", {"mean": 0.8431, "std": 0.0052}) == "84.31 ± 0.52 %"
    assert metrics.format_mean_std("pearson", {"mean": 0.87123, "std": 0.0031}) == "87.12 ± 0.31"
    assert metrics.format_mean_std("matthews_correlation", {"mean": 0.4, "std": 0.02}) == "40.00 ± 2.00"
    assert metrics.format_mean_std("perplexity", {"mean": 11.02, "std": 0.1}) == "11.02 ± 0.10"
    assert metrics.display_value("exact_match", 0.5) == 50 and metrics.display_value("loss", 2.4) == 2.4
    assert not metrics.is_percent("matthews_correlation")
    assert metrics.display_value("pearson", 0.5) == 50 and metrics.display_value("perplexity", 11.0) == 11.0
    labels = [metrics.metric_label(m) for m in ("accuracy", "pearson", "matthews_correlation", "loss")]
    assert labels == ["accuracy (%)", "Pearson r × 100", "Matthews corr. × 100", "loss"]
