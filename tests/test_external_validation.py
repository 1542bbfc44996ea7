"""External validation: a classifier on a Radiography-layout folder holding some of its classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from chest_trees import snapshot, write_radiography_tree
from test_plots import assert_non_blank_png

import hf_covid.models as models
from hf_covid.evaluation import evaluate_checkpoint, evaluate_external, external_metrics
from hf_covid.evaluation.report import EXTERNAL_SPLIT
from hf_covid.evaluation.run import main
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.labels import RADIOGRAPHY_LABELS

SIZE = 32
TINY = {"widths": [4, 8], "classifier_hidden_sizes": [8]}


def save_tiny(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    ChestImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return folder


@pytest.fixture
def cnn_lstm_checkpoint(tmp_path) -> Path:
    config = models.CNNLSTMConfig(lstm_hidden_size=8, **TINY)
    return save_tiny(models.CNNLSTMForImageClassification(config), tmp_path / "cnn_lstm")


def test_external_metrics_on_two_of_four_classes_match_hand_counts():
    # COVID (id 0) and Normal (id 2) only; columns: COVID, Lung_Opacity, Normal, Viral Pneumonia.
    labels = np.array([0, 0, 0, 0, 2, 2, 2, 2])
    probabilities = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],  # COVID, right
            [0.6, 0.2, 0.1, 0.1],  # COVID, right
            [0.2, 0.5, 0.2, 0.1],  # COVID, predicted Lung_Opacity (missing class)
            [0.1, 0.1, 0.7, 0.1],  # COVID, predicted Normal
            [0.1, 0.1, 0.7, 0.1],  # Normal, right
            [0.15, 0.1, 0.65, 0.1],  # Normal, right
            [0.5, 0.1, 0.3, 0.1],  # Normal, predicted COVID
            [0.05, 0.1, 0.15, 0.7],  # Normal, predicted Viral Pneumonia (missing class)
        ]
    )
    result = external_metrics(labels, probabilities, RADIOGRAPHY_LABELS, n_resamples=200)
    metrics = result["metrics"]
    assert metrics["covid_sensitivity"] == pytest.approx(2 / 4)
    assert metrics["specificity_COVID"] == pytest.approx(3 / 4)  # Normal not called COVID
    assert metrics["accuracy"] == pytest.approx(4 / 8)
    assert metrics["recall_COVID"] == pytest.approx(2 / 4)
    assert metrics["recall_Normal"] == pytest.approx(2 / 4)
    assert metrics["missing_class_predictions"] == pytest.approx(2 / 8)
    # COVID scores 0.7 0.6 0.2 0.1 vs 0.1 0.15 0.5 0.05: 12.5 of 16 pairs ordered (ties half).
    assert metrics["roc_auc_COVID"] == pytest.approx(12.5 / 16)
    assert "f1_macro" not in metrics and "covid_ppv" not in metrics and "roc_auc" not in metrics
    assert not any(name.endswith(("Lung_Opacity", "Viral Pneumonia")) for name in metrics)
    for name, interval in result["confidence_intervals"].items():
        assert interval[0] <= metrics[name] <= interval[1], name


def test_without_covid_images_only_specificity_and_accuracy_are_reported():
    labels = np.array([2, 2, 3, 3])
    probabilities = np.array(
        [[0.1, 0.1, 0.7, 0.1], [0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7], [0.1, 0.1, 0.1, 0.7]]
    )
    metrics = external_metrics(labels, probabilities, RADIOGRAPHY_LABELS, n_resamples=50)["metrics"]
    assert metrics["specificity_COVID"] == pytest.approx(3 / 4)
    assert "covid_sensitivity" not in metrics and "roc_auc_COVID" not in metrics
    assert metrics["accuracy"] == pytest.approx(3 / 4)


def test_evaluate_script_validates_on_a_folder_with_two_of_four_classes(
    cnn_lstm_checkpoint, tmp_path, capsys
):
    data = write_radiography_tree(tmp_path / "other_hospital", ("COVID", "Normal"))
    before = snapshot(data)
    output = tmp_path / "external"

    assert (
        main([str(cnn_lstm_checkpoint), "--data_dir", str(data), "--output_dir", str(output)]) == 0
    )

    assert snapshot(data) == before  # nothing written into the data folder
    printed = capsys.readouterr().out
    assert "classes missing from the data: Lung_Opacity, Viral Pneumonia" in printed
    results = json.loads((output / "eval_results.json").read_text())
    assert results["split"] == EXTERNAL_SPLIT
    counts = results["dataset"]["class_counts"][EXTERNAL_SPLIT]
    assert counts == {"COVID": 10, "Lung_Opacity": 0, "Normal": 10, "Viral Pneumonia": 0}
    metrics = results["metrics"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == metrics["n_samples"] == 20
    assert matrix[[1, 3]].sum() == 0  # no true Lung_Opacity or Viral Pneumonia
    assert metrics["covid_sensitivity"] == pytest.approx(matrix[0, 0] / 10)
    assert metrics["specificity_COVID"] == pytest.approx(1 - matrix[2, 0] / 10)
    assert metrics["missing_class_predictions"] == pytest.approx(matrix[:, [1, 3]].sum() / 20)
    assert 0.0 <= metrics["roc_auc_COVID"] <= 1.0
    assert "f1_macro" not in metrics
    intervals = results["confidence_intervals"]
    for name in ("accuracy", "covid_sensitivity", "specificity_COVID", "roc_auc_COVID"):
        assert intervals[name][0] <= metrics[name] <= intervals[name][1]
    report = (output / "report.md").read_text()
    assert "Missing: Lung_Opacity, Viral Pneumonia" in report
    assert "| COVID specificity (vs the classes present) |" in report
    assert "Per class" not in report  # no per-class rows for the missing classes
    assert set(results["figures"]) >= {"confusion_matrix", "roc_curves"}
    for relative in results["figures"].values():
        assert_non_blank_png(output / relative)


def test_external_split_of_a_full_folder_uses_every_image(cnn_lstm_checkpoint, tmp_path):
    data = write_radiography_tree(tmp_path / "data", RADIOGRAPHY_LABELS, images_per_class=3)
    results = evaluate_checkpoint(
        cnn_lstm_checkpoint,
        data_dir=data,
        split=EXTERNAL_SPLIT,
        output_dir=tmp_path / "out",
        n_resamples=50,
        figures=False,
        progress=False,
    )
    assert results["metrics"]["n_samples"] == 12
    assert results["metrics"]["missing_class_predictions"] == 0.0


def test_external_validation_of_a_mask_model_says_which_masks_it_used(tmp_path):
    config = models.DualChannelCNNConfig(**TINY)
    dual_channel = save_tiny(
        models.DualChannelCNNForImageClassification(config), tmp_path / "dual_channel"
    )
    data = write_radiography_tree(tmp_path / "other_hospital", ("COVID", "Normal"))
    results = evaluate_external(
        dual_channel, data, output_dir=tmp_path / "out", n_resamples=50, progress=False
    )
    assert results["masks"] == "the dataset's own masks"
    assert "the dataset's own masks" in (tmp_path / "out" / "report.md").read_text()


def test_external_validation_refuses_to_write_into_the_data_folder(cnn_lstm_checkpoint, tmp_path):
    data = write_radiography_tree(tmp_path / "data", ("COVID",), images_per_class=2)
    with pytest.raises(ValueError, match="lies inside the data folder"):
        evaluate_external(cnn_lstm_checkpoint, data, output_dir=data / "results", progress=False)
    assert not (data / "results").exists()


def test_a_one_class_folder_reports_sensitivity_and_draws_no_curve(cnn_lstm_checkpoint, tmp_path):
    data = write_radiography_tree(tmp_path / "data", ("COVID",), images_per_class=4)
    results = evaluate_external(
        cnn_lstm_checkpoint, data, output_dir=tmp_path / "out", n_resamples=50, progress=False
    )
    metrics = results["metrics"]
    assert metrics["covid_sensitivity"] == pytest.approx(metrics["accuracy"])
    assert "specificity_COVID" not in metrics and "roc_auc_COVID" not in metrics
    assert "roc_curves" not in results["figures"] and "confusion_matrix" in results["figures"]


def test_external_validation_names_the_problem_with_the_folder_or_the_model(tmp_path):
    config = models.DualInputCNNConfig(fusion_hidden_size=8, **TINY)
    dual = save_tiny(models.DualInputCNNForImageClassification(config), tmp_path / "dual")
    data = write_radiography_tree(tmp_path / "data", ("COVID",), images_per_class=2)
    with pytest.raises(ValueError, match="Dual-input CNN .* is not one"):
        evaluate_external(dual, data, output_dir=tmp_path / "out", progress=False)
    lstm = save_tiny(
        models.CNNLSTMForImageClassification(models.CNNLSTMConfig(lstm_hidden_size=8, **TINY)),
        tmp_path / "lstm",
    )
    (tmp_path / "empty" / "Cats").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds none of the model's classes .* \['Cats'\]"):
        evaluate_external(lstm, tmp_path / "empty", output_dir=tmp_path / "out", progress=False)
