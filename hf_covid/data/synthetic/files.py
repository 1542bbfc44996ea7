"""Writing the synthetic layouts' files so that the same content always gives the same bytes.

PNG with a fixed compression level, JPEG with a fixed quality, xlsx packages with a fixed
timestamp, CSV with ``\\n`` line ends; and the output folder policy (refuse a non-empty folder
unless asked to overwrite, then remove only what the generator writes).
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter
from PIL import Image

from .render import resize_field

__all__ = ["prepare_output", "save_image", "save_mask", "write_csv", "write_workbook"]

# Fixed timestamp for the xlsx package so that the same seed gives the same bytes.
_FIXED_TIMESTAMP = datetime(2020, 3, 11)
_PNG_COMPRESS_LEVEL = 1
_JPEG_QUALITY = 92


def prepare_output(output_dir: str | Path, owned: Iterable[str], overwrite: bool) -> Path:
    """Create the output folder, refusing a non-empty one unless ``overwrite``.

    With ``overwrite`` only the entries this generator writes (``owned``, relative to the folder)
    are removed; anything else in the folder is left alone.

    Raises:
        NotADirectoryError: when ``output_dir`` is a file.
        FileExistsError: when ``output_dir`` is not empty and ``overwrite`` is False.
    """
    root = Path(output_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"output folder {str(root)!r} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder {str(root)!r} is not empty; pass overwrite=True (--overwrite) "
                "to replace the synthetic data in it"
            )
        for name in owned:
            entry = root / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root


def save_image(path: Path, array: np.ndarray) -> None:
    """Write a grayscale image; JPEG with a fixed quality, PNG otherwise (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(path, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)


def save_mask(path: Path, mask: np.ndarray, size: tuple[int, int] | None = None) -> None:
    """Write a binary 0/255 PNG mask, optionally resized to (height, width)."""
    mask = mask.astype(np.float32)
    if size is not None:
        mask = resize_field(mask, size)
    save_image(path, np.where(mask > 0.5, 255, 0).astype(np.uint8))


def write_workbook(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write an xlsx file whose bytes depend only on its content (fixed timestamps)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    workbook.properties.created = workbook.properties.modified = _FIXED_TIMESTAMP
    buffer = io.BytesIO()
    # ExcelWriter rather than Workbook.save, which stamps the current time into the properties.
    ExcelWriter(workbook, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)).save()
    # Zip members carry their write time too: copy them with a fixed one.
    output = io.BytesIO()
    with (
        zipfile.ZipFile(buffer) as source,
        zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for member in source.infolist():
            fixed = zipfile.ZipInfo(member.filename, date_time=_FIXED_TIMESTAMP.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = member.external_attr
            target.writestr(fixed, source.read(member.filename))
    path.write_bytes(output.getvalue())


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a UTF-8 CSV file with a header row and ``\\n`` line ends."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
