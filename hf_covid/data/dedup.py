"""Near-duplicate detection with perceptual hashes (DCT "pHash", numpy/scipy only).

Public COVID collections share images (the same radiograph is in several GitHub and Kaggle
collections, resized or re-encoded), and the Extensive COVID-19 X-Ray and CT data set holds
augmented copies of its originals. A copy in the test split of an image the model saw in training
inflates every metric, so the split keeps each near-duplicate group together.

Chest radiographs all look alike at the 8x8 scale of the classic 64-bit pHash (distinct images
are often within 10 bits), so the 64-bit hash only proposes candidate pairs, and a 1024-bit
pHash (32x32 lowest DCT frequencies of a 128x128 thumbnail) decides. Pairs are compared directly
and with one image mirrored (flipped copies). Found: resized, re-encoded (JPEG), brightness,
contrast and gamma changed, noisy and mirrored copies. Not found: rotated, cropped or zoomed
copies (a few degrees or percent already move them as far as a different patient's image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.fft import dctn

DEFAULT_MAX_COARSE_DISTANCE = 8
"""Largest 64-bit pHash Hamming distance for a pair to be checked further."""
DEFAULT_MAX_FINE_DISTANCE = 100
"""Largest 1024-bit pHash Hamming distance (about 10%) between near-duplicates. Measured on
phantom radiographs: copies (JPEG, resize, noise, gamma) under 50 bits, +-20% contrast with
clipping under 95; the closest of 4 million pairs of distinct phantoms 132."""


class ImageHashes(NamedTuple):
    """Perceptual hashes of an image and of its mirror image.

    Attributes:
        coarse: 64-bit pHash (8x8 lowest DCT frequencies of a 32x32 thumbnail).
        coarse_mirror: ``coarse`` of the left-right mirrored image.
        fine: 1024-bit pHash (32x32 of a 128x128 thumbnail) as 256 hex digits.
        fine_mirror: ``fine`` of the mirrored image.
    """

    coarse: int
    coarse_mirror: int
    fine: str
    fine_mirror: str


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
    """Perceptual hashes of a 2-D grayscale image (any size, any value range)."""
    small, large = _thumbnail(image, 32), _thumbnail(image, 128)

    def coarse(thumbnail: np.ndarray) -> int:
        return int.from_bytes(np.packbits(phash_bits(thumbnail, 8)).tobytes(), "big")

    def fine(thumbnail: np.ndarray) -> str:
        return np.packbits(phash_bits(thumbnail, 32)).tobytes().hex()

    return ImageHashes(
        coarse=coarse(small),
        coarse_mirror=coarse(small[:, ::-1]),
        fine=fine(large),
        fine_mirror=fine(large[:, ::-1]),
    )


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


def _near_pairs(
    coarse: np.ndarray,
    other_coarse: np.ndarray,
    fine: np.ndarray,
    other_fine: np.ndarray,
    max_coarse_distance: int,
    max_fine_distance: int,
    chunk: int = 256,
) -> list[tuple[int, int]]:
    """Pairs (i, j), i != j, whose coarse and then fine hashes are both within the distances."""
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(coarse), chunk):
        block = coarse[start : start + chunk, None] ^ other_coarse[None, :]
        rows, columns = np.nonzero(np.bitwise_count(block) <= max_coarse_distance)
        rows += start
        keep = rows != columns
        rows, columns = rows[keep], columns[keep]
        distances = np.bitwise_count(fine[rows] ^ other_fine[columns]).sum(axis=1)
        close = distances <= max_fine_distance
        pairs += zip(rows[close].tolist(), columns[close].tolist(), strict=True)
    return pairs


def find_near_duplicate_groups(
    hashes: Sequence[ImageHashes],
    *,
    max_coarse_distance: int = DEFAULT_MAX_COARSE_DISTANCE,
    max_fine_distance: int = DEFAULT_MAX_FINE_DISTANCE,
) -> list[list[int]]:
    """Group images whose perceptual hashes are close, directly or with one image mirrored.

    Args:
        hashes: One `ImageHashes` per image.
        max_coarse_distance: 64-bit pHash distance under which a pair is checked further.
        max_fine_distance: 1024-bit pHash distance under which a pair is a near-duplicate.

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

    fine = fine_words([item.fine for item in hashes])
    fine_mirror = fine_words([item.fine_mirror for item in hashes])
    union_find = UnionFind(len(hashes))
    for other_coarse, other_fine in ((coarse, fine), (coarse_mirror, fine_mirror)):
        for first, second in _near_pairs(
            coarse, other_coarse, fine, other_fine, max_coarse_distance, max_fine_distance
        ):
            union_find.union(first, second)
    return [group for group in union_find.groups() if len(group) > 1]
