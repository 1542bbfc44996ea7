"""The ``chest_classification`` evaluate module: loaded by path offline, equal to the numpy metrics."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
from transformers import EvalPrediction

from hf_covid.evaluation.metrics import (
    EVALUATE_MODULE_PATH,
    classification_metrics,
    load_classification_metric,
)
from hf_covid.models.labels import RADIOGRAPHY_LABELS
from hf_covid.training import make_compute_metrics

CLASS_NAMES = list(RADIOGRAPHY_LABELS)


def _predictions(n: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.arange(num_classes), rng.integers(0, num_classes, n - num_classes)]
    probabilities = rng.dirichlet(np.ones(num_classes), n).astype(np.float32)
    return labels, probabilities


def test_module_loads_by_path_and_add_batch_then_compute_equals_classification_metrics():
    metric = evaluate.load(str(EVALUATE_MODULE_PATH), keep_in_memory=True)
    assert isinstance(metric, evaluate.EvaluationModule)
    labels, probabilities = _predictions(60, 4)
    for start in range(0, 40, 10):
        metric.add_batch(
            predictions=probabilities[start : start + 10], references=labels[start : start + 10]
        )
    computed = metric.compute(
        predictions=probabilities[40:], references=labels[40:], class_names=CLASS_NAMES
    )
    assert computed == classification_metrics(labels, probabilities, CLASS_NAMES)


def test_binary_task_reports_covid_as_the_positive_class():
    labels, probabilities = _predictions(30, 2, seed=1)
    computed = load_classification_metric().compute(
        predictions=probabilities, references=labels, class_names=["Non-COVID", "COVID"]
    )
    expected = classification_metrics(labels, probabilities, ["Non-COVID", "COVID"])
    assert computed == expected
    assert computed["covid_sensitivity"] == expected["recall_COVID"]


def test_compute_without_class_names_says_what_is_missing():
    labels, probabilities = _predictions(8, 2)
    with pytest.raises(ValueError, match="pass class_names"):
        load_classification_metric().compute(predictions=probabilities, references=labels)


def test_trainer_compute_metrics_goes_through_the_module_with_the_same_numbers():
    labels, probabilities = _predictions(50, 4, seed=2)
    logged = make_compute_metrics("classification", CLASS_NAMES)(
        EvalPrediction(predictions=probabilities, label_ids=labels)
    )
    expected = classification_metrics(labels, probabilities, CLASS_NAMES)
    assert logged["f1_macro"] == expected["f1_macro"]
    assert logged["recall_Viral Pneumonia"] == expected["recall_Viral Pneumonia"]
    assert {name: expected[name] for name in logged} == logged
