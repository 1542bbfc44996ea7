"""One entry point for reading chest images, and the cached folder scan the dataset builders share.

`load_image` reads PNG, JPEG, BMP, TIFF and DICOM into a 2-D float32 array in [0, 1]:

* 8- and 16-bit images are rescaled by their bit depth, never clipped (PIL's ``convert("L")``
  clips 16-bit images to 255, which throws away most of a 16-bit radiograph); 16-bit colour PNGs,
  which Pillow truncates to 8 bits, are decoded at full precision;
* colour and palette modes (RGB, RGBA, LA, P, CMYK, ...) are converted to luminance, and EXIF
  orientation is applied;
* DICOM goes through pydicom: modality LUT (rescale slope/intercept), then the VOI LUT or window
  from the file, CT in Hounsfield units windowed to the lung window, MONOCHROME1 inverted;
* multi-frame files need a ``frame``; every file is checked against the `InputPolicy` (file
  size, then width x height from the header, for compressed DICOM the JPEG / JPEG 2000 header of
  each frame) before its pixels are decoded, a guard against decompression bombs.

`inspect_image_files` validates (fully decodes) and hashes every file of a folder once and caches
the result in the datasets cache, keyed by path, size and modification time, so that building the
same folder again is near-instant and a bad file is found before any training starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dedup import ImageHashes, compute_image_hashes
from .validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError

logger = logging.getLogger(__name__)

NAMED_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
}
"""CT windows as (center, width) in Hounsfield units."""

DICOM_SUFFIXES = (".dcm", ".dicom")
IGNORED_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini"})
"""Operating-system clutter that is never taken for an image (hidden files are skipped too)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", *DICOM_SUFFIXES)
"""File name endings the builders take for images; files without an ending are tried too (DICOM
files often have none), any other ending is ignored and counted."""

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
"""ITU-R 601 luminance, as PIL's ``convert("L")``."""
_SCAN_CACHE_VERSION = 3


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


class BadImagesError(ValueError):
    """A dataset folder holds files or folders that cannot be used.

    Attributes:
        problems: ``(path, reason)`` for every bad file or folder, in scan order.
    """

    def __init__(self, root: str | Path, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.problems)
        super().__init__(
            f"{len(self.problems)} bad file(s) or folder(s) under '{root}' (fix or remove them, "
            f"or pass skip_bad_images=True to skip them):\n{lines}"
        )


# --------------------------------------------------------------------------------------------
# Reading one image
# --------------------------------------------------------------------------------------------


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
    return _read_image(source, frame=frame, policy=policy, window=window)[0]


def _read_image(
    source: str | Path | bytes,
    *,
    frame: int | None,
    policy: InputPolicy,
    window: str | tuple[float, float],
) -> tuple[np.ndarray, str]:
    """`load_image`, also returning the file format ("PNG", "JPEG", ..., "DICOM")."""
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
    if _looks_like_dicom(data, suffix):
        return _read_dicom(data, name, frame=frame, policy=policy, window=window), "DICOM"
    return _read_with_pil(data, name, frame=frame, policy=policy)


def _enforce(name: str, check: Callable[..., object], *args: object) -> None:
    """Run one `InputPolicy` check, raising `ImageReadError` for ``name`` when it fails."""
    try:
        check(*args)
    except InputPolicyError as error:
        raise ImageReadError(name, str(error)) from None


def _looks_like_dicom(data: bytes, suffix: str) -> bool:
    return data[128:132] == b"DICM" or suffix in DICOM_SUFFIXES


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
        gray = np.round(samples @ _LUMA_WEIGHTS).astype(np.uint16)
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


