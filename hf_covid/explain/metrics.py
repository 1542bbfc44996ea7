"""Scores of explanation maps against ground truth: pointing game, energy inside a mask.

Maps and masks may be given as tensors, arrays or lists of 2-D maps; masks are resized to the
maps with nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["box_masks", "energy_inside", "masks_like", "pointing_game"]

Maps = torch.Tensor | np.ndarray | Sequence
"""(N, H, W) maps or masks: a tensor, an array, or a list of 2-D maps."""


def _as_batch(maps: Maps) -> torch.Tensor:
    """(N, H, W) float tensor from maps given as a tensor, an array or a list of 2-D maps."""
    if isinstance(maps, torch.Tensor):
        batch = maps.detach().float().cpu()
    elif isinstance(maps, np.ndarray):
        batch = torch.from_numpy(maps.astype(np.float32))
    else:
        batch = torch.stack([_as_batch(np.asarray(m))[0] for m in maps])
    if batch.ndim == 4 and batch.shape[1] == 1:
        batch = batch[:, 0]
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"expected maps of shape (N, H, W), got {tuple(batch.shape)}")
    return batch


def masks_like(masks: Maps, cams: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Boolean masks resized (nearest) to the size of ``cams`` and dilated by ``tolerance`` px.

    Args:
        masks: (N, H', W') masks; values above 0 are inside.
        cams: the (N, H, W) maps they are compared with.
        tolerance: pixels of dilation.

    Raises:
        ValueError: a different number of masks and maps.
    """
    batch = (_as_batch(masks) > 0).float()
    if batch.shape[0] != cams.shape[0]:
        raise ValueError(f"got {cams.shape[0]} maps but {batch.shape[0]} masks")
    if batch.shape[-2:] != cams.shape[-2:]:
        batch = F.interpolate(batch[:, None], size=cams.shape[-2:], mode="nearest")[:, 0]
    if tolerance > 0:
        batch = F.max_pool2d(batch[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    return batch > 0


def pointing_game(
    cams: Maps, lesion_masks: Maps, tolerance: int = 0, per_image: bool = False
) -> float | np.ndarray:
    """Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016).

    A hit is a map whose maximum lies inside the lesion (dilated by ``tolerance`` pixels).
    Images whose mask is empty have nothing to point at and are left out.

    Args:
        cams: (N, H, W) maps.
        lesion_masks: (N, H', W') binary masks (resized to the maps with nearest neighbour).
        tolerance: pixels of slack around the lesion.
        per_image: return the per-image hits (NaN for empty masks) instead of the rate.

    Returns:
        The hit rate over images with a lesion (NaN if none has), or the per-image array.

    Example:
        >>> import numpy as np
        >>> cams, masks = np.zeros((1, 4, 4)), np.zeros((1, 4, 4))
        >>> cams[0, 1, 1], masks[0, :2, :2] = 1.0, 1
        >>> pointing_game(cams, masks)
        1.0
    """
    maps = _as_batch(cams)
    masks = masks_like(lesion_masks, maps, tolerance)
    peaks = maps.flatten(1).argmax(dim=1)
    hits = masks.flatten(1).gather(1, peaks[:, None])[:, 0].numpy().astype(np.float64)
    hits[~masks.flatten(1).any(dim=1).numpy()] = np.nan
    if per_image:
        return hits
    return float(np.nanmean(hits)) if not np.isnan(hits).all() else float("nan")


def energy_inside(cams: Maps, masks: Maps, per_image: bool = False) -> float | np.ndarray:
    """Fraction of each map's total energy (sum of values) inside a mask, as in Score-CAM's
    energy-based pointing game (Wang et al., CVPR-W 2020); a zero map counts as 0.

    Args:
        cams: (N, H, W) non-negative maps.
        masks: (N, H', W') binary masks (resized to the maps with nearest neighbour).
        per_image: return the per-image fractions instead of their mean.

    Returns:
        The mean fraction, or the per-image array.
    """
    maps = _as_batch(cams).clamp_min(0)
    inside = masks_like(masks, maps)
    total = maps.flatten(1).sum(dim=1)
    within = (maps * inside).flatten(1).sum(dim=1)
    fractions = torch.where(total > 0, within / total.clamp_min(1e-12), torch.zeros_like(total))
    fractions = fractions.numpy().astype(np.float64)
    return fractions if per_image else float(fractions.mean())


def box_masks(boxes: Sequence[Sequence[float]] | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) boolean masks of boxes ``(x0, y0, x1, y1)`` in pixels (x1, y1 exclusive)."""
    height, width = size
    rows = torch.arange(height)[None, :, None]
    columns = torch.arange(width)[None, None, :]
    box = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    x0, y0, x1, y1 = (box[:, i, None, None] for i in range(4))
    return (columns >= x0) & (columns < x1) & (rows >= y0) & (rows < y1)
