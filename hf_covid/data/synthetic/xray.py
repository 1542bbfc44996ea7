"""Posteroanterior chest radiograph phantoms: anatomy, the three lesion patterns, exposure.

What is drawn: body outline, tapered lung apices, diaphragm domes with costophrenic angles,
posterior and anterior ribs, clavicles, spine, mediastinum, heart on the patient's left (image
right), hila and vascular markings. Findings: ground glass (bilateral, peripheral, lower-zone
hazy patches), consolidation (one dense lobar opacity bounded by a fissure) and interstitial (a
bilateral perihilar reticular pattern). Lesions are clipped to the lungs. Pose, exposure (window,
gamma, occasional histogram equalisation) and noise vary from image to image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .render import (
    CONSOLIDATION,
    GROUND_GLASS,
    INTERSTITIAL,
    Difficulty,
    Phantom,
    PhantomPatient,
    Pose,
    difficulty_level,
    ellipse_distance,
    equalize,
    fast_hypot,
    finish_phantom,
    render_grid_shape,
    smooth_noise,
    soft,
)

__all__ = ["render_xray"]


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

    def lateral(self, v: np.ndarray | float) -> np.ndarray:
        """Distance of the lateral lung edge (inner chest wall) from the midline at height v."""
        growth = np.clip((v - self.apex) / (0.75 * (self.dome_right + 0.2 - self.apex)), 0.0, 1.0)
        return 0.3 + (self.lateral_max - 0.3) * np.sqrt(growth)

    def dome(self, s: np.ndarray, dome_top: np.ndarray) -> np.ndarray:
        """Height of the diaphragm below the lung at distance s from the midline."""
        return dome_top + 0.9 * (s - 0.38) ** 2 + 3.0 * np.clip(s - 0.58, 0.0, None) ** 2

    def heart_distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Approximate distance outside the heart (positive outside, body units)."""
        radius = ellipse_distance(u, v, self.heart_center, self.heart_radii, angle=0.45)
        return (radius - 1.0) * self.heart_radii[1]

    def lung_margin(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Approximate distance inside the lungs (positive inside, body units)."""
        s = np.abs(u)
        dome_top = np.where(u < 0, np.float32(self.dome_right), np.float32(self.dome_left))
        aortic_knob = fast_hypot(u - 0.1, v - (self.apex + 0.43)) - 0.07
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


def _sample_xray_pose(rng: np.random.Generator, patient: PhantomPatient) -> Pose:
    return Pose(
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
    body = soft(body_margin, pixel)
    thickness = np.sqrt(np.clip(1.0 - (s / half_width) ** 2, 0.0, 1.0))
    tissue = body * (0.3 + 0.28 * thickness)

    # Spine (with vertebral segments), heart, humeral heads.
    vertebrae = 0.8 + 0.2 * np.cos(2.0 * np.pi * v / float(rng.uniform(0.1, 0.12)))
    tissue += 0.07 * soft(0.06 - s, pixel) * vertebrae
    trachea = soft(0.035 - s, pixel) * soft(geometry.hilum_v - 0.08 - v, pixel)
    tissue -= 0.12 * trachea
    tissue += 0.03 * soft(-geometry.heart_distance(u, v), pixel)
    humeral = fast_hypot(s - 0.98, v + 0.8) - 0.17
    tissue += 0.06 * body * soft(-humeral, pixel)

    # Posterior ribs arch up from the spine and curve down laterally; anterior ribs slope down
    # toward the midline and are fainter.
    spacing = float(rng.uniform(0.14, 0.165)) * (geometry.dome_right - geometry.apex) / 1.2
    rib_phase = (v + 0.45 * s - 0.85 * s**2 - 0.6 * np.clip(s - 0.5, 0.0, None) ** 2) / spacing
    posterior = np.clip((np.cos(2.0 * np.pi * (rib_phase + rng.random())) - 0.4) / 0.5, 0.0, 1.0)
    rib_cage = soft(lateral + 0.04 - s, pixel) * soft(s - 0.06, pixel)
    rib_cage *= soft(v - (geometry.apex - 0.12), pixel) * soft(0.75 - v, pixel)
    anterior_phase = (v + 0.55 * s) / (1.3 * spacing) + rng.random()
    anterior = np.clip((np.cos(2.0 * np.pi * anterior_phase) - 0.5) / 0.5, 0.0, 1.0)
    anterior *= soft(s - 0.25, pixel)
    rib_cage *= 0.4 + 0.6 * np.clip(margin / 0.05 + 0.5, 0.0, 1.0)
    tissue += rib_cage * (0.09 * posterior + 0.035 * anterior)

    # Clavicles: a bar from the sternal notch out to each shoulder, crossing the lung apices.
    start = (0.08, geometry.apex + 0.02)
    end = (0.72, geometry.apex - 0.08)
    direction = (end[0] - start[0], end[1] - start[1])
    along = (s - start[0]) * direction[0] + (v - start[1]) * direction[1]
    along = np.clip(along / (direction[0] ** 2 + direction[1] ** 2), 0.0, 1.0)
    clavicle = fast_hypot(s - start[0] - along * direction[0], v - start[1] - along * direction[1])
    tissue += 0.09 * body * soft(0.032 - clavicle, pixel)

    # Gastric bubble under the left hemidiaphragm.
    if rng.random() < 0.7:
        bubble = ellipse_distance(u, v, (0.36, geometry.dome_left + 0.14), (0.09, 0.05))
        tissue -= 0.12 * soft(1.0 - bubble, pixel / 0.06)

    # Lung air: darkest in the middle of each lung, less dark at the bases.
    depth = np.sqrt(np.clip(margin / 0.1, 0.0, 1.0))
    air = 0.44 * depth * (1.0 - 0.25 * np.clip((v - 0.05) / 0.4, 0.0, 1.0))
    air *= 1.0 + 0.06 * smooth_noise(rng, u.shape, 8)

    # Normal hila and vascular markings (fine, faint, fading toward the periphery).
    hilum = np.exp(-(((s - 0.19) / 0.06) ** 2) - ((v - geometry.hilum_v) / 0.11) ** 2)
    radial = fast_hypot(s - 0.15, v - geometry.hilum_v)
    angle = np.arctan2(v - geometry.hilum_v, s - 0.15)
    markings = np.clip(np.cos(34.0 * angle + 6.0 * radial) - 0.6, 0.0, None) / 0.4
    normal_opacity = 0.4 * hilum + 0.12 * markings * np.exp(-radial / 0.3)
    return tissue, air, normal_opacity, margin


def _ground_glass_xray(
    u: np.ndarray,
    v: np.ndarray,
    pixel: float,
    geometry: _ChestGeometry,
    patient: PhantomPatient,
    level: Difficulty,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
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
            distance = ellipse_distance(
                s, v, (center_s, center_v), radii, float(rng.normal(0, 0.3))
            )
            distance = np.where(u * side > 0, distance, 9.0)
            opacity = np.maximum(opacity, np.clip(1.0 - (distance * distance) ** 2, 0.0, 1.0))
            region = np.maximum(region, soft(1.0 - distance, pixel / radius))
    texture = 0.75 + 0.25 * np.tanh(smooth_noise(rng, u.shape, 14))
    peak = min(0.95, 0.7 * level.lesion_opacity)
    return peak * opacity * texture, region


def _consolidation_xray(
    u: np.ndarray,
    v: np.ndarray,
    pixel: float,
    geometry: _ChestGeometry,
    patient: PhantomPatient,
    level: Difficulty,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
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
    inside = soft(margin, pixel)
    texture = 0.9 + 0.1 * np.tanh(smooth_noise(rng, u.shape, 20))
    peak = min(0.97, 0.85 * level.lesion_opacity)
    return peak * inside * texture, inside


def _interstitial_xray(
    u: np.ndarray,
    v: np.ndarray,
    pixel: float,
    geometry: _ChestGeometry,
    patient: PhantomPatient,
    level: Difficulty,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Bilateral perihilar interstitial pattern: coarse, irregular streaks fanning out of the hila."""
    s = np.abs(u)
    dv = v - geometry.hilum_v
    # The streaks radiate from a point behind the mediastinum, so that in the lung they fan out
    # of the hilum instead of meeting in a star.
    angle = np.arctan2(dv, s + 0.05) + 0.25 * smooth_noise(rng, u.shape, 9)
    phase = np.where(u < 0, np.float32(rng.random()), np.float32(rng.random())) * 2.0 * np.pi
    waves = np.cos(16.0 * angle + phase) + 0.7 * smooth_noise(rng, u.shape, 12)
    streaks = np.clip(1.5 - np.abs(waves) / 0.45, 0.0, 1.0)
    reach = (0.3 + 0.12 * patient.lesion_extent) * level.lesion_extent
    radial = fast_hypot((s - 0.2) / 1.1, dv) / reach
    envelope = np.clip(1.0 - radial**2, 0.0, 1.0)
    region = soft(0.9 - radial, pixel / reach) * soft(s - 0.1, pixel)
    peak = min(0.95, 0.7 * level.lesion_opacity)
    return peak * (0.3 + 0.7 * streaks) * (0.4 + 0.6 * envelope) * region, region


_LesionDrawer = Callable[
    [
        np.ndarray,
        np.ndarray,
        float,
        _ChestGeometry,
        PhantomPatient,
        Difficulty,
        np.random.Generator,
    ],
    tuple[np.ndarray, np.ndarray],
]
"""Draws one finding: returns (opacity, region), both on the render grid."""

_XRAY_LESIONS: dict[str, _LesionDrawer] = {
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
    level = difficulty_level(difficulty)
    render_shape = render_grid_shape(height, width)
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
        field = equalize(field, float(rng.uniform(0.3, 0.7)))
    noise_std = level.noise_std * float(rng.uniform(0.6, 1.4))
    return finish_phantom(
        field, soft(lung_margin, pixel), lesion_region, (height, width), noise_std, rng
    )
