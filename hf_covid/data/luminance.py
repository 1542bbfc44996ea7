"""The grayscale conversion every colour input goes through: ITU-R BT.601 luminance."""

from __future__ import annotations

import numpy as np

__all__ = ["LUMA_WEIGHTS"]

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
"""Red, green and blue weights of ITU-R BT.601 luminance, as PIL's ``convert("L")`` uses them."""
