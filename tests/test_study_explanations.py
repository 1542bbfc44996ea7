"""Explanation scores of the study's classifiers on tiny collections (structure and invariants)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_confounds import (
    COMPOSED_CLASSES,
    save_tiny_study_model,
    write_study_collections,
)
from test_plots import assert_non_blank_png

from hf_covid.models.labels import BINARY_LABELS
from hf_covid.study.explanations import (
    EMPTY_MAPS,
    explanations_markdown,
    lung_energy,
    remove_pixels,
    run_explanations,
)
from hf_covid.study.probe_data import LUNG_UNET

VERDICTS = {
    "more on the lungs than a uniform map",
    "less on the lungs than a uniform map",
    "no different from a uniform map",
    EMPTY_MAPS,
}


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> tuple[dict, Path]:
    base = tmp_path_factory.mktemp("explained")
    collections = write_study_collections(base / "collections")
    study_dir = base / "study"
    save_tiny_study_model(study_dir, LUNG_UNET)
    for key in ("cnn_lstm", "dual_channel"):
        save_tiny_study_model(study_dir, key, COMPOSED_CLASSES)
    save_tiny_study_model(study_dir, "dual_input", BINARY_LABELS)
    return run_explanations(study_dir, collections, quick=True), study_dir


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
    result, study_dir = explained
    by_model = {entry["model"]: entry for entry in result["models"]}
    assert set(by_model) == {"cnn_lstm", "dual_channel", "dual_input"}
    for key, entry in by_model.items():
        assert 1 <= entry["n_images"] <= result["settings"]["max_images"], key
        area = entry["lung_area_fraction"]
        assert area["mean"] == pytest.approx(28 * 30 / 1600, abs=0.05)  # the written masks
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
        assert_non_blank_png(study_dir / "figures" / entry["figure"])
    assert result["figures"] == {key: f"explanations_{key}.png" for key in by_model}


def test_explanations_markdown_names_each_model_and_method(explained):
    result, _ = explained
    text = explanations_markdown(result)
    assert "| Model | Map | Images |" in text
    for key in ("cnn_lstm", "dual_channel", "dual_input"):
        assert f"| {key} | Grad-CAM |" in text and f"| {key} | HiResCAM |" in text
    assert "not where disease" in text


def test_explanations_say_when_they_composed_the_collections_again(explained):
    result, _ = explained
    assert sorted(result["recomposed"]) == ["radiography", "xray_ct"]
    assert any("composed again" in note for note in result["notes"])
