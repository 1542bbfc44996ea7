"""The study's confound probes on tiny collections and tiny checkpoints (structure, not numbers)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from chest_trees import random_image
from datasets import Dataset, DatasetDict
from PIL import Image
from test_plots import assert_non_blank_png

from hf_covid.evaluation.predict import MODALITY_VARIANTS
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.labels import BINARY_LABELS
from hf_covid.registry import get_model_family
from hf_covid.study.confounds import (
    REGIONS,
    blank,
    collection_probe,
    confounds_markdown,
    lung_masks,
    probe_settings,
    run_confounds,
)
from hf_covid.study.probe_data import (
    COMPOSITIONS_DIR,
    LUNG_UNET,
    MODELS_DIR,
    Compositions,
    StudyImages,
)

SIZE = 32
SITES = ("https://radiopaedia.org/cases/{}", "https://www.sirm.org/covid-{}")
COMPOSED_CLASSES = ("COVID", "Normal", "Viral Pneumonia")


def lung_rectangle(size: int = 40) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[6:34, 5:35] = 255
    return mask


def write_study_collections(root: Path, seed: int = 0) -> Path:
    """ieee8023 (COVID from two sites, 3 in 4 with lung masks; adult normals), Kermany, COVID-CT."""
    rng = np.random.default_rng(seed)
    ieee = root / "ieee8023"
    (ieee / "images").mkdir(parents=True)
    (ieee / "masks").mkdir()
    rows = []
    for patient in range(1, 21):
        name = f"covid-{patient}.png"
        Image.fromarray(random_image(rng)).save(ieee / "images" / name)
        if patient % 4:
            Image.fromarray(lung_rectangle()).save(ieee / "masks" / name)
        url = SITES[patient % 2].format(patient)
        rows.append((str(patient), "COVID-19", "PA", "X-ray", name, url))
    for patient in range(21, 25):
        name = f"normal-{patient}.png"
        Image.fromarray(random_image(rng)).save(ieee / "images" / name)
        rows.append((str(patient), "No Finding", "PA", "X-ray", name, "https://eurorad.org/x"))
    columns = ["patientid", "age", "finding", "view", "modality", "folder", "filename", "url"]
    with (ieee / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*columns, "license"])
        writer.writeheader()
        for patient, finding, view, modality, name, url in rows:
            writer.writerow(
                dict(
                    zip(
                        columns,
                        [patient, "50", finding, view, modality, "images", name, url],
                        strict=True,
                    )
                )
                | {"license": "CC BY 4.0"}
            )
    train = root / "kermany" / "chest_xray" / "train"
    for folder, names in (
        ("NORMAL", [f"IM-{p:04d}-0001.jpeg" for p in range(1, 17)]),
        ("PNEUMONIA", [f"person{p}_virus_{p}.jpeg" for p in range(1, 17)]),
    ):
        (train / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(random_image(rng)).save(train / folder / name, format="JPEG")
    for folder in ("CT_COVID", "CT_NonCOVID"):
        (root / "covid_ct" / folder).mkdir(parents=True)
        for index in range(6):
            Image.fromarray(random_image(rng, 48)).save(root / "covid_ct" / folder / f"{index}.png")
    return root


def save_tiny_study_model(study_dir: Path, key: str, labels=None) -> Path:
    """A randomly initialised tiny model of family ``key`` saved as the study would."""
    family = get_model_family(key)
    folder = study_dir / MODELS_DIR / key
    family.tiny_model(labels).save_pretrained(folder)
    processor = ChestImageProcessor(
        size={"height": SIZE, "width": SIZE}, **dict(family.processor_options)
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny collections and a study folder with the lung U-Net and three classifiers."""
    base = tmp_path_factory.mktemp("study")
    collections = write_study_collections(base / "collections")
    study_dir = base / "study"
    save_tiny_study_model(study_dir, LUNG_UNET)
    for key in ("cnn_lstm", "dual_channel"):
        save_tiny_study_model(study_dir, key, COMPOSED_CLASSES)
    save_tiny_study_model(study_dir, "dual_input", BINARY_LABELS)
    return study_dir, collections


