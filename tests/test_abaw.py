"""ABAW 2020 scores (methods.md §4(f)): EXPR, AU, VA CCC, and their place in evaluation output."""

import numpy as np
import pytest

from facemtl.metrics import au_metrics, ccc, expression_metrics
from facemtl.metrics.abaw import abaw_summary, au_score, expr_score, va_score


def test_expr_score_worked_example():
    # predictions [0, 1, 1], labels [0, 1, 2]: accuracy 2/3, macro-F1 (1 + 2/3 + 0) / 3, score 0.5922
    result = expr_score(np.array([0, 1, 2]), np.array([0, 1, 1]))
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert round(result["score"], 4) == 0.5922
    # the evaluation metrics agree when every class occurs
    assert expression_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]), ["a", "b", "c"])["abaw_score"] == pytest.approx(result["score"])


def test_expr_score_averages_only_occurring_classes():
    # class 3 of a 4-class space never occurs: sklearn-style macro-F1 (official) ignores it
    assert expr_score(np.array([0, 0, 1]), np.array([0, 0, 1]))["f1"] == 1.0
    assert expression_metrics(np.array([0, 0, 1]), np.array([0, 0, 1]), list("abcd"))["macro_f1"] == 0.5


def test_au_score_mean_f1_and_flattened_accuracy():
    truth = np.array([[1, 0], [1, 1], [0, 0]])
    pred = np.array([[1, 0], [0, 1], [1, 0]])
    # AU0: tp 1, fp 1, fn 1 -> F1 0.5; AU1: F1 1; 4 of 6 entries right
    result = au_score(truth, pred)
    assert result["f1"] == pytest.approx(0.75) and result["accuracy"] == pytest.approx(4 / 6)
    assert result["score"] == pytest.approx(0.5 * 0.75 + 0.5 * 4 / 6)
    assert au_metrics(truth, pred.astype(float), ["AU1", "AU2"])["abaw_score"] == pytest.approx(result["score"])


def test_ccc_cases():
    x = np.random.default_rng(0).normal(size=200)
    x = x - x.mean()
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, x + 0.5) < 1.0 and np.corrcoef(x, x + 0.5)[0, 1] == pytest.approx(1.0)
    assert ccc(x, -x) == pytest.approx(-1.0)
    both = np.stack([x, x + 0.5], 1)
    result = va_score(both, np.stack([x, x], 1))
    assert result["ccc_valence"] == pytest.approx(1.0) and result["score"] == pytest.approx((1 + ccc(x, x + 0.5)) / 2)


def test_evaluation_output_has_abaw_scores(tiny_overrides):
    import torch

    from facemtl.config import load_config
    from facemtl.data import build_datasets
    from facemtl.engine.evaluate import evaluate, format_metrics
    from facemtl.tasks.network import build_network

    torch.manual_seed(0)
    config = load_config(None, tiny_overrides + ["model.tasks=expr,au,va"])
    val = build_datasets(config.data, splits=("val",))["val"]
    net = build_network("test_tiny", ["expr", "au", "va"], val.label_spaces).eval()
    with torch.no_grad():
        results = evaluate(net, val, net.tasks, torch.device("cpu"))
    summary = abaw_summary(results)
    assert set(summary) == {"expr", "au", "va", "total"}
    assert summary["va"] == results["va"]["ccc_mean"] == results["va"]["abaw_score"]
    assert summary["total"] == pytest.approx(summary["expr"] + summary["au"] + summary["va"])
    assert "abaw_score" in format_metrics({"val": results})
