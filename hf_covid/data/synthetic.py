"""Synthetic chest phantoms: the embedded default data that hf_covid trains and tests on.

The generators write, deterministically from a seed, folders laid out like the two public datasets
that the toolkit reads, so that every builder, model and report can run without downloading
anything:

* :func:`generate_radiography`: the Kaggle *COVID-19 Radiography Database* (Chowdhury et al. 2020,
  Rahman et al. 2021): ``<class>/images/<class>-<n>.png`` (299x299 grayscale),
  ``<class>/masks/<class>-<n>.png`` (256x256 lung masks, 0/255) and ``<class>.metadata.xlsx``
  (FILE NAME / FORMAT / SIZE / URL) for COVID, Lung_Opacity, Normal and Viral Pneumonia.
* :func:`generate_xray_ct`: the Mendeley *Extensive COVID-19 X-Ray and CT Chest Images Dataset*
  (El-Shafai and Abd El-Samie 2020): ``X-ray/{COVID,Non-COVID}/`` and ``CT/{COVID,Non-COVID}/``,
  JPEG and PNG of mixed sizes, with no patient identifiers (as in the real data).
* :func:`generate_paired_xray_ct`: the same layout where every phantom patient has one X-ray and one
  CT (shared body size and lesion side/extent), named in ``metadata.csv``
  (``file, modality, label, patient_id``). The real dataset has no such pairing.

Every image has a binary (0/255) lesion ground-truth mask of the same size, all zero for Normal
and Non-COVID: ``<root>/lesion_masks/<class>/<class>-<n>.png`` for the radiography layout,
``<root>/lesion_masks/<modality folder>/<label>/<image stem>.png`` for the X-ray + CT layouts;
kept outside the class folders so that dataset builders do not take them for data. With ``shortcut=True``
a class-correlated bright square is stamped into a corner of 90% of the images of each class and
its box is listed in ``<root>/shortcut_markers.csv`` (``file, x0, y0, x1, y1``; pixels, end
exclusive), to test shortcut audits.

What the phantoms are: PA chest radiographs (body outline, tapered lung apices, diaphragm domes
with costophrenic angles, posterior and anterior ribs, clavicles, spine, mediastinum, heart on the
patient's left = image right, hila) and axial lung-window CT slices (body wall, ribs, vertebra,
mediastinum, lungs with vessels, table). Findings by class: COVID, bilateral peripheral lower-zone
ground-glass opacities; Lung_Opacity, one dense lobar consolidation; Viral Pneumonia, a bilateral
perihilar reticular (interstitial) pattern; Normal / Non-COVID, none. Lesions are clipped to the
lungs. Patient size, position, rotation, exposure (window, gamma, occasional histogram
equalisation) and noise vary so much that the intensity histogram alone does not give the class
away: the class is in *where* and *what shape* the opacity is. What is wrong with them: they are
not real anatomy or pathology, every lesion class has one textbook pattern, and nothing here says
anything about real diagnostic accuracy.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

GROUND_GLASS = "ground_glass"
CONSOLIDATION = "consolidation"
INTERSTITIAL = "interstitial"
FINDINGS: tuple[str, ...] = (GROUND_GLASS, CONSOLIDATION, INTERSTITIAL)
"""Lesion patterns the phantoms can show (``None`` means no finding)."""

RADIOGRAPHY_FINDINGS: dict[str, str | None] = {
    "COVID": GROUND_GLASS,
    "Lung_Opacity": CONSOLIDATION,
    "Normal": None,
    "Viral Pneumonia": INTERSTITIAL,
}
"""Finding drawn for each class of the radiography layout."""

BINARY_FINDINGS: dict[str, str | None] = {"Non-COVID": None, "COVID": GROUND_GLASS}
"""Finding drawn for each class of the X-ray + CT layouts (X-ray and CT alike)."""

XRAY_FOLDER = "X-ray"
CT_FOLDER = "CT"
LESION_MASK_FOLDER = "lesion_masks"
SHORTCUT_MARKERS_FILE = "shortcut_markers.csv"
PAIRED_METADATA_FILE = "metadata.csv"
MIN_IMAGE_SIZE = 32
SHORTCUT_PROBABILITY = 0.9
"""Fraction of the images of a class that carry the class's corner marker when ``shortcut=True``."""

SOURCE_URLS_PER_CLASS = 5
"""Fake source URLs per class in the radiography metadata (uneven shares), for per-source splits."""
_SOURCE_WEIGHTS = (0.3, 0.25, 0.2, 0.15, 0.1)
_SOURCE_NAMES = ("source-a", "source-b", "source-c", "source-d", "source-e")

# Seed-sequence spawn keys keep each layout's images independent of the other layouts and of the
# number of images per class: image (class c, index i) of a layout always gets the same seed.
_RADIOGRAPHY_STREAM = 0
_XRAY_CT_STREAM = 1
_PAIRED_STREAM = 2

# Anatomy is drawn on a grid at most this many pixels along its longer side, then resized to the
# requested size: it is smooth anyway, the resize adds the radiographic blur, and it keeps the
# generator fast. Noise is added at full resolution.
_RENDER_LONG_SIDE = 160
# Fixed timestamp for the xlsx package so that the same seed gives the same bytes.
_FIXED_TIMESTAMP = datetime(2020, 3, 11)
_PNG_COMPRESS_LEVEL = 1
_JPEG_QUALITY = 92


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


# --------------------------------------------------------------------------------------------
# Drawing helpers (vectorised on coordinate grids)
# --------------------------------------------------------------------------------------------


def _difficulty(difficulty: str) -> Difficulty:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {tuple(DIFFICULTIES)}, got {difficulty!r}")
    return DIFFICULTIES[difficulty]


def _render_shape(height: int, width: int) -> tuple[int, int]:
    factor = min(1.0, _RENDER_LONG_SIDE / max(height, width))
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
class _Pose:
    """Where the body lies in the image: body units -> image units."""

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


def _hypot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.hypot``, several times faster (no overflow care needed at these magnitudes)."""
    return np.sqrt(a * a + b * b)


def _soft(margin: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased indicator of ``margin > 0`` (margin in body units)."""
    return np.clip(margin / pixel + 0.5, 0.0, 1.0)


