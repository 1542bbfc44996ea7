"""`load_image`: the one entry point for reading a chest image as a grayscale float32 array in
[0, 1], from a file, its bytes, a PIL image or a numpy array.

* 8- and 16-bit images are rescaled by their bit depth, never clipped (PIL's ``convert("L")``
  clips 16-bit images to 255, which throws away most of a 16-bit radiograph); 16-bit colour PNGs,
  which Pillow truncates to 8 bits, are decoded at full precision;
* colour and palette modes (RGB, RGBA, LA, P, CMYK, ...) are converted to luminance, and EXIF
  orientation is applied;
* DICOM goes through :mod:`hf_covid.data.dicom` (pydicom: modality LUT, VOI LUT or window, CT
  lung window, MONOCHROME1 inverted);
* multi-frame files need a ``frame``; every file is checked against the `InputPolicy` (file
  size, then width x height from the header, for compressed DICOM the JPEG / JPEG 2000 header of
  each frame) before its pixels are decoded, a guard against decompression bombs;
* a PIL image or an integer array is read as the PNG it would be (lossless, 16-bit kept); a float
  array must hold finite values in [0, 1].

Every failure is an `ImageReadError`, an `InputError`: the error of any image input that cannot
be used. Read under a ``name`` ("X-ray", "CT", "lung mask"), the message names the input and
never the file, so a front end (the app) can show it as it is.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dicom import DicomReadError, looks_like_dicom, read_dicom
from .luminance import LUMA_WEIGHTS
from .validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError

__all__ = ["ImageReadError", "ImageSource", "InputError", "load_image", "read_image_and_format"]

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray
"""An image as a file path, encoded file bytes, a PIL image or a numpy array."""


class InputError(ValueError):
    """An input image that cannot be used: unreadable, outside the `InputPolicy`, missing, or not
    what a model takes. The message of a named input never holds a file path and is safe to show
    to a user."""


class ImageReadError(InputError):
    """An image could not be read.

    Attributes:
        source: The file (or ``<N bytes>``, ``<PIL image>``, ``<uint8 array 4x4>``) that failed;
            for an image read under a ``name``, that name (never the file).
        reason: What is wrong with it, e.g. ``empty file (0 bytes)``.
        named: Whether ``source`` is the input's name.
    """

    def __init__(self, source: str, reason: str, named: bool = False):
        self.source = source
        self.reason = reason
        self.named = named
        what = f"the {source}" if named else f"image '{source}'"
        super().__init__(f"cannot read {what}: {reason}")

    def __reduce__(self):
        return type(self), (self.source, self.reason, self.named)


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    frame: int | None = None,
    max_pixels: int | None = None,
    window: str | tuple[float, float] = "auto",
    policy: InputPolicy = DEFAULT_INPUT_POLICY,
) -> np.ndarray:
    """Read a chest image as a grayscale float32 array in [0, 1].

    Args:
        source: Path to a PNG, JPEG, BMP, TIFF or DICOM file, the file's bytes, a PIL image, or a
            numpy array (integer arrays are scaled by their bit depth, float arrays must lie in
            [0, 1]).
        name: What the image is (``"X-ray"``, ``"CT"``, ``"lung mask"``): errors then name it
            instead of the file.
        frame: Frame to read from a multi-frame file (DICOM, multi-page TIFF); required there.
        max_pixels: Largest width x height accepted; None: ``policy.max_pixels``.
        window: DICOM only: ``"auto"`` (lung window for CT, else the file's VOI LUT or window,
            else the full stored range), ``"file"``, ``"full"``, ``"lung"``, ``"mediastinum"``,
            or a ``(center, width)`` pair in modality units (Hounsfield units for CT).
        policy: File size, pixel count and minimum side limits, checked before decoding.

    Returns:
        A 2-D float32 array in [0, 1], 0 black.

    Raises:
        ImageReadError: The source is missing, empty, truncated, not an image, outside the
            policy's limits, a multi-frame file without a valid ``frame``, a DICOM that needs
            a decoder (or pydicom itself) that is not installed, or an array that is no image.
    """
    policy = policy.with_max_pixels(max_pixels)
    if not isinstance(source, np.ndarray | Image.Image):
        return read_image_and_format(source, name=name, frame=frame, policy=policy, window=window)[
            0
        ]
    if name is not None:
        label = _Label(name, named=True)
    elif isinstance(source, Image.Image):
        label = _Label("<PIL image>")
    else:
        label = _Label(f"<{source.dtype} array {'x'.join(map(str, source.shape))}>")
    if isinstance(source, np.ndarray) and source.dtype.kind == "f":
        image = _float_array_image(source, label)
        _enforce(label, policy.check_image_size, image.shape[1], image.shape[0])
        return image
    return _read_encoded(_png_bytes(source, label), "", label, frame, policy, window)[0]


def read_image_and_format(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    frame: int | None = None,
    policy: InputPolicy = DEFAULT_INPUT_POLICY,
    window: str | tuple[float, float] = "auto",
) -> tuple[np.ndarray, str]:
    """`load_image` of a file or its bytes, also returning the format ("PNG", ..., "DICOM").

    Raises:
        ImageReadError: As `load_image`.
    """
    if name is not None:
        label = _Label(name, named=True)
    elif isinstance(source, bytes | bytearray):
        label = _Label(f"<{len(source)} bytes>")
    else:
        label = _Label(str(source))
    if isinstance(source, bytes | bytearray):
        _enforce(label, policy.check_file_size, len(source))
        return _read_encoded(bytes(source), "", label, frame, policy, window)
    path = Path(source)
    try:
        if path.is_dir():
            raise label.error("it is a folder")
        _enforce(label, policy.check_file_size, path.stat().st_size)
        data = path.read_bytes()
    except OSError as error:
        raise label.error(str(error.strerror or error)) from None
    return _read_encoded(data, path.suffix.lower(), label, frame, policy, window)


@dataclass(frozen=True)
class _Label:
    """How errors name the image being read: its file (or a description), or its input name."""

    source: str
    named: bool = False

    def error(self, reason: str) -> ImageReadError:
        return ImageReadError(self.source, reason, self.named)


def _png_bytes(image: np.ndarray | Image.Image, label: _Label) -> bytes:
    """A PIL image or an integer array as PNG bytes (lossless, keeps 16 bits)."""
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "ub":
            raise label.error(f"unsupported array dtype {image.dtype}")
        if image.dtype == np.bool_:
            image = image.astype(np.uint8) * 255
        try:
            image = Image.fromarray(np.ascontiguousarray(image))
        except TypeError:
            raise label.error(f"an array of shape {image.shape} is not an image") from None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _float_array_image(array: np.ndarray, label: _Label) -> np.ndarray:
    image = np.asarray(array, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3] @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    if image.ndim != 2:
        raise label.error(f"expected an (H, W) or (H, W, 3) array, got shape {array.shape}")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise label.error("a float array must hold finite values in [0, 1]")
    return image


def _read_encoded(
    data: bytes,
    suffix: str,
    label: _Label,
    frame: int | None,
    policy: InputPolicy,
    window: str | tuple[float, float],
) -> tuple[np.ndarray, str]:
    """Decode a file's bytes (DICOM by its content or ``suffix``, else PIL)."""
    if not data:
        raise label.error("empty file (0 bytes)")
    if looks_like_dicom(data, suffix):
        try:
            return read_dicom(data, frame=frame, policy=policy, window=window), "DICOM"
        except (DicomReadError, InputPolicyError) as error:
            raise label.error(str(error)) from None
    return _read_with_pil(data, label, frame=frame, policy=policy)