@pytest.fixture(scope="module")
def confounds(study) -> dict:
    study_dir, collections = study
    return run_confounds(study_dir, collections, quick=True)


def assert_scores_within_intervals(scores: dict) -> None:
    for name, interval in scores["confidence_intervals"].items():
        value = scores["metrics"][name]
        assert 0.0 <= value <= 1.0, name
        if interval is not None:
            assert interval[0] - 1e-9 <= value <= interval[1] + 1e-9, name


def test_blanking_splits_an_image_into_lungs_and_the_rest():
    images = torch.rand(2, 1, 8, 8)
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, 2:6, 1:7] = 1
    outside, inside = blank(images, masks, "outside_lungs"), blank(images, masks, "lungs_only")
    assert torch.equal(blank(images, masks, "whole"), images)
    assert torch.allclose(outside + inside, images)
    assert (outside[masks.bool()] == 0).all() and (inside[~masks.bool()] == 0).all()
    with pytest.raises(ValueError, match="unknown region 'heart'"):
        blank(images, masks, "heart")


def test_human_masks_are_used_where_they_exist_and_the_unet_elsewhere():
    human = torch.zeros(2, 1, 4, 4)
    human[0, :, :2] = 1
    images = StudyImages(
        images=torch.rand(2, 1, 4, 4),
        human_masks=human,
        has_human_mask=np.array([True, False]),
        labels=np.array([0, 1]),
        class_names=("COVID", "Normal"),
        sources=np.array(["ieee8023", "kermany"]),
        patient_ids=np.array(["1", "IM-1"]),
        image_ids=np.array(["images/a.png", "train/NORMAL/b.jpeg"]),
    )
    masks = lung_masks(images, lambda pixels: torch.ones_like(pixels))
    assert torch.equal(masks["unet"], torch.ones(2, 1, 4, 4))
    assert torch.equal(masks["human"][0], human[0]) and torch.equal(
        masks["human"][1], torch.ones(1, 4, 4)
    )


def test_collection_probe_reports_each_region_with_intervals_and_chance(confounds):
    probe = confounds["collection_probe"]
    assert probe["classes"] == ["kermany", "ieee8023"]
    assert set(probe["test_counts"]) == {"kermany", "ieee8023"}
    assert sum(probe["test_counts"].values()) == probe["n_test"] > 0
    assert [(c["region"], c["mask_source"]) for c in probe["conditions"]] == [
        ("whole", None),
        ("outside_lungs", "unet"),
        ("lungs_only", "unet"),
        ("outside_lungs", "human"),
    ]
    assert 0.5 <= probe["chance"]["accuracy"] <= 1.0
    for condition in probe["conditions"]:
        assert condition["region"] in REGIONS
        assert condition["metrics"]["n_samples"] == probe["n_test"]
        assert_scores_within_intervals(condition)


def test_lungs_only_evaluation_covers_every_radiography_classifier(confounds):
    by_model = {entry["model"]: entry for entry in confounds["lungs_only"]}
    assert set(by_model) == {"cnn_lstm", "dual_channel"}
    for entry in by_model.values():
        whole, *blanked = entry["conditions"]
        assert whole["region"] == "whole" and "accuracy_drop" not in whole
        assert [c["region"] for c in blanked] == ["lungs_only", "lungs_only"]
        for condition in entry["conditions"]:
            assert condition["metrics"]["n_samples"] == entry["n_test"]
            assert_scores_within_intervals(condition)
            assert list(condition["predicted_fractions"]) == list(COMPOSED_CLASSES)
            assert sum(condition["predicted_fractions"].values()) == pytest.approx(1.0)
        for condition in blanked:
            expected = whole["metrics"]["accuracy"] - condition["metrics"]["accuracy"]
            assert condition["accuracy_drop"] == pytest.approx(expected)
            low, high = condition["accuracy_drop_interval"]
            assert -1.0 <= low <= condition["accuracy_drop"] <= high <= 1.0


