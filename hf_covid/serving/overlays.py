"""Display images for the served predictions: heat-map and mask overlays, feature-map grids.

Every function takes float arrays in [0, 1] (as :class:`~hf_covid.serving.predictor.Prediction`
holds them) and returns (H, W, 3) uint8 RGB, ready to save as PNG.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from scipy import ndimage

from ..data.resize import resize_image

__all__ = ["feature_map_grid", "heatmap_overlay", "mask_overlay"]


def heatmap_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.45,
    side: int = 384,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """A heat map (e.g. Grad-CAM, [0, 1]) over a grayscale image, as (h, w, 3) uint8 RGB whose
    longer side is ``side`` pixels (display size: large images shrink, small ones grow).

    ``box`` (top, left, bottom, right as fractions of the image: the model's lung crop) is
    outlined in yellow, so that the overlay shows which part of the image the model saw.
    """
    base = _display_size(image, side)
    heat = np.clip(resize_image(heatmap, base.shape), 0, 1)
    colored = colormaps["jet"](heat)[..., :3]
    rgb = (1 - alpha) * base[..., None] + alpha * colored
    if box is not None:
        _outline_box(rgb, box, (1.0, 0.9, 0.0))
    return _to_uint8(rgb)


def _outline_box(
    rgb: np.ndarray, box: tuple[float, float, float, float], color: tuple[float, float, float]
) -> None:
    """Draw the outline of ``box`` (fractions of the image) into ``rgb`` in place."""
    height, width = rgb.shape[:2]
    thickness = max(1, max(height, width) // 192)
    top, left = round(box[0] * height), round(box[1] * width)
    bottom, right = max(round(box[2] * height), top + 1), max(round(box[3] * width), left + 1)
    for rows, columns in (
        (slice(top, top + thickness), slice(left, right)),
        (slice(bottom - thickness, bottom), slice(left, right)),
        (slice(top, bottom), slice(left, left + thickness)),
        (slice(top, bottom), slice(right - thickness, right)),
    ):
        rgb[rows, columns] = color


def mask_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color: tuple[float, float, float] = (0.1, 0.9, 0.2),
    alpha: float = 0.3,
    side: int = 384,
) -> np.ndarray:
    """A binary mask tinted over a grayscale image with its outline, as (h, w, 3) uint8 RGB whose
    longer side is ``side`` pixels."""
    base = _display_size(image, side)
    inside = resize_image(np.asarray(mask, dtype=np.float32), base.shape, nearest=True) > 0.5
    outline = inside & ~ndimage.binary_erosion(inside, iterations=max(1, max(base.shape) // 256))
    rgb = np.repeat(base[..., None], 3, axis=-1)
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * np.asarray(color)
    rgb[outline] = color
    return _to_uint8(rgb)


def feature_map_grid(
    activations: np.ndarray, *, columns: int = 4, tile_size: int = 64, gap: int = 2
) -> np.ndarray:
    """The channels of one layer's (C, h, w) activations side by side, each scaled to its own
    range and coloured with viridis, as one (H, W, 3) uint8 image (white gaps between tiles)."""
    activations = np.asarray(activations, dtype=np.float32)
    if activations.ndim != 3 or not len(activations):
        raise ValueError(f"expected (C, h, w) activations, got shape {activations.shape}")
    rows = -(-len(activations) // columns)
    columns = min(columns, len(activations))
    step = tile_size + gap
    grid = np.ones((rows * step - gap, columns * step - gap, 3), dtype=np.float32)
    for index, activation in enumerate(activations):
        low, high = float(activation.min()), float(activation.max())
        scaled = (activation - low) / (high - low) if high > low else np.zeros_like(activation)
        tile = colormaps["viridis"](resize_image(scaled, (tile_size, tile_size), nearest=True))[
            ..., :3
        ]
        row, column = divmod(index, columns)
        grid[row * step : row * step + tile_size, column * step : column * step + tile_size] = tile
    return _to_uint8(grid)


def _display_size(image: np.ndarray, side: int) -> np.ndarray:
    """The image resized (up or down) so that its longer side is ``side`` pixels."""
    scale = side / max(image.shape)
    shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return np.clip(resize_image(image, shape), 0, 1)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
