"""Classification metrics and bootstrap intervals against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk

from hf_covid.evaluation import (
    bootstrap_confidence_intervals,
    calibration_bins,
    classification_metrics,
    precision_recall_points,
    roc_points,
    segmentation_metrics,
    undefined_metrics,
)
from hf_covid.evaluation.metrics import bootstrap_units
from hf_covid.evaluation.predict import group_metrics

BINARY = ("Non-COVID", "COVID")
FOUR = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")


@pytest.fixture
def binary_example() -> tuple[np.ndarray, np.ndarray]:
    """Five images: three Non-COVID, two COVID; one COVID is missed (p=0.3)."""
    covid_probability = np.array([0.1, 0.42, 0.33, 0.81, 0.3])
    labels = np.array([0, 0, 0, 1, 1])
    return labels, np.stack([1 - covid_probability, covid_probability], axis=1)


def random_four_class(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    scores = rng.random((n, 4))
    scores[np.arange(n), labels] += 0.6
    scores = np.round(scores, 1)  # ties, which the rank-based AUC must handle
    return labels, scores / scores.sum(axis=1, keepdims=True)


def test_binary_metrics_match_hand_computed_values(binary_example):
    labels, probabilities = binary_example
    m = classification_metrics(labels, probabilities, BINARY)
    # Predictions: Non-COVID, Non-COVID, Non-COVID, COVID, Non-COVID -> TP 1, FN 1, FP 0, TN 3.
    assert m["confusion_matrix"] == [[3, 0], [1, 1]]
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["covid_sensitivity"] == pytest.approx(0.5)
    assert m["recall_COVID"] == pytest.approx(0.5)
    assert m["covid_ppv"] == pytest.approx(1.0)
    assert m["specificity_COVID"] == pytest.approx(1.0)
    assert m["specificity_Non-COVID"] == pytest.approx(0.5)
    assert m["f1_COVID"] == pytest.approx(2 / 3)
    assert m["f1_Non-COVID"] == pytest.approx(6 / 7)
    assert m["f1_macro"] == pytest.approx((6 / 7 + 2 / 3) / 2)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # COVID scores 0.81 and 0.3 against 0.1, 0.42, 0.33: 4 of 6 pairs ranked correctly.
    assert m["roc_auc"] == pytest.approx(4 / 6)
    # Ranking P N N P N: precision 1 at recall 0.5, precision 2/4 at recall 1.
    assert m["pr_auc"] == pytest.approx(0.75)
    # Bins of width 1/15: {0.9 ok}, {0.58 ok}, {0.81 ok}, {0.67 ok, 0.7 wrong}.
    assert m["ece"] == pytest.approx((0.1 + 0.42 + 0.19 + 2 * abs(0.5 - 0.685)) / 5)
    assert m["n_samples"] == 5
    json.dumps(m)  # JSON-friendly


def test_four_class_metrics_agree_with_scikit_learn():
    labels, probabilities = random_four_class(300, seed=3)
    predictions = probabilities.argmax(axis=1)
    m = classification_metrics(labels, probabilities, FOUR)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(labels, predictions))
    assert m["f1_macro"] == pytest.approx(sk.f1_score(labels, predictions, average="macro"))
    precision = sk.precision_score(labels, predictions, average=None)
    assert m["precision_Viral Pneumonia"] == pytest.approx(precision[3])
    assert m["covid_sensitivity"] == pytest.approx(sk.recall_score(labels == 0, predictions == 0))
    assert m["roc_auc"] == pytest.approx(
        sk.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
    assert m["pr_auc"] == pytest.approx(
        sk.average_precision_score(np.eye(4)[labels], probabilities, average="macro")
    )
    assert np.array_equal(m["confusion_matrix"], sk.confusion_matrix(labels, predictions))


def test_absent_class_gives_none_auc_without_crashing():
    labels = np.array([0, 1, 2, 0, 1, 2])  # no "Viral Pneumonia"
    probabilities = np.full((6, 4), 0.1)
    probabilities[np.arange(6), labels] = 0.7
    m = classification_metrics(labels, probabilities, FOUR)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["roc_auc_Viral Pneumonia"] is None
    assert m["roc_auc_COVID"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(1.0)
    assert m["recall_Viral Pneumonia"] == 0.0  # zero_division=0
    assert m["balanced_accuracy"] == pytest.approx(1.0)  # over the classes present


def test_covid_keys_absent_without_covid_class():
    m = classification_metrics([0, 1], [[0.9, 0.1], [0.2, 0.8]], ("cat", "dog"))
    assert "covid_sensitivity" not in m
    assert m["roc_auc"] == pytest.approx(1.0)  # binary: second class is positive


@pytest.mark.parametrize(
    ("labels", "probabilities", "message"),
    [
        ([0, 1, 2], np.full((3, 2), 0.5), r"labels must lie in \[0, 1\]"),
        ([0, 1], np.full((3, 2), 0.5), "shape"),
        ([0.5, 1.0], np.full((2, 2), 0.5), "integer class ids"),
    ],
)
def test_bad_inputs_raise_clear_errors(labels, probabilities, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(labels, probabilities, BINARY)


def test_calibration_bins_count_every_sample(binary_example):
    labels, probabilities = binary_example
    bins = calibration_bins(labels, probabilities)
    assert bins["count"].sum() == 5
    assert bins["count"][10] == 2 and bins["accuracy"][10] == pytest.approx(0.5)


def test_bootstrap_interval_contains_point_estimate_and_narrows_with_more_samples():
    small = random_four_class(60, seed=1)
    large = random_four_class(600, seed=1)
    widths = []
    for labels, probabilities in (small, large):
        point = classification_metrics(labels, probabilities, FOUR)
        intervals = bootstrap_confidence_intervals(
            labels, probabilities, FOUR, n_resamples=400, seed=0
        )
        assert set(intervals) == {"accuracy", "f1_macro", "covid_sensitivity", "roc_auc"}
        for name, (low, high) in intervals.items():
            assert low <= point[name] <= high, name
        widths.append(intervals["accuracy"][1] - intervals["accuracy"][0])
    # The width shrinks about as 1/sqrt(n): sqrt(10) ~ 3.2.
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_reproducible_and_reports_unknown_metrics_as_none(binary_example):
    labels, probabilities = binary_example
    kwargs = {"metrics": ("accuracy", "no_such_metric"), "n_resamples": 50}
    first = bootstrap_confidence_intervals(labels, probabilities, BINARY, seed=7, **kwargs)
    second = bootstrap_confidence_intervals(labels, probabilities, BINARY, seed=7, **kwargs)
    assert first == second
    assert first["no_such_metric"] is None
    assert 0.0 <= first["accuracy"][0] <= first["accuracy"][1] <= 1.0


def test_unstratified_bootstrap_skips_resamples_where_auc_is_undefined():
    labels = np.array([0] * 9 + [1])
    probabilities = np.stack([np.linspace(0.9, 0.5, 10), np.linspace(0.1, 0.5, 10)], axis=1)
    intervals = bootstrap_confidence_intervals(
        labels, probabilities, BINARY, metrics=("roc_auc",), n_resamples=200, stratified=False
    )
    assert intervals["roc_auc"] == pytest.approx((1.0, 1.0))


def test_roc_and_precision_recall_points_agree_with_scikit_learn():
    labels, probabilities = random_four_class(200, seed=5)
    scores, positive = probabilities[:, 2], labels == 2
    false_positive_rate, true_positive_rate = roc_points(scores, positive)
    expected_fpr, expected_tpr, _ = sk.roc_curve(positive, scores, drop_intermediate=False)
    assert false_positive_rate == pytest.approx(expected_fpr)
    assert true_positive_rate == pytest.approx(expected_tpr)
    recall, precision = precision_recall_points(scores, positive)
    expected_precision, expected_recall, _ = sk.precision_recall_curve(positive, scores)
    assert recall == pytest.approx(expected_recall[::-1])
    assert precision == pytest.approx(expected_precision[::-1])
    # The step area under the curve is the average precision.
    assert np.sum(np.diff(recall) * precision[1:]) == pytest.approx(
        sk.average_precision_score(positive, scores)
    )


def test_segmentation_metrics_give_dice_and_iou():
    target = np.zeros((2, 1, 4, 4))
    target[:, :, :2] = 1  # 8 lung pixels each
    prediction = target.copy()
    prediction[1, :, :1] = 0  # second image: 4 of 8 found
    metrics = segmentation_metrics(prediction, target)
    assert metrics["dice"] == pytest.approx((1 + 2 * 4 / 12) / 2)
    assert metrics["iou"] == pytest.approx((1 + 4 / 8) / 2)
    assert segmentation_metrics(np.zeros((1, 4)), np.zeros((1, 4))) == {"dice": 1.0, "iou": 1.0}


def test_metrics_of_absent_classes_are_undefined_and_group_metrics_give_none():
    # Three Normal images, one predicted COVID: no COVID image, no Viral Pneumonia prediction.
    labels = np.array([2, 2, 2])
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.7, 0.1]])
    undefined = undefined_metrics(labels, probabilities, FOUR)
    assert {"covid_sensitivity", "recall_COVID", "f1_macro", "roc_auc"} <= undefined
    assert {"specificity_Normal", "precision_Viral Pneumonia", "f1_Viral Pneumonia"} <= undefined
    assert "covid_ppv" not in undefined  # COVID was predicted: a PPV of 0 is a real 0
    assert {"accuracy", "balanced_accuracy", "recall_Normal"}.isdisjoint(undefined)
    group = group_metrics({"labels": labels, "probabilities": probabilities}, FOUR)
    assert group["covid_sensitivity"] is None and group["f1_macro"] is None
    assert group["covid_ppv"] == 0.0 and group["accuracy"] == pytest.approx(2 / 3)


def test_no_metric_is_undefined_when_every_class_is_present_and_predicted(binary_example):
    labels, probabilities = binary_example
    assert undefined_metrics(labels, probabilities, BINARY) == set()
    group = group_metrics({"labels": labels, "probabilities": probabilities}, BINARY)
    assert group["covid_sensitivity"] == 0.5 and group["f1_macro"] is not None


def test_patient_bootstrap_draws_whole_patients_and_widens_the_interval():
    # 20 patients with 5 identical images each: 100 images but 20 independent observations.
    rng = np.random.default_rng(0)
    correct_patient = rng.random(20) < 0.7
    labels = np.repeat(rng.integers(0, 2, 20), 5)
    right = np.repeat(correct_patient, 5)
    probabilities = np.where(right[:, None], np.eye(2)[labels], np.eye(2)[1 - labels]) * 0.8 + 0.1
    groups = [f"p{index // 5}" for index in range(100)]
    units = bootstrap_units(groups, 100)
    assert units.max() == 19 and len(set(units[:5])) == 1
    by_image = bootstrap_confidence_intervals(labels, probabilities, ["A", "B"], ["accuracy"])
    by_patient = bootstrap_confidence_intervals(
        labels, probabilities, ["A", "B"], ["accuracy"], groups=groups
    )
    widths = [bounds["accuracy"][1] - bounds["accuracy"][0] for bounds in (by_image, by_patient)]
    assert widths[1] > 1.7 * widths[0]
    # A row without a patient is a unit of its own.
    assert bootstrap_units([None, None, "x", "x"], 4).tolist() == [0, 1, 2, 2]
