"""Figures of explanations: CAM heat maps over their images, and feature-map grids.

Each function draws what it is handed (no model is run here), builds a
:class:`matplotlib.figure.Figure` without pyplot's global state (safe from the app's threads),
writes a PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..plots import save_figure

__all__ = ["display_image", "plot_feature_maps", "plot_gradcam_overlays"]


def display_image(array: np.ndarray) -> np.ndarray:
    """An image as (H, W) or (H, W, 3) float in [0, 1] for ``imshow``.

    Channel-first input is moved last; a constant image becomes zeros.

    Raises:
        ValueError: an array that is not (H, W), (C, H, W) or (H, W, C).
    """
    image = np.asarray(array, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ValueError(
            f"expected an image of shape (H, W), (C, H, W) or (H, W, C), got {image.shape}"
        )
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def plot_gradcam_overlays(
    images: Sequence[np.ndarray],
    cams: Sequence[np.ndarray],
    path: str | Path,
    titles: Sequence[str] | None = None,
    alpha: float = 0.45,
    contours: Sequence[np.ndarray | None] | None = None,
    label: str = "Grad-CAM",
) -> Path:
    """CAM heat maps over their input images: one column per image, input above overlay.

    Args:
        images: input images, (H, W) or (C, H, W), any range (rescaled for display).
        cams: matching (H, W) maps in [0, 1].
        path: PNG file to write.
        titles: a caption per column (e.g. "xray: COVID 0.93").
        alpha: opacity of the heat map.
        contours: optional binary masks (e.g. lesion or marker) drawn as outlines.
        label: the colour bar's label (the method, e.g. "HiResCAM").

    Returns:
        ``path``.

    Raises:
        ValueError: no images, or not one map per image.
    """
    if len(images) != len(cams) or not images:
        raise ValueError(f"need as many maps as images (>= 1), got {len(images)} and {len(cams)}")
    figure = Figure(figsize=(2.6 * len(images), 5.4))
    axes = np.asarray(figure.subplots(2, len(images), squeeze=False))
    for column, (image, cam) in enumerate(zip(images, cams, strict=True)):
        picture = display_image(image)
        gray = "gray" if picture.ndim == 2 else None
        axes[0, column].imshow(picture, cmap=gray)
        axes[1, column].imshow(picture, cmap=gray)
        heat = axes[1, column].imshow(np.asarray(cam), cmap="jet", alpha=alpha, vmin=0, vmax=1)
        if contours is not None and contours[column] is not None and np.any(contours[column]):
            for axis in axes[:, column]:
                axis.contour(
                    np.asarray(contours[column]) > 0, levels=[0.5], colors="lime", linewidths=1
                )
        if titles is not None:
            axes[0, column].set_title(titles[column], fontsize=9)
        for axis in axes[:, column]:
            axis.axis("off")
    figure.colorbar(heat, ax=axes[1, :].tolist(), fraction=0.03, pad=0.02, label=label)
    return save_figure(figure, path)


def plot_feature_maps(
    feature_maps: Mapping[str, np.ndarray], path: str | Path, max_channels: int = 16
) -> Path:
    """The first channels of each layer's activations as a grid, one block of rows per layer.

    Args:
        feature_maps: layer name -> (C, H, W) activations of one image.
        path: PNG file to write.
        max_channels: channels shown per layer.

    Returns:
        ``path``.

    Raises:
        ValueError: no layers, or activations that are not (C, H, W).
    """
    if not feature_maps:
        raise ValueError("no feature maps to plot")
    columns = min(8, max_channels)
    layout = []
    for name, maps in feature_maps.items():
        maps = np.asarray(maps)
        if maps.ndim != 3:
            raise ValueError(f"feature maps of layer '{name}' must be (C, H, W), got {maps.shape}")
        shown = maps[:max_channels]
        layout.append((name, shown, math.ceil(len(shown) / columns)))
    rows = sum(block_rows for _, _, block_rows in layout)
    figure = Figure(figsize=(1.4 * columns, 1.5 * rows + 0.4 * len(layout)))
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    row = 0
    for name, shown, block_rows in layout:
        for index in range(block_rows * columns):
            axis = axes[row + index // columns, index % columns]
            axis.axis("off")
            if index < len(shown):
                axis.imshow(display_image(shown[index]), cmap="viridis")
                axis.set_title(f"{name}[{index}]" if index == 0 else f"[{index}]", fontsize=7)
        row += block_rows
    return save_figure(figure, path)
