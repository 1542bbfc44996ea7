"""Tiny hand-made dataset folders and image files for the data-layer tests (fast, no phantoms)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from PIL import Image


def random_image(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A distinct 8-bit image: smooth random structure plus noise (distinct perceptual hashes)."""
    coarse = rng.random((5, 5))
    smooth = np.asarray(
        Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    noisy = smooth * 0.7 + rng.random((size, size)) * 255 * 0.3
    return noisy.clip(0, 255).astype(np.uint8)


def write_radiography_tree(
    root: Path,
    classes: tuple[str, ...] = ("COVID", "Normal"),
    *,
    images_per_class: int = 10,
    size: int = 40,
    mask_size: int | None = None,
    without_mask: int = 0,
    seed: int = 0,
    sources: dict[str, list[str]] | None = None,
) -> Path:
    """Kaggle layout: ``<class>/images``, ``<class>/masks``, ``<class>.metadata.xlsx``."""
    rng = np.random.default_rng(seed)
    for class_name in classes:
        (root / class_name / "images").mkdir(parents=True)
        (root / class_name / "masks").mkdir(parents=True)
        workbook = Workbook()
        sheet = workbook.active
        sheet.append(["FILE NAME", "FORMAT", "SIZE", "URL"])
        for index in range(1, images_per_class + 1):
            name = f"{class_name}-{index}"
            image = random_image(rng, size)
            Image.fromarray(image).save(root / class_name / "images" / f"{name}.png")
            if index > without_mask:
                mask = Image.fromarray(((image > 128) * 255).astype(np.uint8))
                if mask_size is not None:
                    mask = mask.resize((mask_size, mask_size), Image.Resampling.NEAREST)
                mask.save(root / class_name / "masks" / f"{name}.png")
            urls = (sources or {}).get(class_name, [f"https://example.org/{class_name}"])
            # Upper-case names, as in the real Normal spreadsheet ("NORMAL-1").
            sheet.append([name.upper(), "PNG", f"{size}*{size}", urls[index % len(urls)]])
        workbook.save(root / f"{class_name}.metadata.xlsx")
    return root


def write_xray_ct_tree(
    root: Path,
    *,
    per_class: dict[tuple[str, str], int] | None = None,
    folder_names: dict[str, str] | None = None,
    size: int = 40,
    seed: int = 0,
    patients: bool = False,
) -> Path:
    """Mendeley layout ``X-ray/{COVID,Non-COVID}``, ``CT/{COVID,Non-COVID}``.

    With ``patients``, every patient has one X-ray and one CT and ``metadata.csv`` names them.
    """
    rng = np.random.default_rng(seed)
    names = {"xray": "X-ray", "ct": "CT", "COVID": "COVID", "Non-COVID": "Non-COVID"}
    names.update(folder_names or {})
    counts = per_class or {
        (modality, label): 8 for modality in ("xray", "ct") for label in ("COVID", "Non-COVID")
    }
    rows = []
    for (modality, label), count in counts.items():
        folder = root / names[modality] / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            patient = f"{label}-P{index:02d}"
            name = f"{patient}_{modality}.png" if patients else f"{modality}_{label}_{index}.png"
            Image.fromarray(random_image(rng, size)).save(folder / name)
            rows.append(
                {
                    "file": (folder / name).relative_to(root).as_posix(),
                    "modality": modality,
                    "label": label,
                    "patient_id": patient,
                }
            )
    if patients:
        with open(root / "metadata.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "modality", "label", "patient_id"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and mtime (to prove nothing changed)."""
    state = {}
    for folder, subfolders, files in os.walk(root):
        for name in subfolders + files:
            path = Path(folder) / name
            stat = path.stat()
            state[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return state


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    bits_stored: int = 16,
    signed: bool = False,
) -> Path:
    """Write a DICOM file (pydicom 3, explicit VR little endian); ``pixels`` 2-D or (frames, H, W).

    ``rescale`` is ``(slope, intercept)``, ``window`` is ``(center, width)``.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = modality
    dataset.PatientID = "TEST"
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    if frames > 1:
        dataset.NumberOfFrames = frames
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.BitsAllocated = 16
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 1 if signed else 0
    if rescale is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = rescale
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    dataset.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def sixteen_bit_png(
    samples: np.ndarray, *, width: int | None = None, height: int | None = None
) -> bytes:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour).

    ``samples`` is (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA uint16.
    Rows cycle through the None, Sub and Up filters, so the reader's unfiltering is exercised.
    ``width``/``height`` override the header's size (a header that lies about the pixel data).
    """
    import struct
    import zlib

    samples = samples.reshape(*samples.shape[:2], -1).astype(">u2")
    rows, columns, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bytes_per_pixel = 2 * channels
    previous = np.zeros(columns * bytes_per_pixel, dtype=np.uint8)
    raw = bytearray()
    for index in range(rows):
        line = np.frombuffer(samples[index].tobytes(), dtype=np.uint8)
        filter_type = index % 3
        if filter_type == 1:  # Sub: minus the byte one pixel to the left
            left = np.concatenate([np.zeros(bytes_per_pixel, np.uint8), line[:-bytes_per_pixel]])
            filtered = line - left
        elif filter_type == 2:  # Up: minus the byte above
            filtered = line - previous
        else:
            filtered = line
        raw += bytes([filter_type]) + filtered.astype(np.uint8).tobytes()
        previous = line

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width or columns, height or rows, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def write_jpeg_dicom(
    path: Path,
    frame: np.ndarray,
    *,
    rows: int | None = None,
    columns: int | None = None,
    photometric: str = "MONOCHROME2",
) -> Path:
    """A JPEG Baseline DICOM holding ``frame`` (8-bit grey); ``rows``/``columns`` may lie."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    buffer = io.BytesIO()
    Image.fromarray(frame.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.Rows = rows or frame.shape[0]
    dataset.Columns = columns or frame.shape[1]
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(path, enforce_file_format=True)
    return path