def _read_dicom(
    data: bytes,
    name: str,
    *,
    frame: int | None,
    policy: InputPolicy,
    window: str | tuple[float, float],
) -> np.ndarray:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array
    except ImportError:
        raise ImageReadError(
            name,
            "reading DICOM needs pydicom, which is not installed: pip install 'hf_covid[dicom]'",
        ) from None

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        if "PixelData" not in dataset:
            raise ImageReadError(name, "DICOM: it has no pixel data")
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
        transfer_syntax = dataset.file_meta.get("TransferSyntaxUID") or pydicom.uid.UID(
            "1.2.840.10008.1.2"
        )
        encapsulated = transfer_syntax.is_encapsulated
        pixel_data = dataset.PixelData if encapsulated else b""
    except ImageReadError:
        raise
    except Exception as error:  # pydicom raises many exception types for corrupt files
        raise ImageReadError(name, f"DICOM: {error}") from None
    _enforce(name, policy.check_image_size, columns, rows)
    if encapsulated:
        _check_encapsulated_frames(name, pixel_data, (columns, rows), policy)
    if frame_count > 1 and frame is None:
        raise ImageReadError(
            name,
            f"DICOM: it holds {frame_count} frames; pass frame=0...{frame_count - 1} to choose one",
        )
    if frame is not None and not 0 <= frame < frame_count:
        raise ImageReadError(
            name, f"DICOM: frame {frame} requested but it has {frame_count} frame(s)"
        )
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:  # a transfer syntax pydicom has no decoder for
        decoder = None
    if decoder is None or not decoder.is_available:
        options = (
            f"install one of: {'; '.join(decoder.missing_dependencies)}"
            if decoder
            else "pydicom has no decoder for it"
        )
        raise ImageReadError(
            name,
            f"DICOM transfer syntax {transfer_syntax.name} ({transfer_syntax}) cannot be decoded "
            f"here: {options}",
        )
    try:
        pixels = pixel_array(dataset, index=frame if frame_count > 1 else None)
    except Exception as error:
        raise ImageReadError(
            name, f"DICOM pixel data ({transfer_syntax.name}) cannot be decoded: {error}"
        ) from None

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits_stored = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 8)) or 8)
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") and pixels.ndim == 3:
        luminance = pixels.astype(np.float64) @ _LUMA_WEIGHTS
        return np.clip(luminance / (2**bits_stored - 1), 0.0, 1.0).astype(np.float32)
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or pixels.ndim != 2:
        raise ImageReadError(
            name,
            f"DICOM: photometric interpretation {photometric!r} with pixel array shape "
            f"{pixels.shape} is not supported (MONOCHROME1, MONOCHROME2, RGB or YBR_FULL expected)",
        )
    try:
        values = apply_modality_lut(pixels, dataset)
        scaled = _apply_dicom_window(values, dataset, window)
    except (ValueError, TypeError, IndexError, AttributeError) as error:
        raise ImageReadError(name, f"DICOM window or rescale: {error}") from None
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def _check_encapsulated_frames(
    name: str, pixel_data: bytes, header_size: tuple[int, int], policy: InputPolicy
) -> None:
    """Check the size each compressed frame declares, which the decoder obeys, not the header.

    Raises:
        ImageReadError: A frame is over the policy's limits or differs from the DICOM header.
    """
    from pydicom.encaps import generate_fragments

    try:
        fragments = list(generate_fragments(pixel_data))
    except Exception as error:  # malformed item tags or lengths
        raise ImageReadError(
            name, f"DICOM: encapsulated pixel data is malformed ({error})"
        ) from None
    for fragment in fragments:
        declared = _compressed_frame_size(fragment)
        if declared is None:
            continue  # a continuation fragment, or a codec whose size only the header gives
        codec, width, height = declared
        _enforce(name, policy.check_image_size, width, height)
        if (width, height) != header_size:
            raise ImageReadError(
                name,
                f"DICOM header says {header_size[0]}x{header_size[1]} but the {codec} frame "
                f"inside is {width}x{height}",
            )


_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
"""Start-of-frame markers: baseline, extended, progressive, lossless, arithmetic, JPEG-LS (F7)."""
_J2K_SIZ = b"\xff\x4f\xff\x51"
"""A JPEG 2000 codestream: start of codestream, then the image and tile size (SIZ) segment."""


def _compressed_frame_size(fragment: bytes) -> tuple[str, int, int] | None:
    """``(codec, width, height)`` from a JPEG, JPEG-LS or JPEG 2000 frame header, else None."""
    if fragment[:2] == b"\xff\xd8":
        position = 2
        while position + 9 <= len(fragment):
            if fragment[position] != 0xFF:
                return None
            marker = fragment[position + 1]
            if marker == 0xFF:  # fill byte
                position += 1
                continue
            if marker in _JPEG_FRAME_MARKERS:
                height = int.from_bytes(fragment[position + 5 : position + 7], "big")
                width = int.from_bytes(fragment[position + 7 : position + 9], "big")
                return "JPEG", width, height
            if marker == 0xDA:  # start of scan before any frame header
                return None
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
                position += 2
                continue
            position += 2 + int.from_bytes(fragment[position + 2 : position + 4], "big")
        return None
    start = fragment.find(_J2K_SIZ, 0, 4096)
    if start >= 0 and start + 24 <= len(fragment):
        xsiz, ysiz, x_offset, y_offset = (
            int.from_bytes(fragment[start + 8 + 4 * k : start + 12 + 4 * k], "big")
            for k in range(4)
        )
        return "JPEG 2000", xsiz - x_offset, ysiz - y_offset
    return None


