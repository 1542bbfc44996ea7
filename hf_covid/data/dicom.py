"""DICOM pixel data as a grayscale float32 array in [0, 1] (the DICOM half of `load_image`).

pydicom (the ``dicom`` extra) decodes the pixels; then the modality LUT (rescale slope and
intercept) gives modality units, Hounsfield units for CT, and the VOI LUT or window of the file, a
named window or the full stored range maps them to [0, 1]; MONOCHROME1 is inverted. Before any
pixel is decoded, the size in the header and, for compressed transfer syntaxes, the size each
JPEG / JPEG-LS / JPEG 2000 frame declares are checked against the `InputPolicy`.
`read_dicom_header` reads chosen header elements without the pixels (the collection builders
take patient id, age, sex and view from it, and nothing else).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .luminance import LUMA_WEIGHTS
from .validation import InputPolicy

__all__ = [
    "DICOM_SUFFIXES",
    "NAMED_WINDOWS",
    "DicomReadError",
    "looks_like_dicom",
    "read_dicom",
    "read_dicom_header",
]

NAMED_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
}
"""CT windows as (center, width) in Hounsfield units."""

DICOM_SUFFIXES = (".dcm", ".dicom")
"""File name endings of DICOM files (many DICOM files have none: the header says so)."""


_PYDICOM_MISSING = (
    "reading DICOM needs pydicom, which is not installed: pip install 'hf_covid[dicom]'"
)


class DicomReadError(ValueError):
    """A DICOM file that cannot be read; the message says why (`load_image` adds the file name)."""


def looks_like_dicom(data: bytes, suffix: str) -> bool:
    """Whether a file's bytes (or its ending, for files without the preamble) say DICOM."""
    return data[128:132] == b"DICM" or suffix in DICOM_SUFFIXES


def read_dicom(
    data: bytes,
    *,
    frame: int | None,
    policy: InputPolicy,
    window: str | tuple[float, float],
) -> np.ndarray:
    """Decode one DICOM file's pixels as a 2-D float32 array in [0, 1], 0 black.

    Args:
        data: The file's bytes.
        frame: Frame to read from a multi-frame file (required there), else None.
        policy: Pixel-count and side limits, checked on the headers before decoding.
        window: As for `load_image`: ``"auto"``, ``"file"``, ``"full"``, a name of
            :data:`NAMED_WINDOWS` or a ``(center, width)`` pair in modality units.

    Raises:
        DicomReadError: pydicom or a decoder is missing, the file is corrupt, has no pixel data,
            an unsupported photometric interpretation, or a missing or invalid ``frame``.
        InputPolicyError: The image (or a compressed frame) is over the policy's limits.
    """
    try:
        # pydicom is optional (the "dicom" extra): imported when a DICOM file is read.
        import pydicom
        from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array
    except ImportError:
        raise DicomReadError(_PYDICOM_MISSING) from None

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        # pydicom converts elements lazily: convert them all here, so that a corrupt element
        # (e.g. a flipped value-representation byte) fails as this file's DicomReadError.
        for _element in dataset:
            pass
        if "PixelData" not in dataset:
            raise DicomReadError("DICOM: it has no pixel data")
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
        transfer_syntax = dataset.file_meta.get("TransferSyntaxUID") or pydicom.uid.UID(
            "1.2.840.10008.1.2"
        )
        encapsulated = transfer_syntax.is_encapsulated
        pixel_data = dataset.PixelData if encapsulated else b""
    except DicomReadError:
        raise
    except Exception as error:  # pydicom raises many exception types for corrupt files
        raise DicomReadError(f"DICOM: {error}") from None
    policy.check_image_size(columns, rows)
    if encapsulated:
        _check_encapsulated_frames(pixel_data, (columns, rows), policy)
    if frame_count > 1 and frame is None:
        raise DicomReadError(
            f"DICOM: it holds {frame_count} frames; pass frame=0...{frame_count - 1} to choose one",
        )
    if frame is not None and not 0 <= frame < frame_count:
        raise DicomReadError(f"DICOM: frame {frame} requested but it has {frame_count} frame(s)")
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
        raise DicomReadError(
            f"DICOM transfer syntax {transfer_syntax.name} ({transfer_syntax}) cannot be decoded "
            f"here: {options}",
        )
    try:
        pixels = pixel_array(dataset, index=frame if frame_count > 1 else None)
    except Exception as error:
        raise DicomReadError(
            f"DICOM pixel data ({transfer_syntax.name}) cannot be decoded: {error}"
        ) from None

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits_stored = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 8)) or 8)
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") and pixels.ndim == 3:
        luminance = pixels.astype(np.float64) @ LUMA_WEIGHTS
        return np.clip(luminance / (2**bits_stored - 1), 0.0, 1.0).astype(np.float32)
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or pixels.ndim != 2:
        raise DicomReadError(
            f"DICOM: photometric interpretation {photometric!r} with pixel array shape "
            f"{pixels.shape} is not supported (MONOCHROME1, MONOCHROME2, RGB or YBR_FULL expected)",
        )
    try:
        values = apply_modality_lut(pixels, dataset)
        scaled = _apply_dicom_window(values, dataset, window)
    except (ValueError, TypeError, IndexError, AttributeError) as error:
        raise DicomReadError(f"DICOM window or rescale: {error}") from None
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def read_dicom_header(path: str | Path, keywords: Sequence[str]) -> dict[str, str]:
    """The header elements ``keywords`` of a DICOM file as stripped strings, pixels not read.

    Args:
        path: The file.
        keywords: DICOM keywords (``"PatientID"``, ``"PatientAge"``, ``"ViewPosition"``).

    Returns:
        Keyword -> value; "" where the element is absent or empty.

    Raises:
        DicomReadError: pydicom is missing or the header cannot be read (naming the file).
    """
    try:
        # pydicom is optional (the "dicom" extra): imported when a DICOM header is read.
        import pydicom
    except ImportError:
        raise DicomReadError(_PYDICOM_MISSING) from None
    try:
        dataset = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=list(keywords), force=True
        )
        return {keyword: str(dataset.get(keyword, "") or "").strip() for keyword in keywords}
    except Exception as error:  # pydicom raises many exception types for corrupt files
        raise DicomReadError(f"'{path}': DICOM header cannot be read ({error})") from None


def _check_encapsulated_frames(
    pixel_data: bytes, header_size: tuple[int, int], policy: InputPolicy
) -> None:
    """Check the size each compressed frame declares, which the decoder obeys, not the header.

    Raises:
        InputPolicyError: A frame is over the policy's limits.
        DicomReadError: A frame's size differs from the DICOM header.
    """
    from pydicom.encaps import generate_fragments

    try:
        fragments = list(generate_fragments(pixel_data))
    except Exception as error:  # malformed item tags or lengths
        raise DicomReadError(f"DICOM: encapsulated pixel data is malformed ({error})") from None
    for fragment in fragments:
        declared = _compressed_frame_size(fragment)
        if declared is None:
            continue  # a continuation fragment, or a codec whose size only the header gives
        codec, width, height = declared
        policy.check_image_size(width, height)
        if (width, height) != header_size:
            raise DicomReadError(
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
