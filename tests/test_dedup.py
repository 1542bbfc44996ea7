"""Near-duplicate detection: resized, re-encoded, mirrored and cropped copies; distinct images apart."""

from __future__ import annotations

import io

import numpy as np
import pytest
from chest_trees import random_image
from PIL import Image
from scipy import ndimage

from hf_covid.data.dedup import (
    MAX_CROP_FRACTION,
    aligned_correlation,
    compute_image_hashes,
    find_near_duplicate_groups,
)


def _textured_image(rng: np.random.Generator, height: int = 240, width: int = 300) -> np.ndarray:
    """A distinct image in [0, 1] with structure at every scale from the whole frame down to a few
    pixels, as a radiograph has (a crop moves all of it)."""
    layers = [
        ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma) * sigma**2
        for sigma in (40, 15, 5, 2)
    ]
    image = np.sum(layers, axis=0)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def _crop(image: np.ndarray, top: float, bottom: float, left: float, right: float) -> np.ndarray:
    height, width = image.shape
    return image[
        round(top * height) : height - round(bottom * height),
        round(left * width) : width - round(right * width),
    ]


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)).clip(0, 1)


def _jpeg(image: np.ndarray, quality: int = 85) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255


def test_resized_brightened_and_mirrored_copies_are_found_by_the_hashes_alone():
    rng = np.random.default_rng(0)
    originals = [random_image(rng, 64).astype(np.float32) / 255 for _ in range(6)]
    copies = [
        np.clip(originals[0] * 1.1 + 0.05, 0, 1),  # brighter, more contrast
        np.asarray(Image.fromarray(originals[1]).resize((48, 48))),  # resized
        originals[2][:, ::-1],  # mirrored
    ]
    hashes = [compute_image_hashes(image) for image in originals + copies]
    assert find_near_duplicate_groups(hashes) == [[0, 6], [1, 7], [2, 8]]


@pytest.mark.parametrize(
    "crop",
    [
        (0.03, 0.0, 0.02, 0.0),
        (0.0, 0.04, 0.0, 0.0),
        (0.02, 0.02, 0.02, 0.02),
        (0.0, 0.0, 0.0, 0.05),
    ],
    ids=["top-left", "bottom", "all-sides", "right"],
)
def test_cropped_and_resized_copies_are_found_with_align_crops(crop):
    rng = np.random.default_rng(1)
    originals = [_textured_image(rng) for _ in range(8)]
    copy = _jpeg(_resized(_crop(originals[3], *crop), 0.6))
    hashes = [compute_image_hashes(image) for image in [*originals, copy]]
    assert find_near_duplicate_groups(hashes) == []  # the hashes alone miss a crop
    assert find_near_duplicate_groups(hashes, align_crops=True) == [[3, 8]]


def test_a_mirrored_crop_is_found_with_align_crops():
    rng = np.random.default_rng(2)
    originals = [_textured_image(rng) for _ in range(4)]
    copy = _resized(_crop(originals[1], 0.03, 0.0, 0.0, 0.03), 1.3)[:, ::-1]
    hashes = [compute_image_hashes(image) for image in [*originals, copy]]
    assert find_near_duplicate_groups(hashes, align_crops=True) == [[1, 4]]


def test_distinct_images_stay_apart_with_align_crops():
    rng = np.random.default_rng(3)
    hashes = [compute_image_hashes(_textured_image(rng)) for _ in range(40)]
    assert find_near_duplicate_groups(hashes, align_crops=True) == []


def test_aligned_correlation_undoes_a_crop_within_the_searched_range_only():
    rng = np.random.default_rng(4)
    image, other = _textured_image(rng), _textured_image(rng)

    def thumbnail(array: np.ndarray) -> np.ndarray:
        hex_digits = compute_image_hashes(array).thumbnail
        return np.frombuffer(bytes.fromhex(hex_digits), dtype=np.uint8).reshape(32, 32) / 1.0

    mild = _crop(image, MAX_CROP_FRACTION * 0.7, 0.0, 0.0, MAX_CROP_FRACTION * 0.7)
    zoomed = _crop(image, 0.25, 0.25, 0.25, 0.25)
    assert aligned_correlation(thumbnail(image), thumbnail(image)) == pytest.approx(1.0)
    assert aligned_correlation(thumbnail(image), thumbnail(mild)) > 0.98
    assert aligned_correlation(thumbnail(image), thumbnail(zoomed)) < 0.9
    assert aligned_correlation(thumbnail(image), thumbnail(other)) < 0.9


def test_a_flat_image_hashes_without_error_and_matches_nothing():
    rng = np.random.default_rng(5)
    flat = np.full((50, 60), 0.5, dtype=np.float32)
    hashes = [compute_image_hashes(flat), compute_image_hashes(_textured_image(rng))]
    assert set(bytes.fromhex(hashes[0].thumbnail)) == {0}
    assert find_near_duplicate_groups(hashes, align_crops=True) == []
