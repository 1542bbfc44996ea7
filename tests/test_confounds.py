"""The study's confound probes on synthetic images whose collection is or is not visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from study_trees import COMPOSED_CLASSES, save_tiny_study_model

from hf_covid.study.configurations import STUDY_CONFIGURATIONS, get_configuration
from hf_covid.study.confounds import (
    HOSPITAL_FILMS,
    REGIONS,
    ProbeSettings,
    blank,
    collection_probe,
    leave_one_source_out,
    lungs_only_drop,
    prior_corrected,
    probe_settings,
)
from hf_covid.study.confounds_report import reads_the_collection
from hf_covid.study.probe_data import StudyImages

SIZE = 16


def study_images(sources, labels, *, seed=0, marked=(), class_names=COMPOSED_CLASSES, sites=None):
    """Noise images with a lung rectangle; images of the ``marked`` sources get a bright corner
    outside the lungs (a collection you can read off the image, but not from the lungs)."""
    rng = np.random.default_rng(seed)
    count = len(sources)
    images = torch.from_numpy(rng.random((count, 1, SIZE, SIZE)).astype(np.float32)) * 0.5
    masks = torch.zeros(count, 1, SIZE, SIZE)
    masks[:, :, 3:13, 3:13] = 1
    for index, source in enumerate(sources):
        if source in marked:
            images[index, :, :3, :3] = 1.0
    return StudyImages(
        images=images,
        unet_masks=masks,
        human_masks=masks.clone(),
        has_human_mask=np.ones(count, bool),
        labels=np.array(labels),
        class_names=tuple(class_names),
        sources=np.array(sources),
        sites=np.array(sites if sites is not None else [""] * count),
        patient_ids=np.array([f"p{index}" for index in range(count)]),
        image_ids=np.array([f"i{index}" for index in range(count)]),
        age_groups=np.array(["adult"] * count),
    )


def collection_views(marked=("a",)):
    sources = ["a", "b"] * 40
    return {
        name: study_images(sources, [0, 1] * 40, seed=seed, marked=marked)
        for seed, name in enumerate(("train", "validation", "test"))
    }


def test_blanking_splits_an_image_into_lungs_and_the_rest():
    images = torch.rand(2, 1, 4, 4)
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, :, 1:3, 1:3] = 1
    assert torch.equal(blank(images, masks, "whole"), images)
    assert torch.equal(
        blank(images, masks, "outside_lungs") + blank(images, masks, "lungs_only"), images
    )
    with pytest.raises(ValueError, match="unknown region"):
        blank(images, masks, "heart")


def test_prior_correction_makes_the_validation_mean_uniform_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    validation = rng.dirichlet([8, 1, 1], size=50)  # a probe that always says class 0
    corrected = prior_corrected(validation, validation)
    assert corrected.mean(axis=0) == pytest.approx([1 / 3] * 3, abs=0.05)
    # With two classes the correction is a monotone map of the odds: the ranking stays.
    binary = rng.dirichlet([6, 1], size=30)
    adjusted = prior_corrected(binary, binary[:10])
    assert (np.argsort(adjusted[:, 1]) == np.argsort(binary[:, 1])).all()


def test_collection_probe_reads_a_marker_outside_the_lungs_and_not_inside():
    settings = ProbeSettings(image_size=SIZE, epochs=15, n_resamples=100)
    probe = collection_probe(collection_views(), settings)
    scores = {c["region"]: c["metrics"]["balanced_accuracy"] for c in probe["conditions"]}
    assert list(scores) == list(REGIONS)
    assert scores["whole"] > 0.9 and scores["outside_lungs"] > 0.9
    assert scores["lungs_only"] < 0.75  # nothing to read inside the lungs
    assert probe["chance"]["balanced_accuracy"] == 0.5
    assert reads_the_collection(probe, "outside_lungs") is True
    assert reads_the_collection(probe, "lungs_only") is False


def test_collection_probe_of_one_collection_says_why():
    views = collection_views()
    single = {name: view.select(view.sources == "a") for name, view in views.items()}
    assert "skipped" in collection_probe(single, probe_settings(quick=True))


def test_leave_one_source_out_holds_out_each_site_and_the_hospital_films_with_their_patients():
    sources = ["ieee8023"] * 30 + [HOSPITAL_FILMS] * 10 + ["nih_chestxray14"] * 20
    labels = [0] * 40 + [1] * 20
    sites = ["radiopaedia.org"] * 15 + ["sirm.org"] * 15 + [""] * 30
    train = study_images(sources, labels, sites=sites)
    test = study_images(sources, labels, sites=sites, seed=1)
    result = leave_one_source_out(train, test, probe_settings(quick=True))
    held = {entry["source"]: entry for entry in result["held_out"]}
    assert set(held) == {"radiopaedia.org", HOSPITAL_FILMS}  # quick: the largest site only
    assert held[HOSPITAL_FILMS]["n_held_out_covid"] == 20
    assert held[HOSPITAL_FILMS]["n_train"] == 60 - 10  # its 10 training images left out
    assert held["radiopaedia.org"]["held_out_source"]["metrics"]["n_samples"] == 30 + 20


def test_hospital_films_the_composition_lacks_are_tested_as_never_seen():
    sources = ["ieee8023"] * 20 + ["kermany"] * 20
    train = study_images(sources, [0] * 20 + [1] * 20)
    test = study_images(sources, [0] * 20 + [1] * 20, seed=1)
    films = study_images([HOSPITAL_FILMS] * 6, [0] * 6, seed=2)
    result = leave_one_source_out(train, test, probe_settings(quick=True), films)
    unseen = [entry for entry in result["held_out"] if entry.get("not_in_composition")]
    assert unseen[0]["n_held_out_covid"] == 6 and unseen[0]["n_train"] == 40


def test_lungs_only_drop_reports_the_paired_drop_and_the_collapsed_class(tmp_path):
    checkpoint = save_tiny_study_model(tmp_path, "dual_channel", COMPOSED_CLASSES)
    test = study_images(["ieee8023", "kermany"] * 10, [0, 1, 2, 1] * 5)
    result = lungs_only_drop("dual_channel", checkpoint, test, probe_settings(quick=True))
    whole, lungs = result["conditions"]
    assert (whole["region"], lungs["region"]) == ("whole", "lungs_only")
    low, high = lungs["accuracy_drop_interval"]
    assert low <= lungs["accuracy_drop"] <= high
    assert sum(lungs["predicted_fractions"].values()) == pytest.approx(1.0)


def test_configurations_add_one_mitigation_each():
    unet = Path("unet")
    recipes = [c.recipe_overrides(unet, takes_mask=False) for c in STUDY_CONFIGURATIONS]
    assert recipes[0]["composition"] == "pediatric_controls" and "mask_model" not in recipes[0]
    assert recipes[1]["composition"] == "adult_controls" and recipes[1]["classes"] is None
    assert recipes[2]["lung_crop_margin"] == 0.08 and recipes[2]["mask_model"] == str(unet)
    assert recipes[3]["intensity_standardization"] == "clahe"
    assert recipes[4]["balance_by"] == ["source", "view"]
    assert recipes[5]["augmentation"]["outside_lungs_probability"] == 0.5
    for before, after in zip(recipes, recipes[1:], strict=False):
        assert set(before) <= set(after)
    assert get_configuration("2_lung_crop").lung_crop
    with pytest.raises(KeyError, match="0_pediatric_controls"):
        get_configuration("7_everything")
