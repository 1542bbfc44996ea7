"""What a phantom is, and the drawing that the X-ray and CT renderers share.

A phantom patient (:class:`PhantomPatient`) carries what every image of one patient has in common
(finding, body size, lesion side and extent); a rendered :class:`Phantom` is one image with its
lung and lesion masks. :data:`DIFFICULTIES` sets how visible the findings are.

The drawing primitives work on coordinate grids, vectorised: anatomy is drawn in body units on a
small grid (:func:`render_grid_shape`), posed in the image by a :class:`Pose`, then
:func:`finish_phantom` resizes it to the requested size, adds radiographic noise at full resolution
and quantises it. This module needs numpy, scipy and Pillow only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "CONSOLIDATION",
    "DIFFICULTIES",
    "FINDINGS",
    "GROUND_GLASS",
    "INTERSTITIAL",
    "RENDER_LONG_SIDE",
    "Difficulty",
    "Phantom",
    "PhantomPatient",
    "Pose",
    "difficulty_level",
    "ellipse_distance",
    "equalize",
    "fast_hypot",
    "finish_phantom",
    "render_grid_shape",
    "resize_field",
    "smooth_noise",
    "soft",
]

GROUND_GLASS = "ground_glass"
CONSOLIDATION = "consolidation"
INTERSTITIAL = "interstitial"
FINDINGS: tuple[str, ...] = (GROUND_GLASS, CONSOLIDATION, INTERSTITIAL)
"""Lesion patterns the phantoms can show (``None`` means no finding)."""

RENDER_LONG_SIDE = 160
"""Anatomy is drawn on a grid at most this many pixels along its longer side, then resized to the
requested size: it is smooth anyway, the resize adds the radiographic blur, and it keeps the
generator fast. Noise is added at full resolution."""


@dataclass(frozen=True)
class Difficulty:
    """How hard the phantoms are to classify.

    Attributes:
        lesion_opacity: multiplier on how opaque lesions are (1 = the "medium" default).
        lesion_extent: multiplier on lesion size.
        noise_std: standard deviation of the added radiographic noise, in fractions of full scale.
    """

    lesion_opacity: float
    lesion_extent: float
    noise_std: float


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(lesion_opacity=1.3, lesion_extent=1.15, noise_std=0.012),
    "medium": Difficulty(lesion_opacity=1.0, lesion_extent=1.0, noise_std=0.025),
    "hard": Difficulty(lesion_opacity=0.6, lesion_extent=0.8, noise_std=0.045),
}


def difficulty_level(difficulty: str) -> Difficulty:
    """Return the :class:`Difficulty` named ``difficulty``.

    Raises:
        ValueError: when the name is not one of :data:`DIFFICULTIES`.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {tuple(DIFFICULTIES)}, got {difficulty!r}")
    return DIFFICULTIES[difficulty]


@dataclass(frozen=True)
class PhantomPatient:
    """Patient-level parameters shared by every image of one phantom patient.

    Attributes:
        finding: one of :data:`FINDINGS`, or ``None`` for a normal chest.
        body_width: relative body width (1 = average).
        body_depth: relative antero-posterior depth (1 = average; used by CT).
        lung_height: relative lung height (1 = average).
        heart_size: relative heart size (1 = average).
        lesion_side: -1 for the patient's right lung (image left), +1 for the left lung; the side
            of a unilateral finding, or the more affected side of a bilateral one.
        lesion_extent: how much of the lungs the finding covers, in [0, 1].
    """

    finding: str | None
    body_width: float
    body_depth: float
    lung_height: float
    heart_size: float
    lesion_side: int
    lesion_extent: float

    @classmethod
    def sample(cls, rng: np.random.Generator, finding: str | None) -> PhantomPatient:
        """Draw a random patient with the given finding."""
        if finding is not None and finding not in FINDINGS:
            raise ValueError(f"finding must be one of {FINDINGS} or None, got {finding!r}")
        return cls(
            finding=finding,
            body_width=float(rng.uniform(0.9, 1.08)),
            body_depth=float(rng.uniform(0.85, 1.15)),
            lung_height=float(rng.uniform(0.92, 1.06)),
            heart_size=float(rng.uniform(0.88, 1.15)),
            lesion_side=int(rng.choice((-1, 1))),
            lesion_extent=float(rng.uniform(0.0, 1.0)),
        )


@dataclass(frozen=True)
class Phantom:
    """One rendered phantom image and its ground truth.

    Attributes:
        image: (H, W) uint8 grayscale image.
        lung_mask: (H, W) bool, the lungs.
        lesion_mask: (H, W) bool, where the finding was drawn (inside the lungs; all False when
            there is no finding).
    """

    image: np.ndarray
    lung_mask: np.ndarray
    lesion_mask: np.ndarray


def render_grid_shape(height: int, width: int) -> tuple[int, int]:
    """Shape of the grid that anatomy is drawn on for an image of ``height`` x ``width``."""
    factor = min(1.0, RENDER_LONG_SIDE / max(height, width))
    return max(8, round(height * factor)), max(8, round(width * factor))