def _ellipse_distance(
    u: np.ndarray, v: np.ndarray, center: tuple[float, float], radii: tuple[float, float], angle=0.0
) -> np.ndarray:
    """Normalised elliptic radius: < 1 inside the ellipse."""
    du, dv = u - center[0], v - center[1]
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        du, dv = cos * du + sin * dv, cos * dv - sin * du
    return np.sqrt((du / radii[0]) ** 2 + (dv / radii[1]) ** 2)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random texture with about ``cells`` blobs across the image (mean ~0, std ~1)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return _resize(coarse, shape, Image.Resampling.BICUBIC)


def _resize(
    field: np.ndarray, shape: tuple[int, int], resample=Image.Resampling.BILINEAR
) -> np.ndarray:
    if field.shape == shape:
        return field
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), resample))


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Fixed bank of slightly blurred unit-variance noise; images take random crops of it."""
    bank = np.random.default_rng(20200311).standard_normal((1024, 1024)).astype(np.float32)
    bank = ndimage.gaussian_filter(bank, 0.6)
    bank /= bank.std()
    bank.setflags(write=False)
    return bank


def _noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    bank = _noise_bank()
    height, width = shape
    if height > bank.shape[0] or width > bank.shape[1]:
        bank = np.tile(bank, (math.ceil(height / bank.shape[0]), math.ceil(width / bank.shape[1])))
    top = int(rng.integers(0, bank.shape[0] - height + 1))
    left = int(rng.integers(0, bank.shape[1] - width + 1))
    crop = bank[top : top + height, left : left + width]
    return crop[::-1] if rng.random() < 0.5 else crop


def _finish(
    field: np.ndarray,
    lung: np.ndarray,
    lesion: np.ndarray,
    shape: tuple[int, int],
    noise_std: float,
    rng: np.random.Generator,
) -> Phantom:
    """Resize the render-grid fields to the output size, add noise and quantise."""
    image = _resize(field, shape) + noise_std * _noise(rng, shape)
    image_uint8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    lung_mask = _resize(lung, shape) > 0.5
    if lesion.any():
        lesion_mask = (_resize(lesion, shape) > 0.5) & lung_mask
    else:
        lesion_mask = np.zeros(shape, dtype=bool)
    return Phantom(image=image_uint8, lung_mask=lung_mask, lesion_mask=lesion_mask)


def _equalize(field: np.ndarray, strength: float) -> np.ndarray:
    """Blend a [0, 1] field with its histogram-equalised self (before noise, so noise stays)."""
    levels = (field * 255.0 + 0.5).astype(np.uint8)
    cumulative = np.cumsum(np.bincount(levels.ravel(), minlength=256)).astype(np.float32)
    lookup = (cumulative - cumulative[0]) / max(float(cumulative[-1] - cumulative[0]), 1.0)
    return (1.0 - strength) * field + strength * lookup[levels]


# --------------------------------------------------------------------------------------------
# Chest X-ray (PA)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChestGeometry:
    """Lung outline of a PA radiograph in body units (u to image right, v down, s = |u|)."""

    apex: float
    dome_right: float
    dome_left: float
    lateral_max: float
    heart_center: tuple[float, float]
    heart_radii: tuple[float, float]
    hilum_v: float

    @classmethod
    def sample(cls, rng: np.random.Generator, patient: PhantomPatient) -> _ChestGeometry:
        height = patient.lung_height
        dome_right = float(rng.uniform(0.36, 0.44)) * height
        return cls(
            apex=-0.8 * height,
            dome_right=dome_right,
            dome_left=dome_right + float(rng.uniform(0.02, 0.07)),
            lateral_max=float(rng.uniform(0.75, 0.81)),
            heart_center=(float(rng.uniform(0.08, 0.14)), 0.3 * height),
            heart_radii=(0.31 * patient.heart_size, 0.22 * patient.heart_size),
            hilum_v=-0.08 * height,
        )

    def lateral(self, v):
        """Distance of the lateral lung edge (inner chest wall) from the midline at height v."""
        growth = np.clip((v - self.apex) / (0.75 * (self.dome_right + 0.2 - self.apex)), 0.0, 1.0)
        return 0.3 + (self.lateral_max - 0.3) * np.sqrt(growth)

    def dome(self, s, dome_top):
        """Height of the diaphragm below the lung at distance s from the midline."""
        return dome_top + 0.9 * (s - 0.38) ** 2 + 3.0 * np.clip(s - 0.58, 0.0, None) ** 2

    def heart_distance(self, u, v):
        radius = _ellipse_distance(u, v, self.heart_center, self.heart_radii, angle=0.45)
        return (radius - 1.0) * self.heart_radii[1]

    def lung_margin(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Approximate distance inside the lungs (positive inside, body units)."""
        s = np.abs(u)
        dome_top = np.where(u < 0, np.float32(self.dome_right), np.float32(self.dome_left))
        aortic_knob = _hypot(u - 0.1, v - (self.apex + 0.43)) - 0.07
        return np.minimum.reduce(
            [
                self.lateral(v) - s,
                v - (self.apex + 2.0 * (s - 0.36) ** 2),
                self.dome(s, dome_top) - v,
                s - (0.09 + 0.03 * np.clip(v - self.apex, 0.0, 1.0)),
                self.heart_distance(u, v),
                aortic_knob,
            ]
        )


def _sample_xray_pose(rng: np.random.Generator, patient: PhantomPatient) -> _Pose:
    return _Pose(
        scale=patient.body_width * float(rng.uniform(0.8, 0.98)),
        center_x=float(rng.normal(0.0, 0.03)),
        center_y=float(rng.uniform(-0.02, 0.1)),
        rotation=math.radians(float(np.clip(rng.normal(0.0, 2.5), -6.0, 6.0))),
    )


