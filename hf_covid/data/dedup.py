"""Near-duplicate detection with perceptual hashes and an aligned thumbnail check (numpy/scipy only).

Public COVID collections share images (the same radiograph is in several GitHub and Kaggle
collections, resized, re-encoded or cropped from a paper figure), and the Extensive COVID-19 X-Ray
and CT data set holds augmented copies of its originals. A copy in the test split of an image the
model saw in training inflates every metric, so the split keeps each near-duplicate group together.

Every pair of images is compared (and every pair with one image mirrored, for flipped copies):

1. a 64-bit DCT pHash (8x8 lowest frequencies of a 32x32 thumbnail) proposes candidates:
   chest radiographs all look alike at that scale (distinct images are often within 10 bits);
2. a 1024-bit pHash (32x32 of a 128x128 thumbnail) decides: resized, re-encoded (JPEG),
   brightness, contrast or gamma changed, noisy and mirrored copies are found;
3. with ``align_crops=True``, the candidates that the 1024-bit hash leaves in doubt, where cropped
   copies land (a crop of a few percent moves that hash as far as another patient's image), are
   checked by aligning 32x32 thumbnails: each side of one image is searched as a crop or
   extension of the other's, up to `MAX_CROP_FRACTION`, and the best correlation decides.

Measured on copies of the public collections (2,807 images of ieee8023, Kermany and COVID-CT;
see docs/reliability.md): stages 1-2 find 16 of the 28 near-duplicate pairs their curators list
and neither of the 2 across collections (a COVID-CT slice cropped from the same paper figure as
an ieee8023 image); with ``align_crops`` all 28 and both, plus 11 pairs of CT slices from one paper's scan (adjacent slices, or one slice
printed twice: one patient, so keeping them in one split is right), for 0.6 s of CPU time on top
of 3.8 s of hashing. Crops are found while the two hashes still propose the pair (on synthetic
textures up to about 5% off a side; the real figure crops all were); not found: rotated copies,
larger crops and zooms.
The third stage is off by default because it cannot tell apart images drawn from one template:
after alignment, distinct synthetic phantoms correlate up to 0.995, above real cropped copies
(0.983-1.0), and on 600 Radiography phantoms it joins 325 of them into one group (stages 1-2:
no group). Turn it on for real collections, never for phantoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.fft import dctn

__all__ = [
    "DEFAULT_MAX_COARSE_DISTANCE",
    "DEFAULT_MAX_FINE_DISTANCE",
    "DEFAULT_MIN_ALIGNED_CORRELATION",
    "HASH_FORMAT_VERSION",
    "MAX_CROP_FRACTION",
    "ImageHashes",
    "UnionFind",
    "aligned_correlation",
    "compute_image_hashes",
    "find_near_duplicate_groups",
    "phash_bits",
]

HASH_FORMAT_VERSION = 2
"""Changes whenever `ImageHashes` or how it is computed changes; caches of hashes key on it."""
DEFAULT_MAX_COARSE_DISTANCE = 8
"""Largest 64-bit pHash Hamming distance for a pair to be checked further."""
DEFAULT_MAX_FINE_DISTANCE = 100
"""Largest 1024-bit pHash Hamming distance (about 10%) at which a pair is a near-duplicate without
further check. Measured on phantom radiographs: copies (JPEG, resize, noise, gamma) under 50 bits,
+-20% contrast with clipping under 95; the closest of 4 million pairs of distinct phantoms 132."""
_MAX_ALIGNED_CHECK_DISTANCE = 400
"""Largest 1024-bit pHash distance at which a pair gets the aligned thumbnail check. Cropped copies
lie at 106-286 bits on the public collections and at 278-382 bits for 2-5% crops of synthetic
textures (unrelated images: about 512); 242 of the 1,829 pairs that the 64-bit hash proposes on
the public collections are within 400 bits, so the check costs little."""
DEFAULT_MIN_ALIGNED_CORRELATION = 0.98
"""Smallest aligned thumbnail correlation of a near-duplicate. On the public collections the
known near-duplicate pairs score 0.983-1.0; every other pair above 0.98 is two slices of one CT
scan, and the closest pair of different patients (two Kermany children) scores 0.979."""
MAX_CROP_FRACTION = 0.09
"""Largest crop (or extension) of each side, as a fraction of the side, that alignment searches."""

_THUMBNAIL_SIDE = 32
_ALIGNED_SIDE = 24
"""Samples per axis over the overlap of two aligned thumbnails (under the thumbnail side, so a
crop never samples beyond the thumbnail's resolution)."""
_CROP_STEPS = 7
"""Crop fractions searched per side: evenly spaced in [-MAX_CROP_FRACTION, MAX_CROP_FRACTION]."""


class ImageHashes(NamedTuple):
    """Perceptual hashes of an image and of its mirror image, and a thumbnail to align.

    Attributes:
        coarse: 64-bit pHash (8x8 lowest DCT frequencies of a 32x32 thumbnail).
        coarse_mirror: ``coarse`` of the left-right mirrored image.
        fine: 1024-bit pHash (32x32 of a 128x128 thumbnail) as 256 hex digits.
        fine_mirror: ``fine`` of the mirrored image.
        thumbnail: 32x32 thumbnail (image squeezed to a square, min-max scaled to 0-255) as 2048
            hex digits, row by row, for the aligned check.
    """

    coarse: int
    coarse_mirror: int
    fine: str
    fine_mirror: str
    thumbnail: str


def _thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    resized = Image.fromarray(np.asarray(image, dtype=np.float32)).resize(
        (side, side), Image.Resampling.BOX
    )
    return np.asarray(resized, dtype=np.float64)


def phash_bits(thumbnail: np.ndarray, frequencies: int) -> np.ndarray:
    """pHash: which of the ``frequencies`` x ``frequencies`` lowest DCT terms exceed their median."""
    low = dctn(thumbnail, type=2, norm="ortho")[:frequencies, :frequencies]
    return (low > np.median(low)).ravel()


def compute_image_hashes(image: np.ndarray) -> ImageHashes:
    """Perceptual hashes and the alignment thumbnail of a 2-D grayscale image (any size, any
    value range)."""
    small, large = _thumbnail(image, _THUMBNAIL_SIDE), _thumbnail(image, 128)

    def coarse(thumbnail: np.ndarray) -> int:
        return int.from_bytes(np.packbits(phash_bits(thumbnail, 8)).tobytes(), "big")

    def fine(thumbnail: np.ndarray) -> str:
        return np.packbits(phash_bits(thumbnail, 32)).tobytes().hex()

    low, high = small.min(), small.max()
    scaled = (small - low) / (high - low) if high > low else np.zeros_like(small)
    return ImageHashes(
        coarse=coarse(small),
        coarse_mirror=coarse(small[:, ::-1]),
        fine=fine(large),
        fine_mirror=fine(large[:, ::-1]),
        thumbnail=np.rint(scaled * 255).astype(np.uint8).tobytes().hex(),
    )


def _linear_resampling(start: float, stop: float, samples: int, size: int) -> np.ndarray:
    """(samples, size) matrix sampling ``[start, stop]`` (fractions of an axis of ``size`` pixels)
    at ``samples`` evenly spaced points, by linear interpolation."""
    positions = (start + (np.arange(samples) + 0.5) / samples * (stop - start)) * size - 0.5
    positions = np.clip(positions, 0, size - 1)
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, size - 1)
    weight = positions - below
    matrix = np.zeros((samples, size))
    np.add.at(matrix, (np.arange(samples), below), 1 - weight)
    np.add.at(matrix, (np.arange(samples), above), weight)
    return matrix


