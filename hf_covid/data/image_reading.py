"""`load_image`: one entry point for reading a chest image as a grayscale float32 array in [0, 1].

* 8- and 16-bit images are rescaled by their bit depth, never clipped (PIL's ``convert("L")``
  clips 16-bit images to 255, which throws away most of a 16-bit radiograph); 16-bit colour PNGs,
  which Pillow truncates to 8 bits, are decoded at full precision;
* colour and palette modes (RGB, RGBA, LA, P, CMYK, ...) are converted to luminance, and EXIF
  orientation is applied;
* DICOM goes through :mod:`hf_covid.data.dicom` (pydicom: modality LUT, VOI LUT or window, CT
  lung window, MONOCHROME1 inverted);
* multi-frame files need a ``frame``; every file is checked against the `InputPolicy` (file
  size, then width x height from the header, for compressed DICOM the JPEG / JPEG 2000 header of
  each frame) before its pixels are decoded, a guard against decompression bombs.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dicom import DicomReadError, looks_like_dicom, read_dicom
from .luminance import LUMA_WEIGHTS
from .validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError

__all__ = ["ImageReadError", "load_image", "read_image_and_format"]

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


class ImageReadError(ValueError):
    """An image file (or byte string) could not be read.

    Attributes:
        source: The file (or ``<N bytes>``) that failed.
        reason: What is wrong with it, e.g. ``empty file (0 bytes)``.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image '{source}': {reason}")

    def __reduce__(self):
        return type(self), (self.source, self.reason)


def load_image(
    source: str | Path | bytes,
    *,
    frame: int | None = None,
    max_pixels: int | None = None,
    window: str | tuple[float, float] = "auto",
    policy: InputPolicy = DEFAULT_INPUT_POLICY,
) -> np.ndarray:
    """Read a chest image as a grayscale float32 array in [0, 1].

    Args:
        source: Path to a PNG, JPEG, BMP, TIFF or DICOM file, or the file's bytes.
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
            policy's limits, a multi-frame file without a valid ``frame``, or a DICOM that needs
            a decoder (or pydicom itself) that is not installed.
    """
    policy = policy.with_max_pixels(max_pixels)
    return read_image_and_format(source, frame=frame, policy=policy, window=window)[0]


def read_image_and_format(
    source: str | Path | bytes,
    *,
    frame: int | None = None,
    policy: InputPolicy = DEFAULT_INPUT_POLICY,
    window: str | tuple[float, float] = "auto",
) -> tuple[np.ndarray, str]:
    """`load_image`, also returning the file format ("PNG", "JPEG", ..., "DICOM").

    Raises:
        ImageReadError: As `load_image`.
    """
    name = f"<{len(source)} bytes>" if isinstance(source, bytes | bytearray) else str(source)
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        suffix = ""
        _enforce(name, policy.check_file_size, len(data))
    else:
        path = Path(source)
        suffix = path.suffix.lower()
        try:
            if path.is_dir():
                raise ImageReadError(name, "it is a folder")
            _enforce(name, policy.check_file_size, path.stat().st_size)
            data = path.read_bytes()
        except OSError as error:
            raise ImageReadError(name, str(error.strerror or error)) from None
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    if looks_like_dicom(data, suffix):
        try:
            return read_dicom(data, frame=frame, policy=policy, window=window), "DICOM"
        except (DicomReadError, InputPolicyError) as error:
            raise ImageReadError(name, str(error)) from None
    return _read_with_pil(data, name, frame=frame, policy=policy)


def _enforce(name: str, check: Callable[..., object], *args: object) -> None:
    """Run one `InputPolicy` check, raising `ImageReadError` for ``name`` when it fails."""
    try:
        check(*args)
    except InputPolicyError as error:
        raise ImageReadError(name, str(error)) from None


def _read_with_pil(
    data: bytes, name: str, *, frame: int | None, policy: InputPolicy
) -> tuple[np.ndarray, str]:
    try:
        # PIL refuses images over 2 * Image.MAX_IMAGE_PIXELS itself and warns above half that;
        # the policy's check below, before decoding, is the one that counts.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageReadError(name, str(error)) from None
    except UnidentifiedImageError:
        raise ImageReadError(
            name,
            f"not a recognised image (PNG, JPEG, BMP, TIFF or DICOM "
            f"expected; the file starts with {data[:8]!r})",
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(name, f"corrupt header ({error})") from None

    with image:
        image_format = image.format or "unknown"
        # The size from the header, before a single pixel is decoded.
        _enforce(name, policy.check_image_size, image.width, image.height)
        frame_count = getattr(image, "n_frames", 1)
        if frame_count > 1 and frame is None:
            raise ImageReadError(
                name,
                f"it holds {frame_count} frames; pass frame=0...{frame_count - 1} to choose one",
            )
        if frame is not None:
            if not 0 <= frame < frame_count:
                raise ImageReadError(
                    name, f"frame {frame} requested but it has {frame_count} frame(s)"
                )
            image.seek(frame)
        try:
            image = _sixteen_bit_colour_as_luminance(data, image) or image
            image.load()
            image = ImageOps.exif_transpose(image)
            array = _pil_to_unit_range(image)
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            raise ImageReadError(
                name, f"truncated or corrupt {image_format} data ({error})"
            ) from None
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