def _xray_anatomy(
    u: np.ndarray,
    v: np.ndarray,
    pixel: float,
    geometry: _ChestGeometry,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (tissue density, lung air density, normal lung opacity, lung margin)."""
    s = np.abs(u)
    margin = geometry.lung_margin(u, v)
    lateral = geometry.lateral(v)

    # Body: soft tissue, thicker in the middle; shoulders slope down from the neck.
    half_width = float(rng.uniform(0.9, 0.98)) * (1.0 - 0.05 * (v - 0.2) ** 2)
    slope = np.clip((s - 0.26) / 0.64, 0.0, 1.0)
    shoulder = -0.96 + 0.2 * slope * np.sqrt(slope)
    trunk_margin = np.minimum(half_width - s, v - shoulder)
    neck_margin = 0.25 - s
    # Smooth union, so that the neck flares into the shoulders.
    body_margin = 0.5 * (trunk_margin + neck_margin)
    body_margin += np.sqrt(0.25 * (trunk_margin - neck_margin) ** 2 + 0.06**2) - 0.06
    body = _soft(body_margin, pixel)
    thickness = np.sqrt(np.clip(1.0 - (s / half_width) ** 2, 0.0, 1.0))
    tissue = body * (0.3 + 0.28 * thickness)

    # Spine (with vertebral segments), heart, humeral heads.
    vertebrae = 0.8 + 0.2 * np.cos(2.0 * np.pi * v / float(rng.uniform(0.1, 0.12)))
    tissue += 0.07 * _soft(0.06 - s, pixel) * vertebrae
    trachea = _soft(0.035 - s, pixel) * _soft(geometry.hilum_v - 0.08 - v, pixel)
    tissue -= 0.12 * trachea
    tissue += 0.03 * _soft(-geometry.heart_distance(u, v), pixel)
    humeral = _hypot(s - 0.98, v + 0.8) - 0.17
    tissue += 0.06 * body * _soft(-humeral, pixel)

    # Posterior ribs arch up from the spine and curve down laterally; anterior ribs slope down
    # toward the midline and are fainter.
    spacing = float(rng.uniform(0.14, 0.165)) * (geometry.dome_right - geometry.apex) / 1.2
    rib_phase = (v + 0.45 * s - 0.85 * s**2 - 0.6 * np.clip(s - 0.5, 0.0, None) ** 2) / spacing
    posterior = np.clip((np.cos(2.0 * np.pi * (rib_phase + rng.random())) - 0.4) / 0.5, 0.0, 1.0)
    rib_cage = _soft(lateral + 0.04 - s, pixel) * _soft(s - 0.06, pixel)
    rib_cage *= _soft(v - (geometry.apex - 0.12), pixel) * _soft(0.75 - v, pixel)
    anterior_phase = (v + 0.55 * s) / (1.3 * spacing) + rng.random()
    anterior = np.clip((np.cos(2.0 * np.pi * anterior_phase) - 0.5) / 0.5, 0.0, 1.0)
    anterior *= _soft(s - 0.25, pixel)
    rib_cage *= 0.4 + 0.6 * np.clip(margin / 0.05 + 0.5, 0.0, 1.0)
    tissue += rib_cage * (0.09 * posterior + 0.035 * anterior)

    # Clavicles: a bar from the sternal notch out to each shoulder, crossing the lung apices.
    start = (0.08, geometry.apex + 0.02)
    end = (0.72, geometry.apex - 0.08)
    direction = (end[0] - start[0], end[1] - start[1])
    along = (s - start[0]) * direction[0] + (v - start[1]) * direction[1]
    along = np.clip(along / (direction[0] ** 2 + direction[1] ** 2), 0.0, 1.0)
    clavicle = _hypot(s - start[0] - along * direction[0], v - start[1] - along * direction[1])
    tissue += 0.09 * body * _soft(0.032 - clavicle, pixel)

    # Gastric bubble under the left hemidiaphragm.
    if rng.random() < 0.7:
        bubble = _ellipse_distance(u, v, (0.36, geometry.dome_left + 0.14), (0.09, 0.05))
        tissue -= 0.12 * _soft(1.0 - bubble, pixel / 0.06)

    # Lung air: darkest in the middle of each lung, less dark at the bases.
    depth = np.sqrt(np.clip(margin / 0.1, 0.0, 1.0))
    air = 0.44 * depth * (1.0 - 0.25 * np.clip((v - 0.05) / 0.4, 0.0, 1.0))
    air *= 1.0 + 0.06 * _smooth_noise(rng, u.shape, 8)

    # Normal hila and vascular markings (fine, faint, fading toward the periphery).
    hilum = np.exp(-(((s - 0.19) / 0.06) ** 2) - ((v - geometry.hilum_v) / 0.11) ** 2)
    radial = _hypot(s - 0.15, v - geometry.hilum_v)
    angle = np.arctan2(v - geometry.hilum_v, s - 0.15)
    markings = np.clip(np.cos(34.0 * angle + 6.0 * radial) - 0.6, 0.0, None) / 0.4
    normal_opacity = 0.4 * hilum + 0.12 * markings * np.exp(-radial / 0.3)
    return tissue, air, normal_opacity, margin


def _ground_glass_xray(u, v, pixel, geometry, patient, level, rng):
    """Bilateral, peripheral, lower-zone hazy patches."""
    s = np.abs(u)
    opacity = np.zeros_like(u)
    region = np.zeros_like(u)
    for side in (-1, 1):
        count = 1 + int(patient.lesion_extent * 2.2) + int(side == patient.lesion_side)
        for _ in range(count):
            radius = float(rng.uniform(0.13, 0.18)) * level.lesion_extent
            radius *= 0.85 + 0.35 * patient.lesion_extent
            center_v = float(rng.uniform(0.0, 0.3)) * patient.lung_height
            center_s = geometry.lateral(center_v) - radius * float(rng.uniform(0.3, 0.7))
            radii = (radius * float(rng.uniform(0.8, 1.1)), radius * float(rng.uniform(1.0, 1.4)))
            distance = _ellipse_distance(
                s, v, (center_s, center_v), radii, float(rng.normal(0, 0.3))
            )
            distance = np.where(u * side > 0, distance, 9.0)
            opacity = np.maximum(opacity, np.clip(1.0 - (distance * distance) ** 2, 0.0, 1.0))
            region = np.maximum(region, _soft(1.0 - distance, pixel / radius))
    texture = 0.75 + 0.25 * np.tanh(_smooth_noise(rng, u.shape, 14))
    peak = min(0.95, 0.7 * level.lesion_opacity)
    return peak * opacity * texture, region


def _consolidation_xray(u, v, pixel, geometry, patient, level, rng):
    """One dense, well-demarcated lobar opacity in one lung, bounded by a straight fissure."""
    side = patient.lesion_side
    s = np.abs(u)
    radius = (
        float(rng.uniform(0.14, 0.2)) * level.lesion_extent * (0.9 + 0.3 * patient.lesion_extent)
    )
    center_v = float(rng.uniform(-0.45, 0.22)) * patient.lung_height
    center_s = float(rng.uniform(0.3, 0.5))
    radii = (radius * float(rng.uniform(0.9, 1.3)), radius * float(rng.uniform(0.8, 1.2)))
    du, dv = (s - center_s) / radii[0], (v - center_v) / radii[1]
    superellipse = np.sqrt(np.sqrt((du * du) ** 2 + (dv * dv) ** 2))
    normal_angle = float(rng.uniform(0.0, 2.0 * np.pi))
    offset = float(rng.uniform(0.3, 0.7)) * radius
    fissure = (s - center_s) * math.cos(normal_angle) + (v - center_v) * math.sin(normal_angle)
    margin = np.minimum((1.0 - superellipse) * min(radii) * 0.5, offset - fissure)
    margin = np.where(u * side > 0, margin, -1.0)
    inside = _soft(margin, pixel)
    texture = 0.9 + 0.1 * np.tanh(_smooth_noise(rng, u.shape, 20))
    peak = min(0.97, 0.85 * level.lesion_opacity)
    return peak * inside * texture, inside


def _interstitial_xray(u, v, pixel, geometry, patient, level, rng):
    """Bilateral perihilar interstitial pattern: coarse, irregular streaks fanning out of the hila."""
    s = np.abs(u)
    dv = v - geometry.hilum_v
    # The streaks radiate from a point behind the mediastinum, so that in the lung they fan out
    # of the hilum instead of meeting in a star.
    angle = np.arctan2(dv, s + 0.05) + 0.25 * _smooth_noise(rng, u.shape, 9)
    phase = np.where(u < 0, np.float32(rng.random()), np.float32(rng.random())) * 2.0 * np.pi
    waves = np.cos(16.0 * angle + phase) + 0.7 * _smooth_noise(rng, u.shape, 12)
    streaks = np.clip(1.5 - np.abs(waves) / 0.45, 0.0, 1.0)
    reach = (0.3 + 0.12 * patient.lesion_extent) * level.lesion_extent
    radial = _hypot((s - 0.2) / 1.1, dv) / reach
    envelope = np.clip(1.0 - radial**2, 0.0, 1.0)
    region = _soft(0.9 - radial, pixel / reach) * _soft(s - 0.1, pixel)
    peak = min(0.95, 0.7 * level.lesion_opacity)
    return peak * (0.3 + 0.7 * streaks) * (0.4 + 0.6 * envelope) * region, region


_XRAY_LESIONS = {
    GROUND_GLASS: _ground_glass_xray,
    CONSOLIDATION: _consolidation_xray,
    INTERSTITIAL: _interstitial_xray,
}


def _expose(density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random window and gamma, as different detectors and post-processing would give."""
    gamma = float(np.clip(np.exp(rng.normal(0.0, 0.3)), 0.5, 2.0))
    low = float(rng.uniform(-0.1, 0.15))
    high = float(rng.uniform(0.8, 1.15))
    return np.clip((np.clip(density, 0.0, 1.0) ** gamma - low) / (high - low), 0.0, 1.0)


def render_xray(
    patient: PhantomPatient,
    *,
    height: int,
    width: int,
    rng: np.random.Generator,
    difficulty: str = "medium",
) -> Phantom:
    """Render one PA chest radiograph phantom.

    Args:
        patient: patient parameters (finding, body size, lesion side/extent).
        height: image height in pixels.
        width: image width in pixels.
        rng: random generator for pose, exposure, lesion placement and noise.
        difficulty: one of :data:`DIFFICULTIES`.

    Returns:
        The image with its lung and lesion masks.
    """
    level = _difficulty(difficulty)
    render_shape = _render_shape(height, width)
    u, v, pixel = _sample_xray_pose(rng, patient).body_coordinates(*render_shape)
    geometry = _ChestGeometry.sample(rng, patient)
    tissue, air, normal_opacity, lung_margin = _xray_anatomy(u, v, pixel, geometry, rng)
    if patient.finding is None:
        lesion_opacity = lesion_region = np.zeros_like(u)
    else:
        draw = _XRAY_LESIONS[patient.finding]
        lesion_opacity, lesion_region = draw(u, v, pixel, geometry, patient, level, rng)
    density = tissue - air * (1.0 - normal_opacity) * (1.0 - lesion_opacity)
    field = _expose(density / 0.7, rng)
    if rng.random() < 0.2:  # some sites equalise their histograms
        field = _equalize(field, float(rng.uniform(0.3, 0.7)))
    noise_std = level.noise_std * float(rng.uniform(0.6, 1.4))
    return _finish(field, _soft(lung_margin, pixel), lesion_region, (height, width), noise_std, rng)


# --------------------------------------------------------------------------------------------
# Axial chest CT (lung window)
# --------------------------------------------------------------------------------------------


def _sample_ct_pose(rng: np.random.Generator) -> _Pose:
    return _Pose(
        scale=float(rng.uniform(0.85, 1.0)),
        center_x=float(rng.normal(0.0, 0.03)),
        center_y=float(rng.normal(-0.02, 0.03)),
        rotation=math.radians(float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0))),
    )