def test_leave_one_source_out_holds_out_each_site_with_its_patients(confounds):
    loso = confounds["leave_one_source_out"]
    assert loso["source_counts"] == {"radiopaedia.org": 10, "sirm.org": 10}
    folds = loso["held_out"]
    assert sorted(fold["source"] for fold in folds) == ["radiopaedia.org", "sirm.org"]
    for fold in folds:
        assert fold["n_held_out_covid"] == 10
        held_out = fold["held_out_source"]["metrics"]
        assert held_out["n_samples"] > 10  # its COVID images plus the test controls
        assert_scores_within_intervals(fold["in_distribution"])
        assert_scores_within_intervals(fold["held_out_source"])


def test_dual_input_reports_each_input_set_and_whom_the_fusion_follows(confounds):
    dual = confounds["dual_input"]
    assert set(dual["variants"]) == set(MODALITY_VARIANTS)
    assert dual["pairing"] == "label" and "different people" in dual["pairing_note"]
    for scores in dual["variants"].values():
        assert scores["metrics"]["n_samples"] == dual["n_pairs"] > 0
        assert_scores_within_intervals(scores)
    if dual["single_inputs_disagree"]:
        assert dual["fused_follows_xray"] + dual["fused_follows_ct"] == pytest.approx(1.0)
    else:
        assert dual["fused_follows_xray"] is None


def test_confound_figures_and_markdown(confounds, study):
    study_dir, _ = study
    assert set(confounds["figures"]) == {"collection_probe", "lungs_only"}
    for name in confounds["figures"].values():
        assert_non_blank_png(study_dir / "figures" / name)
    text = confounds_markdown(confounds)
    for heading in ("(a) Can the collection", "(b) Trained classifiers", "(c) Leave one", "(d)"):
        assert heading in text
    assert "| outside lungs (unet masks) |" in text and "| whole |" in text
    assert "not any clinical performance" in text


def test_collection_probe_without_both_collections_says_why():
    images = StudyImages(
        images=torch.rand(4, 1, 8, 8),
        human_masks=torch.zeros(4, 1, 8, 8),
        has_human_mask=np.zeros(4, dtype=bool),
        labels=np.array([1, 1, 2, 2]),
        class_names=COMPOSED_CLASSES,
        sources=np.array(["kermany"] * 4),
        patient_ids=np.array(["IM-1", "IM-2", "person1", "person2"]),
        image_ids=np.array([f"train/x{i}.jpeg" for i in range(4)]),
    )
    result = collection_probe(images, images, None, probe_settings(quick=True))
    assert result == {"skipped": "the splits do not hold images of both collections to probe"}
    assert "both collections" in confounds_markdown(
        {"collection_probe": result, "leave_one_source_out": {"held_out": []}}
    )


def test_compositions_read_the_saved_training_split_and_compose_only_without_it(tmp_path):
    study_dir = tmp_path / "study"
    saved = DatasetDict(
        {
            name: Dataset.from_dict({"image_id": [f"{name}-{i}" for i in range(2)]})
            for name in ("train", "test")
        }
    )
    saved.save_to_disk(str(study_dir / COMPOSITIONS_DIR / "radiography"))
    compositions = Compositions(tmp_path / "no_collections", study_dir)
    test = compositions.for_checkpoint(None, "radiography")["test"]
    assert test["image_id"] == ["test-0", "test-1"]
    assert compositions.recomposed == [] and compositions.note() is None
    with pytest.raises(FileNotFoundError):  # no saved X-ray + CT and no collections to compose
        compositions.for_checkpoint(None, "xray_ct")


def test_confounds_say_when_they_composed_the_collections_again(confounds):
    assert sorted(confounds["recomposed"]) == ["radiography", "xray_ct"]
    assert any("composed again" in note for note in confounds["notes"])