def _apply_dicom_window(
    values: np.ndarray, dataset, window: str | tuple[float, float]
) -> np.ndarray:
    """Map modality values (Hounsfield units for CT) to [0, 1]."""
    from pydicom.pixels import apply_voi

    if isinstance(window, tuple | list):
        center, width = (float(v) for v in window)
        return _linear_window(values, center, width)
    if window in NAMED_WINDOWS:
        return _linear_window(values, *NAMED_WINDOWS[window])
    if window == "auto":
        is_ct = str(dataset.get("Modality", "")).upper() == "CT"
        if is_ct:
            return _linear_window(values, *NAMED_WINDOWS["lung"])
        has_voi = dataset.get("VOILUTSequence") or "WindowCenter" in dataset
        window = "file" if has_voi else "full"
    if window == "file":
        if dataset.get("VOILUTSequence"):
            depth = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
            lut_values = apply_voi(np.round(values).astype(np.int64), dataset)
            return lut_values.astype(np.float64) / (2**depth - 1)
        if "WindowCenter" in dataset and "WindowWidth" in dataset:
            center = float(_first(dataset.WindowCenter))
            width = float(_first(dataset.WindowWidth))
            function = str(dataset.get("VOILUTFunction", "LINEAR")).upper()
            if function == "SIGMOID":
                return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
            if function == "LINEAR_EXACT":
                return np.clip((values - center) / width + 0.5, 0.0, 1.0)
            return _linear_window(values, center, width)
        raise ValueError("window='file' but the file has no VOI LUT or window center/width")
    if window == "full":
        low, high = _stored_value_range(dataset)
        return np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    raise ValueError(
        f"unknown window {window!r}; expected 'auto', 'file', 'full', "
        f"{', '.join(repr(name) for name in NAMED_WINDOWS)} or a (center, width) pair"
    )


def _first(value):
    """Window center/width may hold several alternatives; the first is the default view."""
    return value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear window, output in [0, 1]."""
    if width < 1:
        raise ValueError(f"window width must be at least 1, got {width}")
    if width == 1:
        return (values > center - 0.5).astype(np.float64)
    scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def _stored_value_range(dataset) -> tuple[float, float]:
    """Smallest and largest value the stored bits can hold, after the modality rescale."""
    bits_stored = int(dataset.get("BitsStored", 16) or 16)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1:
        low, high = -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    else:
        low, high = 0, 2**bits_stored - 1
    if dataset.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


# --------------------------------------------------------------------------------------------
# Folder listing, validation and the scan cache
# --------------------------------------------------------------------------------------------


def list_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Files and subfolders of ``folder``, sorted by name; hidden entries and OS clutter skipped.

    Raises:
        OSError: The folder cannot be listed (missing, not a folder, no permission).
    """
    files, folders = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name.lower() in IGNORED_FILE_NAMES:
                continue
            try:
                is_folder = entry.is_dir()
            except OSError:
                # A broken entry (symlink loop, ...) is listed as a file: reading it then fails
                # and reports that one entry, never the whole folder.
                is_folder = False
            if is_folder:
                folders.append(Path(entry.path))
            else:
                files.append(Path(entry.path))
    return sorted(files), sorted(folders)


IGNORED_NESTED = "in a nested folder"
IGNORED_UNKNOWN_TYPE = "unknown file type"
IGNORED_MASK_WITHOUT_IMAGE = "mask without image"
"""Why a builder leaves a file out without calling it bad (the keys of ``ignored_files``)."""


def is_image_candidate(path: Path) -> bool:
    """Whether builders try a file as an image: a known image ending, or none (as DICOM often has).

    A numeric "ending" (``1.2.276.0.7230.850819``, a DICOM named by its UID) counts as none.
    """
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or not suffix or suffix[1:].isdigit()


def count_nested_files(folders: Sequence[Path]) -> int:
    """Files anywhere below ``folders``, which the builders do not read (hidden files left out)."""
    count = 0
    for folder in folders:
        for _, subfolders, files in os.walk(folder):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            count += sum(
                not name.startswith(".") and name.lower() not in IGNORED_FILE_NAMES
                for name in files
            )
    return count