def _ground_glass_ct(u, v, pixel, lungs, thorax, patient, level, rng):
    """Peripheral, mostly posterior (dependent) subpleural patches in both lungs."""
    half_width, half_depth = thorax
    opacity = np.zeros_like(u)
    region = np.zeros_like(u)
    for side in (-1, 1):
        # Each lung, roughly: an ellipse between the mediastinum and the chest wall.
        center_u = side * (half_width + 0.1) / 2.0
        radius_u, radius_v = (half_width - 0.1) / 2.0, 0.9 * half_depth
        count = 1 + int(patient.lesion_extent * 2.2) + int(side == patient.lesion_side)
        for _ in range(count):
            radius = float(rng.uniform(0.12, 0.17)) * level.lesion_extent
            radius *= 0.85 + 0.35 * patient.lesion_extent
            theta = float(rng.uniform(-0.4, 1.9))  # 0 = lateral, pi / 2 = posterior
            depth = radius * float(rng.uniform(0.5, 0.9))
            point = (
                center_u + side * (radius_u - depth) * math.cos(theta),
                (radius_v - depth) * math.sin(theta),
            )
            normal = math.atan2(math.sin(theta), side * math.cos(theta))
            radii = (radius * float(rng.uniform(0.6, 0.9)), radius * float(rng.uniform(1.1, 1.6)))
            distance = _ellipse_distance(u, v, point, radii, normal)
            opacity = np.maximum(opacity, np.clip(1.0 - (distance * distance) ** 2, 0.0, 1.0))
            region = np.maximum(region, _soft(1.0 - distance, pixel / radius))
    texture = 0.8 + 0.2 * np.tanh(_smooth_noise(rng, u.shape, 20))
    peak = min(0.95, 0.8 * level.lesion_opacity)
    return peak * opacity * texture * lungs, region