def _enforce(label: _Label, check: Callable[..., object], *args: object) -> None:
    """Run one `InputPolicy` check, raising `ImageReadError` for ``label`` when it fails."""
    try:
        check(*args)
    except InputPolicyError as error:
        raise label.error(str(error)) from None


def _read_with_pil(
    data: bytes, label: _Label, *, frame: int | None, policy: InputPolicy
) -> tuple[np.ndarray, str]:
    try:
        # PIL refuses images over 2 * Image.MAX_IMAGE_PIXELS itself and warns above half that;
        # the policy's check below, before decoding, is the one that counts.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise label.error(str(error)) from None
    except UnidentifiedImageError:
        raise label.error(
            f"not a recognised image (PNG, JPEG, BMP, TIFF or DICOM "
            f"expected; the file starts with {data[:8]!r})",
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise label.error(f"corrupt header ({error})") from None

    with image:
        image_format = image.format or "unknown"
        # The size from the header, before a single pixel is decoded.
        _enforce(label, policy.check_image_size, image.width, image.height)
        frame_count = getattr(image, "n_frames", 1)
        if frame_count > 1 and frame is None:
            raise label.error(
                f"it holds {frame_count} frames; pass frame=0...{frame_count - 1} to choose one",
            )
        if frame is not None:
            if not 0 <= frame < frame_count:
                raise label.error(f"frame {frame} requested but it has {frame_count} frame(s)")
            image.seek(frame)
        try:
            image = _sixteen_bit_colour_as_luminance(data, image) or image
            image.load()
            image = ImageOps.exif_transpose(image)
            array = _pil_to_unit_range(image)
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            raise label.error(f"truncated or corrupt {image_format} data ({error})") from None
    return array, image_format


# Pillow decodes 16-bit colour PNGs into 8-bit modes, keeping the high byte of every sample. Its
# PNG decoder unfilters rows by the raw mode's bytes per pixel, so the same rows decoded with the
# byte order swapped give the low bytes, and 16-bit grey + alpha (4 bytes per pixel) decoded as
# 8-bit RGBA gives all four bytes: full precision, with Pillow's own zlib and unfiltering.
_PNG_SIXTEEN_BIT_COLOUR_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}