def _alignment_resamplings() -> tuple[np.ndarray, np.ndarray]:
    """Per-axis resampling matrices of the two images for every alignment searched.

    An alignment says which part ``[first, last]`` of the first image's axis the second image's
    axis covers (beyond ``[0, 1]`` where the second image extends further); both are sampled over
    the part they share.
    """
    offsets = np.linspace(-MAX_CROP_FRACTION, MAX_CROP_FRACTION, _CROP_STEPS)
    first_image, second_image = [], []
    for first in offsets:
        for last in 1 + offsets:
            low, high = max(0.0, first), min(1.0, last)
            first_image.append(_linear_resampling(low, high, _ALIGNED_SIDE, _THUMBNAIL_SIDE))
            second_image.append(
                _linear_resampling(
                    (low - first) / (last - first),
                    (high - first) / (last - first),
                    _ALIGNED_SIDE,
                    _THUMBNAIL_SIDE,
                )
            )
    return np.stack(first_image), np.stack(second_image)


_FIRST_RESAMPLINGS, _SECOND_RESAMPLINGS = _alignment_resamplings()
_IDENTITY_ALIGNMENT = len(_FIRST_RESAMPLINGS) // 2


def _correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of images along the leading axis."""
    first = first - first.mean(axis=(-2, -1), keepdims=True)
    second = second - second.mean(axis=(-2, -1), keepdims=True)
    numerator = (first * second).sum(axis=(-2, -1))
    denominator = np.sqrt((first * first).sum(axis=(-2, -1)) * (second * second).sum(axis=(-2, -1)))
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def aligned_correlation(first: np.ndarray, second: np.ndarray, rounds: int = 2) -> float:
    """Best correlation of two thumbnails over crops and extensions of each side.

    The rows' alignment is searched with the columns' fixed, then the columns' with the rows'
    fixed, ``rounds`` times (a coordinate search: the two axes barely interact).

    Args:
        first: (32, 32) thumbnail.
        second: (32, 32) thumbnail.
        rounds: Rounds of the row-then-column search.

    Returns:
        The Pearson correlation over the shared part at the best alignment found, in [-1, 1].
    """
    first_rows = first_columns = _FIRST_RESAMPLINGS[_IDENTITY_ALIGNMENT]
    second_rows = second_columns = _SECOND_RESAMPLINGS[_IDENTITY_ALIGNMENT]
    best = -1.0
    for _ in range(rounds):
        scores = _correlations(
            _FIRST_RESAMPLINGS @ first @ first_columns.T,
            _SECOND_RESAMPLINGS @ second @ second_columns.T,
        )
        row = int(scores.argmax())
        first_rows, second_rows = _FIRST_RESAMPLINGS[row], _SECOND_RESAMPLINGS[row]
        scores = _correlations(
            first_rows @ first @ _FIRST_RESAMPLINGS.transpose(0, 2, 1),
            second_rows @ second @ _SECOND_RESAMPLINGS.transpose(0, 2, 1),
        )
        column = int(scores.argmax())
        first_columns, second_columns = _FIRST_RESAMPLINGS[column], _SECOND_RESAMPLINGS[column]
        best = float(scores[column])
    return best


class UnionFind:
    """Disjoint sets over ``0..size-1`` (path halving, union by size)."""

    def __init__(self, size: int):
        self.parent = list(range(size))
        self.size = [1] * size

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        first, second = self.find(first), self.find(second)
        if first == second:
            return
        if self.size[first] < self.size[second]:
            first, second = second, first
        self.parent[second] = first
        self.size[first] += self.size[second]

    def groups(self) -> list[list[int]]:
        """Every set as a sorted list of members, ordered by smallest member."""
        members: dict[int, list[int]] = {}
        for item in range(len(self.parent)):
            members.setdefault(self.find(item), []).append(item)
        return sorted(members.values(), key=lambda group: group[0])


def _candidate_pairs(
    coarse: np.ndarray,
    other_coarse: np.ndarray,
    fine: np.ndarray,
    other_fine: np.ndarray,
    max_coarse_distance: int,
    max_candidate_distance: int,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j), i != j, within both distances, and their fine-hash distances."""
    rows_found, columns_found, distances_found = [], [], []
    for start in range(0, len(coarse), chunk):
        block = coarse[start : start + chunk, None] ^ other_coarse[None, :]
        rows, columns = np.nonzero(np.bitwise_count(block) <= max_coarse_distance)
        rows += start
        keep = rows != columns
        rows, columns = rows[keep], columns[keep]
        distances = np.bitwise_count(fine[rows] ^ other_fine[columns]).sum(axis=1)
        close = distances <= max_candidate_distance
        rows_found.append(rows[close])
        columns_found.append(columns[close])
        distances_found.append(distances[close])
    return tuple(np.concatenate(found) for found in (rows_found, columns_found, distances_found))