def render_ct(
    patient: PhantomPatient,
    *,
    height: int,
    width: int,
    rng: np.random.Generator,
    difficulty: str = "medium",
) -> Phantom:
    """Render one axial chest CT phantom slice in a lung window.

    Patient's right is on the image left, anterior at the top (radiological convention).

    Args:
        patient: patient parameters (finding, body size, lesion side/extent).
        height: image height in pixels.
        width: image width in pixels.
        rng: random generator for pose, slice level, vessels, lesions and noise.
        difficulty: one of :data:`DIFFICULTIES`; only ground-glass findings are drawn in CT.

    Returns:
        The image with its lung and lesion masks.
    """
    level = _difficulty(difficulty)
    if patient.finding not in (None, GROUND_GLASS):
        raise ValueError(f"CT phantoms draw ground glass or nothing, got {patient.finding!r}")
    render_shape = _render_shape(height, width)
    u, v, pixel = _sample_ct_pose(rng).body_coordinates(*render_shape)
    s = np.abs(u)
    slice_level = float(rng.uniform(0.0, 1.0))  # 0 = upper lobes, 1 = lung bases (big heart)

    # Body wall: skin and fat (a little darker in a lung window), then muscle, then the ribs.
    half_width, half_depth = 0.86 * patient.body_width, 0.6 * patient.body_depth
    body_margin = (1.0 - _ellipse_distance(u, v, (0.0, 0.0), (half_width, half_depth))) * half_depth
    fat = float(rng.uniform(0.03, 0.1))
    thorax = (half_width - fat - 0.08, half_depth - fat - 0.08)
    inner_margin = (1.0 - _ellipse_distance(u, v, (0.0, 0.0), thorax)) * thorax[1]
    field = 0.03 + _soft(body_margin, pixel) * (0.68 + 0.13 * _soft(body_margin - fat, pixel))

    # Bone: ribs just outside the pleura, vertebral body, spinal canal, spinous process, sternum.
    rib_ring = _soft(-inner_margin - 0.004, pixel) * _soft(inner_margin + 0.036, pixel)
    rib_angle = np.arctan2(v, u)
    ribs = _soft(np.cos(12.0 * rib_angle + 6.28 * rng.random()) - 0.45, 0.15) * rib_ring
    vertebra_v = thorax[1] - 0.15
    vertebra = _soft(0.1 - _hypot(u, v - vertebra_v), pixel)
    canal = _soft(0.04 - _hypot(u, v - vertebra_v - 0.13), pixel)
    spinous = _soft(1.0 - _ellipse_distance(u, v, (0.0, vertebra_v + 0.19), (0.025, 0.045)), 0.1)
    sternum = _soft(1.0 - _ellipse_distance(u, v, (0.0, 0.04 - thorax[1]), (0.08, 0.03)), 0.1)
    # Bone stays under the skin, whatever the fat thickness.
    bone = np.maximum.reduce([ribs, vertebra, spinous, sternum]) * _soft(body_margin - 0.02, pixel)
    field += 0.18 * bone - 0.08 * canal

    # Lungs: inside the rib cage, outside the heart / mediastinum, spine and descending aorta.
    heart_size = (0.17 + 0.13 * slice_level) * patient.heart_size
    heart = _ellipse_distance(
        u, v, (0.07 * slice_level, -0.1), (1.3 * heart_size, heart_size + 0.03), 0.5
    )
    mediastinum_margin = np.minimum((heart - 1.0) * heart_size, s - 0.07)
    spine_margin = np.minimum(_hypot(u, v - vertebra_v) - 0.13, np.maximum(s - 0.1, vertebra_v - v))
    aorta_margin = _hypot(u - 0.13, v - vertebra_v + 0.08) - 0.07
    lung_margin = np.minimum.reduce([inner_margin, mediastinum_margin, spine_margin, aorta_margin])
    lungs = _soft(lung_margin, pixel)
    parenchyma = 0.12 + 0.02 * _smooth_noise(rng, render_shape, 10)
    parenchyma += 0.05 * np.clip(v / half_depth, 0.0, 1.0)  # dependent (posterior) density
    field = field * (1.0 - lungs) + parenchyma * lungs
    if slice_level < 0.4:  # trachea in the upper mediastinum
        trachea = _soft(0.05 - _hypot(u, v + 0.12), pixel)
        field = field * (1.0 - trachea) + 0.05 * trachea

    # Vessels: many small bright dots, bigger and denser toward the hila.
    scale = render_shape[0] / _RENDER_LONG_SIDE
    dots = np.zeros(render_shape, dtype=np.float32)
    count = 320
    dots[rng.integers(0, render_shape[0], count), rng.integers(0, render_shape[1], count)] = (
        rng.uniform(1.5, 5.0, count)
    )
    hilar = np.exp(-((s - 0.22) ** 2 + (v + 0.02) ** 2) / 0.04)
    vessels = ndimage.gaussian_filter(dots, 0.7 * scale) * (0.5 + 1.5 * hilar)

    if patient.finding is None:
        lesion_region = np.zeros_like(u)
    else:
        opacity, lesion_region = _ground_glass_ct(u, v, pixel, lungs, thorax, patient, level, rng)
        field += (0.7 - field) * opacity
    field += np.clip(vessels, 0.0, 0.65) * lungs

    # Patient table: a curved line below the back.
    if rng.random() < 0.6:
        table_v = half_depth + float(rng.uniform(0.06, 0.12)) + 0.12 * u**2
        field += 0.4 * _soft(0.012 - np.abs(v - table_v), pixel) * _soft(0.95 - s, pixel)

    gamma = float(np.clip(np.exp(rng.normal(0.0, 0.15)), 0.75, 1.35))
    field = np.clip(field, 0.0, 1.0) ** gamma
    noise_std = 0.8 * level.noise_std * float(rng.uniform(0.6, 1.4))
    return _finish(field, lungs, lesion_region, (height, width), noise_std, rng)


