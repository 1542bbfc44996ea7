"""Axial chest CT phantom slices in a lung window, with ground-glass findings.

What is drawn: body wall (skin, fat, muscle), ribs, vertebra with spinal canal, sternum,
mediastinum and heart (bigger toward the lung bases), descending aorta, lungs with vessels and a
dependent density gradient, the trachea in upper slices and often the patient table. The only
finding drawn in CT is ground glass: peripheral, mostly posterior subpleural patches.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .render import (
    GROUND_GLASS,
    RENDER_LONG_SIDE,
    Difficulty,
    Phantom,
    PhantomPatient,
    Pose,
    difficulty_level,
    ellipse_distance,
    fast_hypot,
    finish_phantom,
    render_grid_shape,
    smooth_noise,
    soft,
)

__all__ = ["render_ct"]


def _sample_ct_pose(rng: np.random.Generator) -> Pose:
    return Pose(
        scale=float(rng.uniform(0.85, 1.0)),
        center_x=float(rng.normal(0.0, 0.03)),
        center_y=float(rng.normal(-0.02, 0.03)),
        rotation=math.radians(float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0))),
    )


def _ground_glass_ct(
    u: np.ndarray,
    v: np.ndarray,
    pixel: float,
    lungs: np.ndarray,
    thorax: tuple[float, float],
    patient: PhantomPatient,
    level: Difficulty,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
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
            distance = ellipse_distance(u, v, point, radii, normal)
            opacity = np.maximum(opacity, np.clip(1.0 - (distance * distance) ** 2, 0.0, 1.0))
            region = np.maximum(region, soft(1.0 - distance, pixel / radius))
    texture = 0.8 + 0.2 * np.tanh(smooth_noise(rng, u.shape, 20))
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
    level = difficulty_level(difficulty)
    if patient.finding not in (None, GROUND_GLASS):
        raise ValueError(f"CT phantoms draw ground glass or nothing, got {patient.finding!r}")
    render_shape = render_grid_shape(height, width)
    u, v, pixel = _sample_ct_pose(rng).body_coordinates(*render_shape)
    s = np.abs(u)
    slice_level = float(rng.uniform(0.0, 1.0))  # 0 = upper lobes, 1 = lung bases (big heart)

    # Body wall: skin and fat (a little darker in a lung window), then muscle, then the ribs.
    half_width, half_depth = 0.86 * patient.body_width, 0.6 * patient.body_depth
    body_margin = (1.0 - ellipse_distance(u, v, (0.0, 0.0), (half_width, half_depth))) * half_depth
    fat = float(rng.uniform(0.03, 0.1))
    thorax = (half_width - fat - 0.08, half_depth - fat - 0.08)
    inner_margin = (1.0 - ellipse_distance(u, v, (0.0, 0.0), thorax)) * thorax[1]
    field = 0.03 + soft(body_margin, pixel) * (0.68 + 0.13 * soft(body_margin - fat, pixel))

    # Bone: ribs just outside the pleura, vertebral body, spinal canal, spinous process, sternum.
    rib_ring = soft(-inner_margin - 0.004, pixel) * soft(inner_margin + 0.036, pixel)
    rib_angle = np.arctan2(v, u)
    ribs = soft(np.cos(12.0 * rib_angle + 6.28 * rng.random()) - 0.45, 0.15) * rib_ring
    vertebra_v = thorax[1] - 0.15
    vertebra = soft(0.1 - fast_hypot(u, v - vertebra_v), pixel)
    canal = soft(0.04 - fast_hypot(u, v - vertebra_v - 0.13), pixel)
    spinous = soft(1.0 - ellipse_distance(u, v, (0.0, vertebra_v + 0.19), (0.025, 0.045)), 0.1)
    sternum = soft(1.0 - ellipse_distance(u, v, (0.0, 0.04 - thorax[1]), (0.08, 0.03)), 0.1)
    # Bone stays under the skin, whatever the fat thickness.
    bone = np.maximum.reduce([ribs, vertebra, spinous, sternum]) * soft(body_margin - 0.02, pixel)
    field += 0.18 * bone - 0.08 * canal

    # Lungs: inside the rib cage, outside the heart / mediastinum, spine and descending aorta.
    heart_size = (0.17 + 0.13 * slice_level) * patient.heart_size
    heart = ellipse_distance(
        u, v, (0.07 * slice_level, -0.1), (1.3 * heart_size, heart_size + 0.03), 0.5
    )
    mediastinum_margin = np.minimum((heart - 1.0) * heart_size, s - 0.07)
    spine_margin = np.minimum(
        fast_hypot(u, v - vertebra_v) - 0.13, np.maximum(s - 0.1, vertebra_v - v)
    )
    aorta_margin = fast_hypot(u - 0.13, v - vertebra_v + 0.08) - 0.07
    lung_margin = np.minimum.reduce([inner_margin, mediastinum_margin, spine_margin, aorta_margin])
    lungs = soft(lung_margin, pixel)
    parenchyma = 0.12 + 0.02 * smooth_noise(rng, render_shape, 10)
    parenchyma += 0.05 * np.clip(v / half_depth, 0.0, 1.0)  # dependent (posterior) density
    field = field * (1.0 - lungs) + parenchyma * lungs
    if slice_level < 0.4:  # trachea in the upper mediastinum
        trachea = soft(0.05 - fast_hypot(u, v + 0.12), pixel)
        field = field * (1.0 - trachea) + 0.05 * trachea

    # Vessels: many small bright dots, bigger and denser toward the hila.
    scale = render_shape[0] / RENDER_LONG_SIDE
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
        field += 0.4 * soft(0.012 - np.abs(v - table_v), pixel) * soft(0.95 - s, pixel)

    gamma = float(np.clip(np.exp(rng.normal(0.0, 0.15)), 0.75, 1.35))
    field = np.clip(field, 0.0, 1.0) ** gamma
    noise_std = 0.8 * level.noise_std * float(rng.uniform(0.6, 1.4))
    return finish_phantom(field, lungs, lesion_region, (height, width), noise_std, rng)