@lru_cache(maxsize=16)
def _unit_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates, scaled so that the shorter side spans [-1, 1]."""
    half = min(height, width) / 2.0
    y = (np.arange(height, dtype=np.float32) + 0.5 - height / 2.0) / half
    x = (np.arange(width, dtype=np.float32) + 0.5 - width / 2.0) / half
    grid_x, grid_y = np.meshgrid(x, y)
    grid_x.setflags(write=False)
    grid_y.setflags(write=False)
    return grid_x, grid_y


@dataclass(frozen=True)
class Pose:
    """Where the body lies in the image: body units -> image units.

    Attributes:
        scale: body units per half of the image's shorter side.
        center_x: body centre, right of the image centre (image units).
        center_y: body centre, below the image centre (image units).
        rotation: in-plane rotation in radians.
    """

    scale: float
    center_x: float
    center_y: float
    rotation: float

    def body_coordinates(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Return body coordinates (u right, v down) of the render grid and one pixel's size."""
        grid_x, grid_y = _unit_grid(height, width)
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        dx = (grid_x - self.center_x) / self.scale
        dy = (grid_y - self.center_y) / self.scale
        u = cos * dx + sin * dy
        v = cos * dy - sin * dx
        return u, v, 2.0 / (min(height, width) * self.scale)


def fast_hypot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.hypot``, several times faster (no overflow care needed at these magnitudes)."""
    return np.sqrt(a * a + b * b)


def soft(margin: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased indicator of ``margin > 0`` (margin in body units)."""
    return np.clip(margin / pixel + 0.5, 0.0, 1.0)


def ellipse_distance(
    u: np.ndarray,
    v: np.ndarray,
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
) -> np.ndarray:
    """Normalised elliptic radius: < 1 inside the ellipse (rotated by ``angle`` radians)."""
    du, dv = u - center[0], v - center[1]
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        du, dv = cos * du + sin * dv, cos * dv - sin * du
    return np.sqrt((du / radii[0]) ** 2 + (dv / radii[1]) ** 2)


def resize_field(
    field: np.ndarray,
    shape: tuple[int, int],
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> np.ndarray:
    """Resize a 2-D float field to ``shape`` (height, width); returned as is when it fits."""
    if field.shape == shape:
        return field
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), resample))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random texture with about ``cells`` blobs across the image (mean ~0, std ~1)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return resize_field(coarse, shape, Image.Resampling.BICUBIC)


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Fixed bank of slightly blurred unit-variance noise; images take random crops of it."""
    bank = np.random.default_rng(20200311).standard_normal((1024, 1024)).astype(np.float32)
    bank = ndimage.gaussian_filter(bank, 0.6)
    bank /= bank.std()
    bank.setflags(write=False)
    return bank


def _noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A random (possibly flipped) crop of the noise bank, tiled when ``shape`` is larger."""
    bank = _noise_bank()
    height, width = shape
    if height > bank.shape[0] or width > bank.shape[1]:
        bank = np.tile(bank, (math.ceil(height / bank.shape[0]), math.ceil(width / bank.shape[1])))
    top = int(rng.integers(0, bank.shape[0] - height + 1))
    left = int(rng.integers(0, bank.shape[1] - width + 1))
    crop = bank[top : top + height, left : left + width]
    return crop[::-1] if rng.random() < 0.5 else crop


def finish_phantom(
    field: np.ndarray,
    lung: np.ndarray,
    lesion: np.ndarray,
    shape: tuple[int, int],
    noise_std: float,
    rng: np.random.Generator,
) -> Phantom:
    """Resize the render-grid fields to the output size, add noise and quantise.

    Args:
        field: [0, 1] image on the render grid.
        lung: soft lung indicator on the render grid.
        lesion: soft lesion indicator on the render grid.
        shape: output (height, width).
        noise_std: noise standard deviation, in fractions of full scale.
        rng: random generator for the noise.

    Returns:
        The quantised image with its lung and lesion masks (lesions clipped to the lungs).
    """
    image = resize_field(field, shape) + noise_std * _noise(rng, shape)
    image_uint8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    lung_mask = resize_field(lung, shape) > 0.5
    if lesion.any():
        lesion_mask = (resize_field(lesion, shape) > 0.5) & lung_mask
    else:
        lesion_mask = np.zeros(shape, dtype=bool)
    return Phantom(image=image_uint8, lung_mask=lung_mask, lesion_mask=lesion_mask)


def equalize(field: np.ndarray, strength: float) -> np.ndarray:
    """Blend a [0, 1] field with its histogram-equalised self (before noise, so noise stays)."""
    levels = (field * 255.0 + 0.5).astype(np.uint8)
    cumulative = np.cumsum(np.bincount(levels.ravel(), minlength=256)).astype(np.float32)
    lookup = (cumulative - cumulative[0]) / max(float(cumulative[-1] - cumulative[0]), 1.0)
    return (1.0 - strength) * field + strength * lookup[levels]
