"""Preprocess once (uint8 cache), augment per epoch (collator), and the throughput measurement."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from chest_trees import write_radiography_tree, write_xray_ct_tree

from hf_covid.benchmarks import NaiveImageFolderDataset, measure_dataloader_throughput
from hf_covid.data import (
    ChestAugmentation,
    ChestBatchCollator,
    build_radiography_dataset,
    build_xray_ct_dataset,
    preprocess_for_training,
)
from hf_covid.data import pipeline as pipeline_module
from hf_covid.data.augment import _affine_grid
from hf_covid.models.image_processing_chest import ChestImageProcessor

IDENTITY = {"rotation_degrees": 0, "scale": (1, 1), "translate": 0, "brightness": 0, "contrast": 0}
GEOMETRY_ONLY = {"brightness": 0, "contrast": 0, "noise_std": 0}


def _square(size: int = 32, count: int = 1) -> torch.Tensor:
    """(count, 1, size, size) zeros with a bright off-centre rectangle (also usable as a mask)."""
    image = torch.zeros(count, 1, size, size)
    image[:, :, 8:20, 4:14] = 1.0
    return image


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


@pytest.fixture
def xray_ct_rows(tmp_path):
    """Every preprocessed example of an X-ray + CT set with unpaired (missing-modality) rows."""
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
    return [row for name in processed for row in processed[name]]


def test_preprocess_marks_a_missing_modality_with_zeros(xray_ct_rows):
    rows = xray_ct_rows
    ct_only = [row for row in rows if not row["xray_available"]]
    assert ct_only and all(row["ct_available"] for row in ct_only)
    assert all(row["pixel_values"].sum() == 0 for row in ct_only)
    assert all(row["ct_pixel_values"].shape == (1, 16, 16) for row in rows)
    batch = ChestBatchCollator(ChestAugmentation())(ct_only[:2] + rows[:2])
    assert batch["pixel_values"][:2].abs().sum() == 0  # no noise on a missing image
    xray_only = [row for row in rows if not row["ct_available"]]
    assert xray_only
    batch = ChestBatchCollator(ChestAugmentation())(xray_only + rows[:2])
    assert batch["ct_pixel_values"][: len(xray_only)].abs().sum() == 0
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
    processor = ChestImageProcessor(
        num_channels=3, do_normalize=True, image_mean=[0.5], image_std=[0.25]
    )
    normalised = ChestBatchCollator(processor=processor)(examples)
    assert normalised["pixel_values"].shape == (4, 3, 24, 24)
    torch.testing.assert_close(
        normalised["pixel_values"][:, 1:2], (batch["pixel_values"] - 0.5) / 0.25
    )


def test_augmentation_moves_image_and_mask_together():
    torch.manual_seed(0)
    mask = _square(count=5)
    image = mask.clone()  # the image is its own mask: any misalignment shows
    augmentation = ChestAugmentation(rotation_degrees=10, translate=0.15, **GEOMETRY_ONLY)
    moved_image, moved_mask = augmentation.augment_batch(image, mask)
    assert set(moved_mask.unique().tolist()) <= {0.0, 1.0}  # nearest neighbour for masks
    for row in range(5):
        assert not torch.equal(moved_mask[row], mask[row])
        bright = moved_image[row] > 0.5
        covered = moved_mask[row].bool()
        assert (bright & covered).sum() / (bright | covered).sum() > 0.9  # intersection / union
        assert ((moved_image[row] > 0.5).float() == moved_mask[row]).float().mean() > 0.97


def test_augmentation_with_identity_settings_returns_the_input():
    images, mask = torch.rand(4, 1, 24, 24), _square(24, count=4)
    augmented, augmented_mask = ChestAugmentation(**IDENTITY, noise_std=0).augment_batch(
        images, mask
    )
    torch.testing.assert_close(augmented, images)
    assert torch.equal(augmented_mask, mask)


def test_augmentation_does_not_flip_by_default_but_can():
    image = torch.zeros(10, 1, 8, 8)
    image[..., :2] = 1.0  # bright left edge
    unchanged = ChestAugmentation(**IDENTITY, noise_std=0)
    torch.testing.assert_close(unchanged.augment_batch(image)[0], image)
    flipping = ChestAugmentation(**IDENTITY, noise_std=0, horizontal_flip=True)
    torch.manual_seed(0)
    flipped = flipping.augment_batch(image)[0]
    is_flipped = (flipped - image.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    is_kept = (flipped - image).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert is_flipped.any() and is_kept.any()  # each row flips (or not) on its own draw
    assert (is_flipped ^ is_kept).all()
    assert "horizontal_flip=False" in repr(unchanged)


def test_augmentation_rotates_about_the_image_centre():
    image = torch.zeros(8, 1, 33, 33)
    image[:, :, 15:18, :] = 1.0  # a horizontal bar through the centre
    torch.manual_seed(0)
    rotated = ChestAugmentation(rotation_degrees=90, scale=(1, 1), translate=0, **GEOMETRY_ONLY)
    rotated = rotated.augment_batch(image)[0]
    outside_the_bar = rotated.sum() - rotated[:, :, 15:18, :].sum()
    assert outside_the_bar > 0.3 * rotated.sum()  # none without a rotation
    assert (rotated[:, :, 16, 16] > 0.9).all()  # the centre stays put


def test_zoom_matches_torchvision_affine():
    """The geometry follows torchvision's RandomAffine convention (zoom about the centre)."""
    from torchvision.transforms.v2 import functional as tvF

    images = torch.rand(2, 1, 20, 28)
    zoom = ChestAugmentation(rotation_degrees=0, scale=(1.2, 1.2), translate=0, **GEOMETRY_ONLY)
    expected = tvF.affine(
        images,
        angle=0.0,
        translate=[0, 0],
        scale=1.2,
        shear=[0.0, 0.0],
        interpolation=tvF.InterpolationMode.BILINEAR,
    )
    torch.testing.assert_close(zoom.augment_batch(images)[0], expected, atol=1e-4, rtol=0)


