"""Every figure is written as a non-blank PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_covid import plots
from hf_covid.evaluation import calibration_bins, one_vs_rest_curves

FOUR = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")


def assert_non_blank_png(path: Path) -> None:
    assert path.is_file() and path.suffix == ".png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 0


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 80)
    scores = rng.random((80, 4))
    scores[np.arange(80), labels] += 0.8
    return labels, scores / scores.sum(axis=1, keepdims=True)


def trainer_state() -> dict:
    history = []
    for step in range(10, 110, 10):
        history.append({"loss": 1.0 / step, "epoch": step / 50, "step": step})
        if step % 50 == 0:
            history.append(
                {"eval_loss": 1.2 / step, "eval_accuracy": 0.5 + step / 250, "eval_runtime": 1.5}
                | {"epoch": step / 50, "step": step}
            )
    return {"log_history": history, "global_step": 100}


def test_training_curves_from_dict_and_from_file(tmp_path):
    assert_non_blank_png(plots.plot_training_curves(trainer_state(), tmp_path / "a.png"))
    (tmp_path / "trainer_state.json").write_text(json.dumps(trainer_state()))
    assert_non_blank_png(plots.plot_training_curves(tmp_path, tmp_path / "figures" / "b.png"))


def test_training_curves_without_history_raise(tmp_path):
    with pytest.raises(ValueError, match="log_history"):
        plots.plot_training_curves({"log_history": []}, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        plots.plot_training_curves(tmp_path, tmp_path / "x.png")


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_png(tmp_path, normalize):
    matrix = [[5, 1, 0, 0], [0, 4, 2, 0], [0, 0, 6, 0], [0, 0, 0, 0]]  # an empty row too
    path = plots.plot_confusion_matrix(matrix, FOUR, tmp_path / "cm.png", normalize=normalize)
    assert_non_blank_png(path)


def test_confusion_matrix_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="4x4"):
        plots.plot_confusion_matrix([[1, 2], [3, 4]], FOUR, tmp_path / "cm.png")


def test_curve_and_reliability_pngs(tmp_path, predictions):
    labels, probabilities = predictions
    curves = one_vs_rest_curves(labels, probabilities, FOUR)
    assert set(curves["roc"]) == set(FOUR)  # four classes: one curve each
    assert_non_blank_png(plots.plot_roc_curves(curves["roc"], tmp_path / "roc.png"))
    assert_non_blank_png(
        plots.plot_precision_recall_curves(curves["precision_recall"], tmp_path / "pr.png")
    )
    bins = calibration_bins(labels, probabilities)
    assert_non_blank_png(plots.plot_reliability_diagram(bins, tmp_path / "r.png"))


def test_binary_curves_draw_the_positive_class_only():
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    curves = one_vs_rest_curves(labels, probabilities, ["Non-COVID", "COVID"])
    assert list(curves["roc"]) == ["COVID"]
    assert curves["roc"]["COVID"]["area"] == 1.0
    assert curves["precision_recall"]["COVID"]["prevalence"] == 0.5
