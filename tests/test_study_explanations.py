"""Explanation scores of the study's classifiers on synthetic images (structure, invariants)."""

from __future__ import annotations

import pytest
import torch
from study_trees import COMPOSED_CLASSES, save_tiny_study_model
from test_confounds import study_images
from test_plots import assert_non_blank_png

from hf_covid.study.explanations import (
    EMPTY_MAPS,
    explain_checkpoint,
    explanation_settings,
    lung_energy,
    remove_pixels,
)

VERDICTS = {
    "more on the lungs than a uniform map",
    "less on the lungs than a uniform map",
    "no different from a uniform map",
    EMPTY_MAPS,
}


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> tuple[dict, object]:
    base = tmp_path_factory.mktemp("explained")
    test = study_images(["ieee8023", "kermany"] * 8, [0, 1, 2, 0] * 4)
    results = {}
    for key in ("cnn_lstm", "dual_channel", "resnet"):
        checkpoint = save_tiny_study_model(base, key, COMPOSED_CLASSES)
        figure = base / "figures" / f"explanations_{key}.png"
        results[key] = explain_checkpoint(key, checkpoint, test, explanation_settings(True), figure)
    return results, base


def test_a_uniform_map_scores_the_lung_area_and_a_map_inside_the_lungs_scores_one():
    masks = torch.zeros(3, 1, 10, 10)
    masks[:, :, 2:8, 1:6] = 1  # 30 of 100 pixels
    inside = masks[:, 0] * torch.rand(3, 10, 10)
    scores = {
        "uniform": lung_energy(torch.ones(3, 10, 10), masks),
        "inside": lung_energy(inside + 1e-3 * masks[:, 0], masks),
        "outside": lung_energy(1 - masks[:, 0], masks),
    }
    assert scores["uniform"]["area_fraction"] == pytest.approx([0.3] * 3)
    assert scores["uniform"]["energy_inside"] == pytest.approx([0.3] * 3)
    assert scores["inside"]["energy_inside"] == pytest.approx([1.0] * 3)
    assert scores["outside"]["energy_inside"] == pytest.approx([0.0] * 3)


def test_removing_pixels_changes_only_the_chosen_ones_and_fills_them_from_neighbours():
    images = torch.rand(2, 1, 8, 8)
    ramp = torch.arange(64, dtype=torch.float32).view(1, 8, 8).repeat(2, 1, 1)
    top = remove_pixels(images, ramp, 0.25, most=True)
    bottom = remove_pixels(images, ramp, 0.25, most=False)
    chosen_top = ramp >= 48  # the 16 most attributed pixels
    assert torch.equal(top[:, 0][~chosen_top], images[:, 0][~chosen_top])
    assert torch.equal(bottom[:, 0][ramp >= 16], images[:, 0][ramp >= 16])
    assert float(top.min()) >= float(images.min()) and float(top.max()) <= float(images.max())
    with pytest.raises(ValueError, match="fraction must be in"):
        remove_pixels(images, ramp, 1.0, most=True)


def test_every_xray_classifier_is_scored_against_its_lung_area(explained):
    results, base = explained
    for key, entry in results.items():
        assert 1 <= entry["n_images"] <= explanation_settings(True).max_images, key
        area = entry["lung_area_fraction"]
        assert area["mean"] == pytest.approx(100 / 256)  # the synthetic lung rectangle
        assert set(entry["methods"]) == {"gradcam", "hirescam"}
        for scores in entry["methods"].values():
            assert 0 <= scores["n_empty_maps"] <= entry["n_images"]
            assert scores["verdict"] in VERDICTS
            if scores["n_empty_maps"] == entry["n_images"]:
                assert scores["verdict"] == EMPTY_MAPS and "energy_inside" not in scores
            else:
                energy = scores["energy_inside"]
                low, high = energy["interval"]
                assert 0.0 <= low <= energy["mean"] <= high <= 1.0
            if scores["n_empty_maps"] == 0:
                excess = scores["excess_over_uniform"]["mean"]
                assert excess == pytest.approx(energy["mean"] - area["mean"])
            deletion = scores["deletion"]["0.2"]
            difference = deletion["drop_top"]["mean"] - deletion["drop_bottom"]["mean"]
            assert deletion["faithfulness"]["mean"] == pytest.approx(difference)
            assert -1.0 <= deletion["faithfulness"]["mean"] <= 1.0
        assert_non_blank_png(base / "figures" / entry["figure"])


def test_a_split_without_masked_covid_images_is_skipped_with_the_reason(tmp_path):
    checkpoint = save_tiny_study_model(tmp_path, "cnn_lstm", COMPOSED_CLASSES)
    test = study_images(["kermany"] * 4, [1, 2, 1, 2])
    entry = explain_checkpoint("cnn_lstm", checkpoint, test, explanation_settings(True))
    assert entry["skipped"] == "no COVID test X-ray with a human lung mask"
