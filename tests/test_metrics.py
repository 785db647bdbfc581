"""Tests for facemtl.metrics: hand-computed cases (arithmetic in comments) and edge cases.

Sources of the reference numbers: docs methods.md §4(f) (ABAW EXPR/AU/CCC) and §5(f) (NME).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from facemtl.metrics import (
    attribute_metrics,
    au_metrics,
    ccc,
    cumulative_error_curve,
    expression_metrics,
    f1_per_au,
    landmark_metrics,
    landmark_normalizer,
    nme_per_sample,
    rmse,
    tune_thresholds,
    va_metrics,
)
from facemtl.metrics.expression import accuracy, confusion_matrix, macro_f1, mean_class_accuracy

# --------------------------------------------------------------------------- expression


def test_expression_methods_md_4f_example():
    # methods.md §4(f): predictions [0, 1, 1], labels [0, 1, 2].
    # class 0: TP 1            -> F1 = 1
    # class 1: TP 1, FP 1      -> F1 = 2*1 / (2*1 + 1 + 0) = 2/3
    # class 2: TP 0, FN 1      -> F1 = 0
    # macro F1 = (1 + 2/3 + 0) / 3 = 5/9 = 0.5556; accuracy = 2/3
    # score = 0.67 * 5/9 + 0.33 * 2/3 = 0.372222 + 0.22 = 0.592222
    m = expression_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(5 / 9)
    assert m["f1"] == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 0.0})
    assert m["abaw_score"] == pytest.approx(0.67 * 5 / 9 + 0.33 * 2 / 3)
    assert round(m["abaw_score"], 4) == 0.5922
    # per-class recall: 1, 1, 0 -> 2/3
    assert m["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    json.dumps(m)  # plain Python types only


def test_confusion_matrix_rows_true_cols_pred():
    # (true 0, pred 1) once, (0, 0) once, (1, 1) once
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([1, 0, 1]), 2)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_mean_class_accuracy_only_present_classes():
    # true [0,0,0,1], pred all 0: recall class0 = 3/3, class1 = 0/1; class 2 absent -> not averaged
    t, p = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    assert accuracy(t, p) == pytest.approx(0.75)
    assert mean_class_accuracy(t, p, 3) == pytest.approx(0.5)
    # F1: class0 2*3/(6+1) = 6/7, class1 0, class2 0 (zero_division=0) -> macro over 3 classes
    assert macro_f1(t, p, 3) == pytest.approx((6 / 7) / 3)


def test_expression_all_one_class():
    # everything class 0 and predicted class 0; classes 1, 2 never occur -> F1 0 by convention
    m = expression_metrics(np.zeros(5, int), np.zeros(5, int), ["n", "h", "s"])
    assert m["accuracy"] == 1.0
    assert m["mean_class_accuracy"] == 1.0
    assert m["f1"] == {"n": 1.0, "h": 0.0, "s": 0.0}
    assert m["macro_f1"] == pytest.approx(1 / 3)
    assert m["abaw_score"] == pytest.approx(0.67 / 3 + 0.33)


def test_expression_invalid_input():
    with pytest.raises(ValueError, match="no labelled samples"):
        expression_metrics(np.array([], int), np.array([], int), ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        expression_metrics(np.array([0, -1]), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        expression_metrics(np.array([0, 1]), np.array([0, 2]), ["a", "b"])
    with pytest.raises(ValueError):
        expression_metrics(np.array([0, 1]), np.array([0]), ["a", "b"])


# --------------------------------------------------------------------------- action units

AU_TRUE = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
AU_PROB = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.1], [0.3, 0.7]])
# at threshold 0.5 the predictions are [[1,0],[0,1],[1,0],[0,1]]


def test_au_metrics_hand_computed():
    # AU0: TP row0, FN row1, FP row2, TN row3 -> F1 = 2/(2+1+1) = 0.5
    # AU1: TP rows 1,3, TN rows 0,2          -> F1 = 1
    # f1_mean = 0.75; accuracy over the 8 flattened entries: 6 correct -> 0.75
    # ABAW AU score = 0.5 * 0.75 + 0.5 * 0.75 = 0.75
    m = au_metrics(AU_TRUE, AU_PROB, ["AU1", "AU2"])
    assert m["f1"] == pytest.approx({"AU1": 0.5, "AU2": 1.0})
    assert m["f1_mean"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["abaw_score"] == pytest.approx(0.75)
    assert m["thresholds"] == [0.5, 0.5]
    json.dumps(m)


def test_au_abaw_score_is_half_f1_half_flat_accuracy():
    # methods.md §4(f): F1 averaged over AUs, accuracy over the flattened matrix.
    # 3 frames x 2 AUs. AU0 labels [1,1,0] preds [1,0,0]: F1 = 2/(2+0+1) = 2/3
    # AU1 labels [0,0,0] preds [0,0,0]: F1 = 0 (no positives, no predictions, zero_division=0)
    # accuracy = 5 correct / 6 entries; score = 0.5 * (2/3 + 0)/2 + 0.5 * 5/6 = 1/6 + 5/12 = 7/12
    t = np.array([[1, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.1], [0.1, 0.1]])
    m = au_metrics(t, p, ["AU1", "AU2"])
    assert m["f1"]["AU2"] == 0.0
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["abaw_score"] == pytest.approx(7 / 12)


def test_au_threshold_is_inclusive_and_per_au():
    # prob exactly at the threshold is positive (>=), like a precision-recall curve threshold
    t = np.array([[1, 1]])
    p = np.array([[0.5, 0.3]])
    assert au_metrics(t, p, ["a", "b"])["f1"] == {"a": 1.0, "b": 0.0}
    m = au_metrics(t, p, ["a", "b"], thresholds=np.array([0.6, 0.3]))
    assert m["f1"] == {"a": 0.0, "b": 1.0}
    assert m["thresholds"] == [0.6, 0.3]
    with pytest.raises(ValueError):
        au_metrics(t, p, ["a", "b"], thresholds=np.array([0.5, 0.5, 0.5]))


def test_au_never_positive():
    # AU never positive but predicted once: TP 0, FP 1 -> F1 0; never predicted -> F1 0 too
    t = np.array([[0, 0], [0, 0]])
    yp = np.array([[1, 0], [0, 0]])
    assert f1_per_au(t, yp).tolist() == [0.0, 0.0]


def test_au_mask_ignores_entries():
    # Mask out AU0 of row 2 (the false positive of test_au_metrics_hand_computed).
    # AU0: TP row0, FN row1, TN row3 -> F1 = 2/(2+0+1) = 2/3; AU1 unchanged: 1
    # accuracy: 7 labelled entries, 6 correct -> 6/7; f1_mean = (2/3 + 1)/2 = 5/6
    mask = np.ones_like(AU_TRUE, dtype=bool)
    mask[2, 0] = False
    m = au_metrics(AU_TRUE, AU_PROB, ["AU1", "AU2"], mask=mask)
    assert m["f1"]["AU1"] == pytest.approx(2 / 3)
    assert m["f1_mean"] == pytest.approx(5 / 6)
    assert m["accuracy"] == pytest.approx(6 / 7)
    # the masked label value is never read: -1 (Aff-Wild2's invalid marker) or NaN are fine
    for bad in (-1, np.nan):
        t = AU_TRUE.astype(float)
        t[2, 0] = bad
        assert au_metrics(t, AU_PROB, ["AU1", "AU2"], mask=mask) == m
    # f1_per_au agrees
    yp = (AU_PROB >= 0.5).astype(int)
    assert f1_per_au(AU_TRUE, yp, mask) == pytest.approx([2 / 3, 1.0])
    # unmasked -1 is an error, not silently a negative
    t = AU_TRUE.copy()
    t[2, 0] = -1
    with pytest.raises(ValueError, match="0 or 1"):
        au_metrics(t, AU_PROB, ["AU1", "AU2"])


def test_au_fully_masked_au_omitted():
    mask = np.ones_like(AU_TRUE, dtype=bool)
    mask[:, 1] = False
    m = au_metrics(AU_TRUE, AU_PROB, ["AU1", "AU2"], mask=mask)
    assert list(m["f1"]) == ["AU1"]
    assert m["f1_mean"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="no labelled samples"):
        au_metrics(AU_TRUE, AU_PROB, ["AU1", "AU2"], mask=np.zeros_like(mask))
    with pytest.raises(ValueError, match="no labelled samples"):
        au_metrics(np.zeros((0, 2)), np.zeros((0, 2)), ["AU1", "AU2"])


# labels / probabilities sorted by probability: 0.9(+) 0.8(-) 0.7(+) 0.3(-) 0.2(+), 3 positives
TUNE_Y = np.array([1, 0, 1, 0, 1])
TUNE_P = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
# threshold: TP FP  precision recall |P-R|  F1 = 2TP/(2TP+FP+FN)
#   0.2     3  2    3/5      1      0.4    6/8 = 0.75   <- F1-optimal
#   0.3     2  2    1/2      2/3    1/6    4/7
#   0.7     2  1    2/3      2/3    0      4/6          <- break-even
#   0.8     1  1    1/2      1/3    1/6    2/5
#   0.9     1  0    1        1/3    2/3    2/4


def test_tune_thresholds_break_even_vs_f1():
    y = np.stack([TUNE_Y, np.zeros(5, int)], axis=1)  # AU 2 never positive -> default 0.5
    p = np.stack([TUNE_P, TUNE_P], axis=1)
    assert tune_thresholds(y, p, mode="break_even").tolist() == [0.7, 0.5]
    assert tune_thresholds(y, p, mode="f1").tolist() == [0.2, 0.5]
    assert tune_thresholds(y, p, mode="f1", default=0.3).tolist() == [0.2, 0.3]
    # the tuned threshold reproduces the chosen operating point in au_metrics
    m = au_metrics(y[:, :1], p[:, :1], ["AU1"], thresholds=tune_thresholds(y, p, mode="f1")[:1])
    assert m["f1_mean"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="mode"):
        tune_thresholds(y, p, mode="youden")


def test_tune_thresholds_mask():
    # A masked (label 0, prob 0.95) entry would make the 0.7 point TP 2 FP 2 -> not break-even.
    y = np.r_[TUNE_Y, 0][:, None]
    p = np.r_[TUNE_P, 0.95][:, None]
    mask = np.ones_like(y, dtype=bool)
    mask[-1] = False
    assert tune_thresholds(y, p, mask=mask, mode="break_even").tolist() == [0.7]
    assert tune_thresholds(y, p, mode="break_even").tolist() != [0.7]


def _brute_force(y, p, mode):
    best_t, best = None, None
    for t in np.unique(p):  # ascending; strict improvement keeps the smallest on ties
        pred = p >= t
        tp = np.sum(pred & (y == 1))
        prec, rec = tp / pred.sum(), tp / (y == 1).sum()
        score = 2 * tp / (pred.sum() + (y == 1).sum()) if mode == "f1" else -abs(prec - rec)
        if best is None or score > best + 1e-12:
            best_t, best = t, score
    return best_t


@pytest.mark.parametrize("mode", ["f1", "break_even"])
def test_tune_thresholds_matches_brute_force(mode):
    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.3).astype(int)
    p = np.round(rng.random((60, 4)), 1)  # rounding creates ties
    got = tune_thresholds(y, p, mode=mode)
    want = [_brute_force(y[:, j], p[:, j], mode) for j in range(4)]
    assert got == pytest.approx(want)


# --------------------------------------------------------------------------- valence / arousal


def test_ccc_methods_md_4f_cases():
    x = np.array([-1.0, 0.0, 1.0])  # mean 0, population variance 2/3
    assert ccc(x, x) == 1.0
    assert ccc(x, -x) == pytest.approx(-1.0)
    # x vs x + 0.5: rho = 1 but the means differ by 0.5
    # CCC = 2 * (2/3) / (2/3 + 2/3 + 0.25) = (4/3) / (19/12) = 16/19 < 1
    assert ccc(x, x + 0.5) == pytest.approx(16 / 19)


def test_ccc_negation_with_nonzero_mean_is_not_minus_one():
    # CCC(x, -x) = -1 only for zero-mean x. x = [1,2,3]: var 2/3, cov(x,-x) = -2/3, means 2 and -2
    # CCC = -4/3 / (2/3 + 2/3 + 16) = -4/3 / (52/3) = -1/13
    x = np.array([1.0, 2.0, 3.0])
    assert ccc(x, -x) == pytest.approx(-1 / 13)


def test_ccc_uses_population_statistics():
    # x = [0, 1], y = [1, 2]: mean difference 1.
    # ddof=0: var_x = var_y = cov = 1/4 -> 2*(1/4) / (1/4 + 1/4 + 1) = 1/3
    # ddof=1: var_x = var_y = cov = 1/2 -> 2*(1/2) / (1/2 + 1/2 + 1) = 1/2 (what the *loss* uses)
    assert ccc(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1 / 3)


def test_ccc_constant_inputs():
    c = np.full(4, 0.3)
    assert ccc(c, c) == 1.0  # identical constants: denominator 0, perfect agreement
    assert ccc(c, np.array([0.0, 0.1, 0.2, 0.3])) == 0.0  # covariance 0
    assert ccc(c, np.full(4, -0.2)) == 0.0  # both constant, different
    with pytest.raises(ValueError, match="no labelled samples"):
        ccc(np.array([]), np.array([]))


def test_rmse_and_va_metrics():
    # rmse([0,0],[3,4]) = sqrt((9 + 16) / 2)
    assert rmse(np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(np.sqrt(12.5))
    x = np.array([-1.0, 0.0, 1.0])
    y_true = np.stack([x, x], axis=1)
    y_pred = np.stack([x, x + 0.5], axis=1)
    m = va_metrics(y_true, y_pred)
    # valence identical -> 1; arousal offset 0.5 -> 16/19; mean = (1 + 16/19)/2 = 35/38
    assert m == pytest.approx(
        {"ccc_valence": 1.0, "ccc_arousal": 16 / 19, "ccc_mean": 35 / 38, "rmse_valence": 0.0, "rmse_arousal": 0.5}
    )
    json.dumps(m)
    with pytest.raises(ValueError, match="no labelled samples"):
        va_metrics(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError):
        va_metrics(np.zeros((3, 3)), np.zeros((3, 3)))


# --------------------------------------------------------------------------- landmarks

# 5-point face: eyes (0,0) and (10,0) -> inter-ocular distance 10; box 10 x 10
FACE5 = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [2.0, 10.0], [8.0, 10.0]])


def test_nme_methods_md_5f_failure_boundary():
    # every point off by (1, 0): error 1 / 10 = 0.1 -> not a failure (failure is NME > 0.1)
    gt = FACE5[None]
    m = landmark_metrics(gt + [1.0, 0.0], gt)
    assert m["nme"] == pytest.approx(0.1)
    assert m["failure_rate"] == 0.0
    # offset (1.01, 0): NME 0.101 > 0.1 -> failure
    m = landmark_metrics(gt + [1.01, 0.0], gt)
    assert m["nme"] == pytest.approx(0.101)
    assert m["failure_rate"] == 1.0
    # both faces together: failure rate 1/2
    gt2 = np.stack([FACE5, FACE5])
    pred2 = gt2 + np.array([[[1.0, 0.0]], [[1.01, 0.0]]])
    assert landmark_metrics(pred2, gt2)["failure_rate"] == 0.5


def test_landmark_normalizers_5_points():
    gt = FACE5[None]
    assert landmark_normalizer(gt, "inter_ocular").tolist() == [10.0]
    assert landmark_normalizer(gt, "inter_pupil").tolist() == [10.0]
    assert landmark_normalizer(gt, "bbox").tolist() == [10.0]  # sqrt(10 * 10)
    assert landmark_normalizer(gt, "diagonal") == pytest.approx([np.sqrt(200.0)])
    # bbox normaliser: offset (3, 4) has error 5; box 10 x 10 -> 5 / 10
    assert nme_per_sample(gt + [3.0, 4.0], gt, "bbox") == pytest.approx([0.5])


def test_landmark_normalizers_68_points():
    gt = np.zeros((1, 68, 2))
    left = np.array([[0, 0], [1, 1], [2, 1], [3, 0], [2, -1], [1, -1]], float)  # 36..41, centroid (1.5, 0)
    gt[0, 36:42] = left
    gt[0, 42:48] = left + [10.0, 0.0]  # 42..47, centroid (11.5, 0); point 45 = (13, 0)
    # outer corners 36 = (0,0), 45 = (13,0) -> 13; pupils (1.5,0), (11.5,0) -> 10
    assert landmark_normalizer(gt, "inter_ocular") == pytest.approx([13.0])
    assert landmark_normalizer(gt, "inter_pupil") == pytest.approx([10.0])


def test_landmark_normalizer_errors():
    gt = np.zeros((2, 19, 2))
    gt[:, :, 0] = np.arange(19)
    with pytest.raises(ValueError, match="bbox"):
        landmark_normalizer(gt, "inter_ocular")  # K = 19 unsupported
    with pytest.raises(ValueError, match="inter_ocular, inter_pupil, bbox, diagonal"):
        landmark_normalizer(gt, "face_size")
    assert landmark_normalizer(gt, "diagonal").tolist() == [18.0, 18.0]  # w 18, h 0
    with pytest.raises(ValueError, match="zero"):
        nme_per_sample(gt, gt, "bbox")  # h = 0 -> sqrt(w*h) = 0


def test_nme_known_normaliser_mask_and_per_point():
    gt = np.stack([FACE5, FACE5])
    pred = gt.copy()
    pred[:, 2] += [0.0, 4.0]  # nose off by 4 in both faces
    # precomputed normalisers 2 and 4: mean error = 4/5 = 0.8 -> 0.4 and 0.2
    assert nme_per_sample(pred, gt, np.array([2.0, 4.0])) == pytest.approx([0.4, 0.2])
    # masking out the nose of face 0 leaves 4 perfect points -> 0
    mask = np.ones((2, 5), dtype=bool)
    mask[0, 2] = False
    assert nme_per_sample(pred, gt, np.array([2.0, 4.0]), mask=mask) == pytest.approx([0.0, 0.2])
    # inter-ocular 10: per point errors 0,0,0.4,0,0 ; NME 0.08 each
    m = landmark_metrics(pred, gt)
    assert m["nme_per_point"] == pytest.approx([0.0, 0.0, 0.4, 0.0, 0.0])
    assert m["nme"] == pytest.approx(0.08)
    json.dumps(m)
    with pytest.raises(ValueError, match="no scored landmark"):
        nme_per_sample(pred, gt, mask=np.zeros((2, 5), dtype=bool))
    with pytest.raises(ValueError, match="no labelled samples"):
        landmark_metrics(np.zeros((0, 5, 2)), np.zeros((0, 5, 2)))


def test_auc_and_cumulative_error_curve():
    # three faces with uniform offsets 0, 0.5, 2 and inter-ocular 10 -> NME 0, 0.05, 0.2
    gt = np.stack([FACE5] * 3)
    pred = gt + np.array([0.0, 0.5, 2.0])[:, None, None] * [1.0, 0.0]
    m = landmark_metrics(pred, gt, failure_threshold=0.1)
    assert m["nme"] == pytest.approx(0.25 / 3)
    assert m["failure_rate"] == pytest.approx(1 / 3)
    # AUC = mean(max(0, 1 - e/0.1)) = (1 + 0.5 + 0) / 3 = 0.5
    assert m["auc"] == pytest.approx(0.5)
    errs, frac = cumulative_error_curve(np.array([0.0, 0.05, 0.2]), max_error=0.1, steps=3)
    assert errs == pytest.approx([0.0, 0.05, 0.1])
    assert frac == pytest.approx([1 / 3, 2 / 3, 2 / 3])  # NME <= x
    # a fine-grid trapezoid converges to the exact AUC
    e = np.random.default_rng(1).random(200) * 0.15
    errs, frac = cumulative_error_curve(e, 0.1, 20001)
    trap = np.sum((frac[1:] + frac[:-1]) / 2 * np.diff(errs)) / 0.1
    assert trap == pytest.approx(np.mean(np.clip(1 - e / 0.1, 0, None)), abs=1e-3)


# --------------------------------------------------------------------------- attributes


def test_attribute_metrics_mask_and_omission():
    t = np.array([[0, 1, 0], [1, 1, 1], [0, 2, 1]])
    p = np.array([[0, 0, 1], [1, 1, 1], [1, 2, 0]])
    mask = np.array([[True, False, False], [True, True, False], [True, True, False]])
    m = attribute_metrics(t, p, ["gender", "pose", "smile"], mask=mask)
    # gender: 2 of 3 correct; pose: rows 1, 2 both correct (the wrong row 0 is masked); smile omitted
    assert m == {"gender": {"accuracy": pytest.approx(2 / 3), "num": 3}, "pose": {"accuracy": 1.0, "num": 2}}
    assert attribute_metrics(t, p, ["gender", "pose", "smile"])["pose"] == {"accuracy": pytest.approx(2 / 3), "num": 3}
    json.dumps(m)
    with pytest.raises(ValueError, match="no labelled samples"):
        attribute_metrics(t, p, ["a", "b", "c"], mask=np.zeros_like(mask))