def test_sampling_grid_is_the_grid_of_torch_affine_grid():
    theta = torch.randn(3, 2, 3)
    for height, width in ((7, 7), (5, 9), (1, 4)):
        expected = torch.nn.functional.affine_grid(
            theta, [3, 1, height, width], align_corners=False
        )
        torch.testing.assert_close(_affine_grid(theta, height, width), expected)


def test_augmentation_leaves_rows_that_are_not_applied_untouched():
    images = torch.rand(4, 1, 16, 16)
    images[1] = 0.0  # a missing modality: zeros, and no noise may be added to them
    mask = _square(16, count=4)
    original_images, original_mask = images.clone(), mask.clone()
    apply = torch.tensor([True, False, True, False])
    augmented, augmented_mask = ChestAugmentation(noise_std=0.1).augment_batch(images, mask, apply)
    assert torch.equal(augmented[~apply], images[~apply])
    assert torch.equal(augmented_mask[~apply], mask[~apply])
    assert not torch.equal(augmented[apply], images[apply])
    assert torch.equal(images, original_images) and torch.equal(mask, original_mask)  # not in place
    nothing = ChestAugmentation().augment_batch(images, apply=torch.zeros(4, dtype=torch.bool))
    assert torch.equal(nothing[0], images)


def test_augmentation_is_reproducible_with_the_same_seed():
    images, mask = torch.rand(4, 1, 16, 16), _square(16, count=4)
    augmentation = ChestAugmentation(horizontal_flip=True)
    torch.manual_seed(3)
    first = augmentation.augment_batch(images, mask)
    torch.manual_seed(3)
    second = augmentation.augment_batch(images, mask)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(augmentation.augment_batch(images, mask)[0], first[0])


def test_augmentation_draws_its_own_parameters_for_each_row_and_stays_in_unit_range():
    images = torch.rand(1, 1, 16, 16).expand(6, -1, -1, -1)
    augmentation = ChestAugmentation(brightness=0.8, contrast=0.8, noise_std=0.3)
    augmented = augmentation.augment_batch(images)[0]
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    assert all(not torch.equal(augmented[0], row) for row in augmented[1:])


def test_augmentation_rejects_single_images_and_mismatched_masks():
    augmentation = ChestAugmentation()
    with pytest.raises(ValueError, match="must be \\(B, C, H, W\\)"):
        augmentation.augment_batch(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match="mask must be"):
        augmentation.augment_batch(torch.rand(2, 1, 16, 16), torch.ones(2, 1, 8, 8))
    with pytest.raises(TypeError, match="float images"):
        augmentation.augment_batch(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))


def test_collator_augments_each_modality_in_one_batched_call(xray_ct_rows, monkeypatch):
    calls = []
    augment_batch = ChestAugmentation.augment_batch

    def counted(self, images, mask=None, apply=None):
        calls.append(None if apply is None else apply.tolist())
        return augment_batch(self, images, mask, apply)

    monkeypatch.setattr(ChestAugmentation, "augment_batch", counted)
    batch = ChestBatchCollator(ChestAugmentation())(xray_ct_rows)
    assert calls == [batch["xray_available"].tolist(), batch["ct_available"].tolist()]


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
