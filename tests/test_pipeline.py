"""Preprocess once (uint8 cache), augment per epoch (collator), and the throughput measurement."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from chest_trees import write_radiography_tree, write_xray_ct_tree

from hf_covid.benchmarking import NaiveImageFolderDataset, measure_dataloader_throughput
from hf_covid.data import (
    ChestAugmentation,
    ChestBatchCollator,
    build_radiography_dataset,
    build_xray_ct_dataset,
    preprocess_for_training,
)
from hf_covid.data import pipeline as pipeline_module

IDENTITY = {"rotation_degrees": 0, "scale": (1, 1), "translate": 0, "brightness": 0, "contrast": 0}


@pytest.fixture
def radiography(tmp_path):
    root = write_radiography_tree(tmp_path / "radiography", without_mask=1, mask_size=32)
    return build_radiography_dataset(
        root, classes=["COVID", "Normal"], cache_dir=tmp_path / "cache"
    )


@pytest.fixture
def processed(radiography, tmp_path):
    return preprocess_for_training(radiography, image_size=24, cache_dir=tmp_path / "cache")


def test_preprocess_stores_uint8_images_and_binary_masks_at_the_target_size(processed):
    example = processed["train"][0]
    assert example["pixel_values"].dtype == torch.uint8
    assert example["pixel_values"].shape == (1, 24, 24)
    assert example["lung_mask"].shape == (1, 24, 24)
    assert set(example["lung_mask"].unique().tolist()) <= {0, 1}
    assert example["labels"].dtype == torch.int64
    assert isinstance(example["image_id"], str)  # ids are kept
    rows = [row for name in processed for row in processed[name]]
    missing = [row for row in rows if not row["mask_available"]]
    assert len(missing) == 2 and all(row["lung_mask"].sum() == 0 for row in missing)


def test_preprocess_runs_once_and_is_reused_from_the_cache(
    radiography, processed, tmp_path, monkeypatch
):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded again despite the preprocessed cache")

    monkeypatch.setattr(pipeline_module, "load_image", must_not_decode)
    again = preprocess_for_training(radiography, image_size=24, cache_dir=tmp_path / "cache")
    assert torch.equal(again["train"][0]["pixel_values"], processed["train"][0]["pixel_values"])
    cache_files = list((tmp_path / "cache" / "hf_covid" / "preprocessed").glob("*.arrow"))
    assert len(cache_files) == 3  # one per split


def test_preprocess_marks_a_missing_modality_with_zeros(tmp_path):
    counts = {("xray", "COVID"): 6, ("xray", "Non-COVID"): 6, ("ct", "COVID"): 3}
    counts[("ct", "Non-COVID")] = 9
    root = write_xray_ct_tree(tmp_path / "xct", per_class=counts)
    dataset = build_xray_ct_dataset(root, keep_unpaired=True, cache_dir=tmp_path / "cache")
    processed = preprocess_for_training(
        dataset,
        image_size=16,
        image_column="xray",
        mask_column=None,
        ct_column="ct",
        cache_dir=tmp_path / "cache",
    )
    rows = [row for name in processed for row in processed[name]]
    ct_only = [row for row in rows if not row["xray_available"]]
    assert ct_only and all(row["ct_available"] for row in ct_only)
    assert all(row["pixel_values"].sum() == 0 for row in ct_only)
    assert all(row["ct_pixel_values"].shape == (1, 16, 16) for row in rows)
    batch = ChestBatchCollator(ChestAugmentation())(ct_only[:2] + rows[:2])
    assert batch["pixel_values"][:2].abs().sum() == 0  # no noise on a missing image
    assert batch["xray_available"].dtype == torch.bool
    assert set(batch) == {
        "pixel_values",
        "ct_pixel_values",
        "xray_available",
        "ct_available",
        "labels",
    }


def test_collator_batches_float_images_with_channels_and_normalisation(processed):
    examples = [processed["train"][index] for index in range(4)]
    batch = ChestBatchCollator()(examples)
    assert (
        batch["pixel_values"].shape == (4, 1, 24, 24)
        and batch["pixel_values"].dtype == torch.float32
    )
    torch.testing.assert_close(batch["pixel_values"][0], examples[0]["pixel_values"].float() / 255)
    assert batch["lung_mask"].shape == (4, 1, 24, 24)
    assert batch["labels"].dtype == torch.long
    assert "image_id" not in batch and "mask_available" not in batch  # model inputs only
    normalised = ChestBatchCollator(num_channels=3, mean=[0.5], std=[0.25])(examples)
    assert normalised["pixel_values"].shape == (4, 3, 24, 24)
    torch.testing.assert_close(
        normalised["pixel_values"][:, 1:2], (batch["pixel_values"] - 0.5) / 0.25
    )


def test_augmentation_moves_image_and_mask_together():
    torch.manual_seed(0)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:20, 4:14] = 1.0
    image = mask.clone()  # the image is its own mask: any misalignment shows
    augmentation = ChestAugmentation(
        rotation_degrees=10, translate=0.15, brightness=0, contrast=0, noise_std=0
    )
    for _ in range(5):
        moved_image, moved_mask = augmentation(image, mask)
        assert not torch.equal(moved_mask, mask)
        assert set(moved_mask.unique().tolist()) <= {0.0, 1.0}  # nearest neighbour for masks
        agreement = ((moved_image > 0.5).float() == moved_mask).float().mean()
        assert agreement > 0.97


def test_augmentation_does_not_flip_by_default_but_can():
    image = torch.zeros(1, 8, 8)
    image[:, :, :2] = 1.0  # bright left edge
    unchanged = ChestAugmentation(**IDENTITY, noise_std=0)
    assert all(torch.equal(unchanged(image)[0], image) for _ in range(10))
    flipping = ChestAugmentation(**IDENTITY, noise_std=0, horizontal_flip=True)
    torch.manual_seed(0)
    assert any(torch.equal(flipping(image)[0], image.flip(-1)) for _ in range(10))
    assert "horizontal_flip=False" in repr(unchanged)


def test_collator_augments_per_example_and_survives_pickling(processed):
    examples = [processed["train"][index] for index in range(4)]
    collator = ChestBatchCollator(ChestAugmentation(noise_std=0.05))
    restored = pickle.loads(pickle.dumps(collator))
    plain = ChestBatchCollator()(examples)["pixel_values"]
    augmented = restored(examples)["pixel_values"]
    assert augmented.shape == plain.shape and not torch.equal(augmented, plain)
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0


def test_measure_dataloader_throughput_reports_samples_per_second(radiography, processed):
    collator = ChestBatchCollator()
    naive = NaiveImageFolderDataset(radiography["train"], image_size=24)
    naive_batch = collator([naive[0], naive[1]])
    assert naive_batch["pixel_values"].shape == (2, 1, 24, 24)
    for dataset in (naive, processed["train"]):
        result = measure_dataloader_throughput(dataset, collator, batch_size=4, epochs=2)
        assert result["samples"] == len(dataset) and result["samples_per_second"] > 0
        assert result["peak_memory_mb"] > 0
    with pytest.raises(ValueError, match="at least 2"):
        measure_dataloader_throughput(naive, collator, epochs=1)
    assert np.isfinite(result["memory_increase_mb"])
