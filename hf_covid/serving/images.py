"""Reading one served input image: any of the forms a caller may hold, one validation policy.

Files and bytes are read with :func:`hf_covid.data.load_image` (PNG, JPEG, 16-bit, DICOM, pixel
data only) under :data:`hf_covid.data.validation.DEFAULT_INPUT_POLICY`; arrays and PIL images are
checked against the same policy. Every error is an :class:`InputError` whose message names the
input ("X-ray", "CT", "lung mask"), never a file path, so the app can show it as it is.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import ImageReadError, load_image
from ..data.validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError

__all__ = ["INPUT_NAMES", "ImageInput", "InputError", "read_image", "resize_image"]

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray
"""An image as a file path, encoded file bytes, a PIL image or a numpy array."""

INPUT_NAMES: dict[str, str] = {"xray": "X-ray", "ct": "CT", "lung_mask": "lung mask"}
"""Input name -> how messages and captions call it."""


class InputError(ValueError):
    """A bad input image or mask. The message names the input, never a file path, and is safe to
    show to a user."""


def read_image(
    source: ImageInput, *, name: str = "image", policy: InputPolicy = DEFAULT_INPUT_POLICY
) -> np.ndarray:
    """Read one image as a 2-D float32 array in [0, 1] with :func:`load_image` semantics.

    Args:
        source: file path, encoded file bytes (PNG, JPEG, DICOM, ...), PIL image or numpy array
            (integer arrays are scaled by their bit depth, float arrays must lie in [0, 1]).
        name: what the image is ("xray", "ct", "lung_mask"), used in error messages.
        policy: size limits (pixels, smallest side, file bytes), checked before decoding.

    Raises:
        InputError: the image cannot be read or breaks the policy; the message names ``name``
            and the problem but not the file path.
    """
    what = INPUT_NAMES.get(name, name)
    if isinstance(source, np.ndarray) and source.dtype.kind == "f":
        image = _float_array_image(source, what)
        try:
            policy.check_image_size(image.shape[1], image.shape[0])
        except InputPolicyError as error:
            raise InputError(f"{what}: {error}") from None
        return image
    try:
        return load_image(_encoded(source, what), policy=policy)
    except ImageReadError as error:  # its message names the source: keep the reason only
        raise InputError(f"cannot read the {what}: {error.reason}") from None


def _encoded(source: ImageInput, what: str) -> bytes:
    """File bytes for load_image: paths are read here so that no error message names the file."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError as error:
            raise InputError(f"cannot read the {what}: {error.strerror}") from None
    if isinstance(source, np.ndarray):
        if source.dtype.kind not in "ub":
            raise InputError(f"{what}: unsupported array dtype {source.dtype}")
        if source.dtype == np.bool_:
            source = source.astype(np.uint8) * 255
        try:
            source = Image.fromarray(np.ascontiguousarray(source))
        except TypeError as error:
            raise InputError(f"{what}: array of shape {source.shape} is not an image") from error
    if isinstance(source, Image.Image):
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")  # lossless, keeps 16-bit; load_image does the rest
        return buffer.getvalue()
    raise InputError(
        f"{what}: expected a file path, bytes, PIL image or numpy array, got {type(source).__name__}"
    )


def _float_array_image(array: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(array, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"{what}: expected an (H, W) or (H, W, 3) array, got {array.shape}")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError(f"{what}: a float array must hold finite values in [0, 1]")
    return image


def resize_image(array: np.ndarray, shape: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """A 2-D float array resized to ``shape`` (H, W), bilinear or nearest-neighbour."""
    if array.shape == shape:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    mode = "nearest" if nearest else "bilinear"
    kwargs = {} if nearest else {"align_corners": False}
    return F.interpolate(tensor, size=shape, mode=mode, **kwargs)[0, 0].numpy()