def raise_for_empty_classes(
    root: Path, usable_per_class: dict[str, int], problems: Sequence[tuple[str, str]]
) -> None:
    """A requested class without a usable image is an error, also with ``skip_bad_images``.

    Raises:
        ValueError: Naming the empty classes and the first bad files and folders found.
    """
    empty = [name for name, count in usable_per_class.items() if count == 0]
    if not empty:
        return
    listed = "".join(f"\n  {path}: {reason}" for path, reason in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise ValueError(
        f"no usable image for class(es) {empty} under '{root}' ({len(problems)} bad file(s) or "
        f"folder(s) skipped); fix them, or leave the class out where the builder allows it"
        f"{listed}{more}"
    )


def normalize_folder_name(name: str) -> str:
    """Folder name compared case- and punctuation-insensitively ("X-ray" matches "xray")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def report_bad_input(
    root: Path, problems: Sequence[tuple[str, str]], *, skip_bad_images: bool
) -> int:
    """Raise `BadImagesError` listing every problem, or log and count them when skipping.

    Returns:
        The number of bad files and folders skipped.
    """
    if not problems:
        return 0
    if not skip_bad_images:
        raise BadImagesError(root, problems)
    logger.warning(
        "skipping %d bad file(s) or folder(s) under %s (skip_bad_images=True): %s",
        len(problems),
        root,
        "; ".join(f"{path}: {reason}" for path, reason in problems),
    )
    return len(problems)


def report_ignored_files(root: Path, ignored: Counter) -> dict[str, int]:
    """Log the files a builder left out (not bad, just not part of the layout) and count them.

    Returns:
        ``{reason: count}`` for the reasons that occurred, for ``DatasetBuildSummary.ignored_files``.
    """
    counts = {reason: count for reason, count in ignored.items() if count}
    if counts:
        logger.warning(
            "ignored %d file(s) under %s: %s",
            sum(counts.values()),
            root,
            ", ".join(f"{reason} {count}" for reason, count in counts.items()),
        )
    return counts


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """The hf_covid folder inside ``cache_dir`` (default: the datasets cache, HF_DATASETS_CACHE)."""
    if cache_dir is None:
        import datasets

        cache_dir = datasets.config.HF_DATASETS_CACHE
    return Path(cache_dir).expanduser().resolve() / "hf_covid"


@dataclass(frozen=True)
class ImageFileInfo:
    """What one validation pass learnt about a file.

    Attributes:
        path: Absolute path of the file.
        error: Why the file cannot be used, or None when it decoded cleanly.
        image_format: "PNG", "JPEG", "BMP", "TIFF", "DICOM", ... (None when unreadable).
        height: Height in pixels after EXIF orientation (0 when unreadable).
        width: Width in pixels after EXIF orientation (0 when unreadable).
        hashes: Perceptual hashes for near-duplicate detection (None when unreadable).
    """

    path: Path
    error: str | None
    image_format: str | None = None
    height: int = 0
    width: int = 0
    hashes: ImageHashes | None = None

    def to_cache_entry(self, size: int, mtime_ns: int) -> list:
        hashes = list(self.hashes) if self.hashes is not None else None
        return [size, mtime_ns, self.error, self.image_format, self.height, self.width, hashes]

    @classmethod
    def from_cache_entry(cls, path: Path, entry: list) -> ImageFileInfo:
        _, _, error, image_format, height, width, hashes = entry
        hashes = ImageHashes(*hashes) if hashes is not None else None
        return cls(path, error, image_format, height, width, hashes)


def _inspect_one(path: Path, policy: InputPolicy) -> ImageFileInfo:
    try:
        array, image_format = _read_image(path, frame=None, policy=policy, window="auto")
    except ImageReadError as error:
        return ImageFileInfo(path=path, error=error.reason)
    return ImageFileInfo(
        path=path,
        error=None,
        image_format=image_format,
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        hashes=compute_image_hashes(array),
    )


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)


class DatasetCache:
    """What the builders learn about one data folder, kept in the datasets cache.

    Everything is keyed by the files' paths, sizes and modification times, so a changed file is
    looked at again and an unchanged one never is. Nothing is ever written inside the data
    folder.

    Args:
        data_root: The dataset folder.
        cache_dir: Cache folder (default: the datasets cache).
        policy: The limits every file is validated against (part of the scan cache key).

    Raises:
        ValueError: The cache would lie inside the data folder.
    """

    def __init__(
        self,
        data_root: Path,
        cache_dir: str | Path | None = None,
        *,
        policy: InputPolicy = DEFAULT_INPUT_POLICY,
    ):
        self.data_root = data_root.resolve()
        self.policy = policy
        self.root = resolve_cache_dir(cache_dir)
        if self.root == self.data_root or self.data_root in self.root.parents:
            raise ValueError(
                f"cache_dir '{cache_dir}' lies inside the data folder '{self.data_root}'; the "
                "data folder is never written to, choose a cache outside it"
            )
        self.key = hashlib.sha256(str(self.data_root).encode()).hexdigest()[:20]

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.data_root).as_posix()

    def inspect(
        self, paths: Sequence[Path], *, num_threads: int | None = None
    ) -> list[ImageFileInfo]:
        """Validate (fully decode) and hash every file; each file only once while unchanged.

        Args:
            paths: Files under the data folder.
            num_threads: Decoding threads (PIL and zlib release the GIL); default: CPU count,
                at most 8.

        Returns:
            One `ImageFileInfo` per path, in order.
        """
        policy_key = hashlib.sha256(repr(self.policy).encode()).hexdigest()[:8]
        scan_file = self.root / "scans" / f"{self.key}.{policy_key}.json"
        entries: dict[str, list] = {}
        if scan_file.exists():
            try:
                cached = json.loads(scan_file.read_text())
                if cached.get("version") == _SCAN_CACHE_VERSION:
                    entries = cached["entries"]
            except (OSError, ValueError, KeyError):
                logger.warning("ignoring unreadable scan cache %s", scan_file)

        results: dict[int, ImageFileInfo] = {}
        stats: dict[int, tuple[int, int]] = {}
        for index, path in enumerate(paths):
            try:
                stat = path.stat()
            except OSError as error:
                results[index] = ImageFileInfo(path, f"cannot read file: {error.strerror}")
                continue
            stats[index] = (stat.st_size, stat.st_mtime_ns)
            entry = entries.get(self._relative(path))
            if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
                results[index] = ImageFileInfo.from_cache_entry(path, entry)
        to_inspect = [index for index in stats if index not in results]
        if to_inspect:
            workers = num_threads or min(8, os.cpu_count() or 1)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                inspected = list(
                    pool.map(
                        lambda path: _inspect_one(path, self.policy),
                        (paths[index] for index in to_inspect),
                    )
                )
            for index, info in zip(to_inspect, inspected, strict=True):
                results[index] = info
                entries[self._relative(paths[index])] = info.to_cache_entry(*stats[index])
            payload = {
                "version": _SCAN_CACHE_VERSION,
                "root": str(self.data_root),
                "entries": entries,
            }
            _write_atomically(scan_file, lambda target: target.write_text(json.dumps(payload)))
        logger.debug(
            "inspected %d file(s) under %s (%d from the scan cache)",
            len(paths),
            self.data_root,
            len(paths) - len(to_inspect),
        )
        return [results[index] for index in range(len(paths))]

    def _derived_path(self, source: Path, suffix: str) -> Path:
        stat = source.stat()
        relative = self._relative(source)
        return (
            self.root
            / "derived"
            / self.key
            / f"{relative}.{stat.st_size}_{stat.st_mtime_ns}{suffix}"
        )

    def parsed(self, source: Path, parse: Callable[[Path], dict]) -> dict:
        """``parse(source)`` (a JSON-serialisable dict), cached while the file is unchanged."""
        target = self._derived_path(source, f".{parse.__name__}.json")
        if target.exists():
            return json.loads(target.read_text())
        result = parse(source)
        _write_atomically(target, lambda path: path.write_text(json.dumps(result)))
        return result

    def derived_png(
        self, source: Path, *, size: tuple[int, int] | None = None, mask: bool = False
    ) -> Path:
        """A PNG copy of ``source`` in the cache: DICOM converted, or a mask resized to ``size``.

        Used where a dataset column must point to something `datasets.Image` can decode.
        Masks are binarised (threshold 0.5) and resized with nearest neighbour; other images
        are stored as 16-bit grayscale so no precision is lost.

        Args:
            source: File under the data folder.
            size: ``(height, width)`` to resize to, or None to keep the size.
            mask: Binarise and save as 8-bit 0/255.

        Returns:
            Path of the PNG in the cache.
        """
        size_tag = f"_{size[0]}x{size[1]}" if size is not None else ""
        target = self._derived_path(source, f"{size_tag}{'.mask' if mask else ''}.png")
        if target.exists():
            return target
        array = load_image(source, policy=self.policy)
        if mask:
            image = Image.fromarray(((array >= 0.5) * 255).astype(np.uint8))
            resample = Image.Resampling.NEAREST
        else:
            image = Image.fromarray(np.round(array * 65535).astype(np.uint16))
            resample = Image.Resampling.BILINEAR
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), resample)
        _write_atomically(target, lambda path: image.save(path, format="PNG"))
        return target