def _sixteen_bit_colour_as_luminance(data: bytes, image: Image.Image) -> Image.Image | None:
    """A 16-bit colour PNG as a 16-bit luminance image (mode "I;16"), or None for other files."""
    tiles = getattr(image, "tile", None) or []
    if image.format != "PNG" or len(tiles) != 1:
        return None
    rawmode = tiles[0].args
    if rawmode not in _PNG_SIXTEEN_BIT_COLOUR_RAWMODES:
        return None

    def decode(with_rawmode: str) -> np.ndarray:
        copy = Image.open(io.BytesIO(data))
        copy.tile = [copy.tile[0]._replace(args=with_rawmode)]
        copy.load()
        return np.asarray(copy, dtype=np.uint16)

    other_bytes = decode(_PNG_SIXTEEN_BIT_COLOUR_RAWMODES[rawmode])
    if rawmode == "LA;16B":
        gray = other_bytes[..., 0] * 256 + other_bytes[..., 1]
    else:
        samples = decode(rawmode)[..., :3] * 256 + other_bytes[..., :3]
        gray = np.round(samples @ LUMA_WEIGHTS).astype(np.uint16)
    luminance = Image.fromarray(gray.astype(np.uint16))
    luminance.info = dict(image.info)  # keeps the EXIF orientation
    return luminance


def _pil_to_unit_range(image: Image.Image) -> np.ndarray:
    """Grayscale float32 in [0, 1], rescaled by the bit depth of the mode."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode in _SIXTEEN_BIT_MODES:
        return (np.asarray(image).astype(np.float32) / 65535.0).astype(np.float32)
    if mode == "I":
        # 32-bit integer mode: 16-bit data when it fits (PIL reads some 16-bit files as "I").
        values = np.asarray(image, dtype=np.int64)
        if values.min() >= 0 and values.max() <= 65535:
            return (values / 65535.0).astype(np.float32)
        return ((values + 2**31) / (2**32 - 1)).astype(np.float32)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ValueError("floating-point image with NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            return values
        return ((values - low) / max(high - low, 1e-12)).astype(np.float32)
    if mode != "L":
        # 8-bit colour, alpha and palette modes: ITU-R 601 luminance, alpha ignored.
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32) / 255.0