# --------------------------------------------------------------------------------------------
# Writing the dataset layouts
# --------------------------------------------------------------------------------------------


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_size(name: str, value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < MIN_IMAGE_SIZE
    ):
        raise ValueError(
            f"{name} must be an integer of at least {MIN_IMAGE_SIZE} pixels, got {value!r}"
        )
    return int(value)


def _check_size_range(size_range: object) -> tuple[int, int]:
    if not isinstance(size_range, Sequence) or isinstance(size_range, str) or len(size_range) != 2:
        raise ValueError(f"size_range must be (min_size, max_size), got {size_range!r}")
    low = _check_size("size_range[0]", size_range[0])
    high = _check_size("size_range[1]", size_range[1])
    if low > high:
        raise ValueError(f"size_range must have min_size <= max_size, got {tuple(size_range)}")
    return low, high


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _prepare_output(output_dir: str | Path, owned: Iterable[str], overwrite: bool) -> Path:
    """Create the output folder, refusing a non-empty one unless ``overwrite``.

    With ``overwrite`` only the entries this generator writes (``owned``, relative to the folder)
    are removed; anything else in the folder is left alone.
    """
    root = Path(output_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"output folder {str(root)!r} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder {str(root)!r} is not empty; pass overwrite=True (--overwrite) "
                "to replace the synthetic data in it"
            )
        for name in owned:
            entry = root / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _image_rngs(seed: int, *key: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators for one image: content, and extras (source URL, marker).

    Keeping the extras apart means that ``shortcut=True`` changes nothing but the marker.
    """
    content, extras = np.random.SeedSequence(seed, spawn_key=key).spawn(2)
    return np.random.default_rng(content), np.random.default_rng(extras)


def _save_image(path: Path, array: np.ndarray) -> None:
    """Write a grayscale image; JPEG with a fixed quality, PNG otherwise (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(path, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)


def _save_mask(path: Path, mask: np.ndarray, size: tuple[int, int] | None = None) -> None:
    """Write a binary 0/255 PNG mask, optionally resized to (height, width)."""
    mask = mask.astype(np.float32)
    if size is not None:
        mask = _resize(mask, size)
    _save_image(path, np.where(mask > 0.5, 255, 0).astype(np.uint8))


def _stamp_marker(
    image: np.ndarray, corner: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Stamp the shortcut marker into ``corner`` of 90% of the images.

    The marker looks like a radiographer's side marker: a white "L" on a black square, visible on
    any background. Corners: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Returns the
    image and the marker's (x0, y0, x1, y1) box, end exclusive, or None where none was stamped.
    """
    if rng.random() >= SHORTCUT_PROBABILITY:
        return image, None
    side = max(5, round(0.08 * min(image.shape)))
    margin = max(1, round(0.03 * min(image.shape))) + int(rng.integers(0, 3))
    height, width = image.shape
    x0 = margin if corner % 2 == 0 else width - margin - side
    y0 = margin if corner < 2 else height - margin - side
    stroke = max(1, side // 4)
    glyph = np.zeros((side, side), dtype=np.uint8)
    glyph[1:-1, 1 : 1 + stroke] = 255
    glyph[-1 - stroke : -1, 1:-1] = 255
    stamped = image.copy()
    stamped[y0 : y0 + side, x0 : x0 + side] = glyph
    return stamped, (x0, y0, x0 + side, y0 + side)


def _lesion_mask_path(root: Path, relative_image: Path) -> Path:
    """``lesion_masks/<image path without an images/ folder>.png``."""
    parts = [part for part in relative_image.with_suffix(".png").parts if part != "images"]
    return root.joinpath(LESION_MASK_FOLDER, *parts)


def _write_workbook(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write an xlsx file whose bytes depend only on its content (fixed timestamps)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    workbook.properties.created = workbook.properties.modified = _FIXED_TIMESTAMP
    buffer = io.BytesIO()
    # ExcelWriter rather than Workbook.save, which stamps the current time into the properties.
    ExcelWriter(workbook, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)).save()
    # Zip members carry their write time too: copy them with a fixed one.
    output = io.BytesIO()
    with (
        zipfile.ZipFile(buffer) as source,
        zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for member in source.infolist():
            fixed = zipfile.ZipInfo(member.filename, date_time=_FIXED_TIMESTAMP.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = member.external_attr
            target.writestr(fixed, source.read(member.filename))
    path.write_bytes(output.getvalue())


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _source_url(class_name: str, rng: np.random.Generator) -> str:
    slug = class_name.lower().replace(" ", "-").replace("_", "-")
    source = _SOURCE_NAMES[int(rng.choice(SOURCE_URLS_PER_CLASS, p=_SOURCE_WEIGHTS))]
    return f"https://synthetic.hf-covid/{slug}/{source}"


def generate_radiography(
    output_dir: str | Path,
    *,
    images_per_class: int = 50,
    image_size: int = 299,
    mask_size: int = 256,
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a phantom COVID-19 Radiography Database (Kaggle layout).

    Layout: ``<class>/images/<class>-<n>.png`` (``image_size`` square, grayscale),
    ``<class>/masks/<class>-<n>.png`` (``mask_size`` square lung masks, 0/255),
    ``<class>.metadata.xlsx`` (FILE NAME, FORMAT, SIZE, URL; each image from one of
    :data:`SOURCE_URLS_PER_CLASS` fake sources of its class), and lesion ground truth under
    ``lesion_masks/<class>/<class>-<n>.png`` at the image size (empty for Normal).

    Args:
        output_dir: folder to write; must be empty or absent unless ``overwrite``.
        images_per_class: images of each of the four classes.
        image_size: image side in pixels (the real data: 299).
        mask_size: lung-mask side in pixels (the real data: 256).
        seed: image (class, n) is the same for the same seed, whatever ``images_per_class``.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"`` (lesion contrast/extent, noise).
        shortcut: stamp a class-correlated corner marker (see ``shortcut_markers.csv``).
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.

    Returns:
        The output folder.

    Raises:
        ValueError: for a count, size, seed or difficulty that is not valid.
        FileExistsError: when ``output_dir`` is not empty and ``overwrite`` is False.
    """
    count = _check_count("images_per_class", images_per_class)
    image_size = _check_size("image_size", image_size)
    mask_size = _check_size("mask_size", mask_size)
    seed = _check_seed(seed)
    _difficulty(difficulty)
    owned = [
        *RADIOGRAPHY_LABELS,
        *(f"{name}.metadata.xlsx" for name in RADIOGRAPHY_LABELS),
        LESION_MASK_FOLDER,
        SHORTCUT_MARKERS_FILE,
    ]
    root = _prepare_output(output_dir, owned, overwrite)
    markers = []
    with tqdm(
        total=count * len(RADIOGRAPHY_LABELS), desc="radiography", disable=not progress
    ) as bar:
        for class_index, class_name in enumerate(RADIOGRAPHY_LABELS):
            metadata = []
            for index in range(count):
                rng, extras = _image_rngs(seed, _RADIOGRAPHY_STREAM, class_index, index)
                patient = PhantomPatient.sample(rng, RADIOGRAPHY_FINDINGS[class_name])
                phantom = render_xray(
                    patient, height=image_size, width=image_size, rng=rng, difficulty=difficulty
                )
                stem = f"{class_name}-{index + 1}"
                relative = Path(class_name, "images", f"{stem}.png")
                image = phantom.image
                url = _source_url(class_name, extras)
                if shortcut:
                    image, box = _stamp_marker(image, class_index, extras)
                    if box is not None:
                        markers.append((relative.as_posix(), *box))
                _save_image(root / relative, image)
                _save_mask(
                    root / class_name / "masks" / f"{stem}.png",
                    phantom.lung_mask,
                    (mask_size, mask_size),
                )
                _save_mask(_lesion_mask_path(root, relative), phantom.lesion_mask)
                metadata.append((stem, "PNG", f"{mask_size}*{mask_size}", url))
                bar.update()
            _write_workbook(
                root / f"{class_name}.metadata.xlsx",
                ("FILE NAME", "FORMAT", "SIZE", "URL"),
                metadata,
            )
    if shortcut:
        _write_csv(root / SHORTCUT_MARKERS_FILE, ("file", "x0", "y0", "x1", "y1"), markers)
    return root


@dataclass(frozen=True)
class _XrayCtImage:
    """One written image of the X-ray + CT layouts."""

    relative: Path
    modality: str
    label: str
    patient_id: str | None


def _random_shape(
    rng: np.random.Generator, size_range: tuple[int, int], square_probability: float
) -> tuple[int, int]:
    low, high = size_range
    height = int(rng.integers(low, high + 1))
    if rng.random() < square_probability:
        return height, height
    width = int(np.clip(round(height * float(rng.uniform(0.8, 1.25))), low, high))
    return height, width


def _write_xray_ct_image(
    root: Path,
    relative: Path,
    modality: str,
    label_index: int,
    patient: PhantomPatient,
    rng: np.random.Generator,
    extras: np.random.Generator,
    size_range: tuple[int, int],
    difficulty: str,
    shortcut: bool,
    markers: list[tuple[object, ...]],
) -> None:
    if modality == "xray":
        height, width = _random_shape(rng, size_range, square_probability=0.4)
        phantom = render_xray(patient, height=height, width=width, rng=rng, difficulty=difficulty)
    else:
        height, width = _random_shape(rng, size_range, square_probability=0.7)
        phantom = render_ct(patient, height=height, width=width, rng=rng, difficulty=difficulty)
    image = phantom.image
    if shortcut:
        image, box = _stamp_marker(image, label_index, extras)
        if box is not None:
            markers.append((relative.as_posix(), *box))
    _save_image(root / relative, image)
    _save_mask(_lesion_mask_path(root, relative), phantom.lesion_mask)


_MODALITY_FOLDERS = {"xray": XRAY_FOLDER, "ct": CT_FOLDER}


def generate_xray_ct(
    output_dir: str | Path,
    *,
    images_per_class: int = 50,
    size_range: tuple[int, int] = (256, 512),
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a phantom Extensive COVID-19 X-Ray and CT dataset (Mendeley layout, unpaired).

    Layout: ``X-ray/{COVID,Non-COVID}/<label> (<n>).{jpg,png}`` and the same under ``CT/``,
    grayscale JPEG or PNG of mixed sizes (X-rays often non-square), with lesion ground truth under
    ``lesion_masks/<modality>/<label>/<label> (<n>).png`` (empty for Non-COVID). The X-ray and CT
    of the same name are different phantom patients: the layout has no patient identity.

    Args:
        output_dir: folder to write; must be empty or absent unless ``overwrite``.
        images_per_class: images of each label in each modality.
        size_range: (min, max) image side in pixels.
        seed: image (modality, label, n) is the same for the same seed.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        shortcut: stamp a label-correlated corner marker (see ``shortcut_markers.csv``).
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.

    Returns:
        The output folder.
    """
    count = _check_count("images_per_class", images_per_class)
    size_range = _check_size_range(size_range)
    seed = _check_seed(seed)
    _difficulty(difficulty)
    owned = [XRAY_FOLDER, CT_FOLDER, LESION_MASK_FOLDER, SHORTCUT_MARKERS_FILE]
    root = _prepare_output(output_dir, owned, overwrite)
    markers: list[tuple[object, ...]] = []
    total = count * len(BINARY_LABELS) * len(_MODALITY_FOLDERS)
    with tqdm(total=total, desc="x-ray + ct", disable=not progress) as bar:
        for modality_index, (modality, folder) in enumerate(_MODALITY_FOLDERS.items()):
            for label_index, label in enumerate(BINARY_LABELS):
                for index in range(count):
                    key = (_XRAY_CT_STREAM, modality_index, label_index, index)
                    rng, extras = _image_rngs(seed, *key)
                    patient = PhantomPatient.sample(rng, BINARY_FINDINGS[label])
                    suffix = ".jpg" if rng.random() < 0.5 else ".png"
                    relative = Path(folder, label, f"{label} ({index + 1}){suffix}")
                    _write_xray_ct_image(
                        root, relative, modality, label_index, patient, rng, extras,
                        size_range, difficulty, shortcut, markers,
                    )  # fmt: skip
                    bar.update()
    if shortcut:
        _write_csv(root / SHORTCUT_MARKERS_FILE, ("file", "x0", "y0", "x1", "y1"), markers)
    return root


def generate_paired_xray_ct(
    output_dir: str | Path,
    *,
    patients_per_class: int = 50,
    size_range: tuple[int, int] = (256, 512),
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a phantom X-ray + CT dataset where every patient has one X-ray and one CT.

    Same layout as :func:`generate_xray_ct`, files named ``<modality folder>/<label>/<patient
    id>_{xray,ct}.{jpg,png}``, plus ``metadata.csv`` with columns ``file`` (path relative to the
    root), ``modality`` (``xray`` or ``ct``), ``label`` and ``patient_id``. Both images of a patient
    share the body size and the lesion side and extent. Patient ids interleave the labels
    (``P0001`` Non-COVID, ``P0002`` COVID, ...), so they do not depend on ``patients_per_class``.

    Args:
        output_dir: folder to write; must be empty or absent unless ``overwrite``.
        patients_per_class: patients of each label.
        size_range: (min, max) image side in pixels.
        seed: patient (label, n) is the same for the same seed.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        shortcut: stamp a label-correlated corner marker (see ``shortcut_markers.csv``).
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.

    Returns:
        The output folder.
    """
    count = _check_count("patients_per_class", patients_per_class)
    size_range = _check_size_range(size_range)
    seed = _check_seed(seed)
    _difficulty(difficulty)
    owned = [
        XRAY_FOLDER,
        CT_FOLDER,
        LESION_MASK_FOLDER,
        SHORTCUT_MARKERS_FILE,
        PAIRED_METADATA_FILE,
    ]
    root = _prepare_output(output_dir, owned, overwrite)
    markers: list[tuple[object, ...]] = []
    rows = []
    digits = max(4, len(str(count * len(BINARY_LABELS))))
    total = count * len(BINARY_LABELS) * len(_MODALITY_FOLDERS)
    with tqdm(total=total, desc="paired x-ray + ct", disable=not progress) as bar:
        for index in range(count):
            for label_index, label in enumerate(BINARY_LABELS):
                patient_id = f"P{index * len(BINARY_LABELS) + label_index + 1:0{digits}d}"
                patient_seed = np.random.SeedSequence(
                    seed, spawn_key=(_PAIRED_STREAM, label_index, index)
                )
                patient = PhantomPatient.sample(
                    np.random.default_rng(patient_seed), BINARY_FINDINGS[label]
                )
                for modality_index, (modality, folder) in enumerate(_MODALITY_FOLDERS.items()):
                    rng, extras = _image_rngs(
                        seed, _PAIRED_STREAM, label_index, index, modality_index
                    )
                    suffix = ".jpg" if rng.random() < 0.5 else ".png"
                    relative = Path(folder, label, f"{patient_id}_{modality}{suffix}")
                    _write_xray_ct_image(
                        root, relative, modality, label_index, patient, rng, extras,
                        size_range, difficulty, shortcut, markers,
                    )  # fmt: skip
                    rows.append((relative.as_posix(), modality, label, patient_id))
                    bar.update()
    _write_csv(root / PAIRED_METADATA_FILE, ("file", "modality", "label", "patient_id"), rows)
    if shortcut:
        _write_csv(root / SHORTCUT_MARKERS_FILE, ("file", "x0", "y0", "x1", "y1"), markers)
    return root


RADIOGRAPHY_FOLDER = "radiography"
XRAY_CT_FOLDER = "xray_ct"
PAIRED_XRAY_CT_FOLDER = "xray_ct_paired"


def generate_all(
    output_dir: str | Path,
    *,
    images_per_class: int = 50,
    image_size: int = 299,
    mask_size: int = 256,
    size_range: tuple[int, int] = (256, 512),
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write all three layouts under ``output_dir``.

    ``radiography/`` (:func:`generate_radiography`), ``xray_ct/`` (:func:`generate_xray_ct`) and
    ``xray_ct_paired/`` (:func:`generate_paired_xray_ct`, ``images_per_class`` patients per label).

    Returns:
        The output folder.
    """
    # Check every argument before anything is written.
    _check_count("images_per_class", images_per_class)
    _check_size("image_size", image_size)
    _check_size("mask_size", mask_size)
    _check_size_range(size_range)
    _check_seed(seed)
    _difficulty(difficulty)
    root = _prepare_output(
        output_dir, (RADIOGRAPHY_FOLDER, XRAY_CT_FOLDER, PAIRED_XRAY_CT_FOLDER), overwrite
    )
    common = {"seed": seed, "difficulty": difficulty, "shortcut": shortcut, "progress": progress}
    generate_radiography(
        root / RADIOGRAPHY_FOLDER,
        images_per_class=images_per_class,
        image_size=image_size,
        mask_size=mask_size,
        **common,
    )
    generate_xray_ct(
        root / XRAY_CT_FOLDER, images_per_class=images_per_class, size_range=size_range, **common
    )
    generate_paired_xray_ct(
        root / PAIRED_XRAY_CT_FOLDER,
        patients_per_class=images_per_class,
        size_range=size_range,
        **common,
    )
    return root