def find_near_duplicate_groups(
    hashes: Sequence[ImageHashes],
    *,
    max_coarse_distance: int = DEFAULT_MAX_COARSE_DISTANCE,
    max_fine_distance: int = DEFAULT_MAX_FINE_DISTANCE,
    align_crops: bool = False,
    min_aligned_correlation: float = DEFAULT_MIN_ALIGNED_CORRELATION,
) -> list[list[int]]:
    """Group images that are copies of each other, directly or with one image mirrored.

    Args:
        hashes: One `ImageHashes` per image.
        max_coarse_distance: 64-bit pHash distance under which a pair is checked further.
        max_fine_distance: 1024-bit pHash distance under which a pair is a near-duplicate.
        align_crops: Also check the pairs the 1024-bit hash leaves in doubt by aligning their
            thumbnails, to find cropped copies (real collections only; see the module
            docstring for why not phantoms).
        min_aligned_correlation: Aligned thumbnail correlation from which a checked pair is a
            near-duplicate.

    Returns:
        Groups of two or more image indices (connected components of the near-duplicate pairs),
        each sorted, ordered by first index.
    """
    if len(hashes) < 2:
        return []
    coarse = np.array([item.coarse for item in hashes], dtype=np.uint64)
    coarse_mirror = np.array([item.coarse_mirror for item in hashes], dtype=np.uint64)

    def fine_words(values: list[str]) -> np.ndarray:
        words = np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8")
        return words.astype(np.uint64).reshape(len(values), -1)

    def thumbnail(index: int) -> np.ndarray:
        pixels = np.frombuffer(bytes.fromhex(hashes[index].thumbnail), dtype=np.uint8)
        return pixels.reshape(_THUMBNAIL_SIDE, _THUMBNAIL_SIDE).astype(np.float64)

    fine = fine_words([item.fine for item in hashes])
    fine_mirror = fine_words([item.fine_mirror for item in hashes])
    candidate_distance = max_fine_distance
    if align_crops:
        candidate_distance = max(max_fine_distance, _MAX_ALIGNED_CHECK_DISTANCE)
    union_find = UnionFind(len(hashes))
    for mirrored, other_coarse, other_fine in (
        (False, coarse, fine),
        (True, coarse_mirror, fine_mirror),
    ):
        rows, columns, distances = _candidate_pairs(
            coarse,
            other_coarse,
            fine,
            other_fine,
            max_coarse_distance,
            candidate_distance,
        )
        for first, second, distance in zip(
            rows.tolist(), columns.tolist(), distances.tolist(), strict=True
        ):
            if union_find.find(first) == union_find.find(second):
                continue
            if distance > max_fine_distance:  # a possible crop: align the thumbnails
                other = thumbnail(second)[:, ::-1] if mirrored else thumbnail(second)
                if aligned_correlation(thumbnail(first), other) < min_aligned_correlation:
                    continue
            union_find.union(first, second)
    return [group for group in union_find.groups() if len(group) > 1]
