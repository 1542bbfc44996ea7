"""Resizing one 2-D float image or mask: what the served maps, the overlays and the U-Net's masks
need to go back to an image's own resolution."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["resize_image"]


def resize_image(array: np.ndarray, shape: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """A 2-D float array resized to ``shape`` (H, W), bilinear or nearest-neighbour."""
    if array.shape == shape:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    mode = "nearest" if nearest else "bilinear"
    kwargs = {} if nearest else {"align_corners": False}
    return F.interpolate(tensor, size=shape, mode=mode, **kwargs)[0, 0].numpy()
