"""Write the public collections as the Kaggle Radiography and Mendeley X-ray + CT folder layouts.

For users without the Kaggle or Mendeley downloads: `prepare_public_data` takes the upstream
folders side by side (as cloned) and writes::

    <out>/radiography/<class>/images/<collection>-<stem>.png   8-bit grayscale PNG
    <out>/radiography/<class>/masks/<collection>-<stem>.png    lung masks where one exists
    <out>/radiography/<class>.metadata.xlsx                    FILE NAME, FORMAT, SIZE, URL
    <out>/xray_ct/{X-ray,CT}/{COVID,Non-COVID}/<collection>-<name>   bytes unchanged, extension
                                                                     fixed to the content
    <out>/xray_ct/metadata.csv        file, modality, label, patient_id (where known)
    <out>/provenance.csv              one row per written image: where it came from, its licence

so that `build_radiography_dataset` and `build_xray_ct_dataset` read them unchanged. The images
are those `select_radiography_images` and `select_xray_ct_images` choose (Lung_Opacity has no
public source: that class folder is not written). The source folders are only read, never
written. The folder layouts lose the patient grouping (the Kaggle and Mendeley builders split
by image): `provenance.csv` keeps the patient ids, and the ``compose_*`` functions split by them.

Command line (``hf-covid prepare`` and ``scripts/prepare_public_data.py``), with ``public_data/``
standing for the public collections root::

    hf-covid prepare public_data/ --output data/public_layouts
    hf-covid prepare public_data/ --output out \\
        --class-map '{"Lung_Opacity": ["ieee8023:bacterial", "ieee8023:fungal"]}'
    hf-covid prepare --list      # every collection: licence, how to get it, folder names

Many of these images carry non-commercial, no-derivatives or no stated licence (see
``provenance.csv``): keep what this writes for research use and do not redistribute it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..io import load_image
from ..synthetic.files import write_workbook
from ..xray_ct import MODALITY_NAMES
from .collections import PUBLIC_COLLECTIONS, get_collection
from .common import PublicImage
from .compose import MODALITY_KEYS, select_radiography_images, select_xray_ct_images
from .records import PublicCollection

__all__ = [
    "LAYOUTS",
    "PROVENANCE_COLUMNS",
    "PreparedData",
    "describe_collections",
    "main",
    "parse_arguments",
    "prepare_public_data",
]

LAYOUTS: tuple[str, ...] = ("radiography", "xray_ct")
PROVENANCE_FILE = "provenance.csv"
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "output_file",
    "layout",
    "collection",
    "original_path",
    "patient_id",
    "label",
    "finding",
    "view",
    "age_group",
    "license",
    "sha256",
)
"""``output_file`` relative to the output folder; ``original_path`` relative to the collection;
``sha256`` of the original file (compare with the upstream or ``manifest.csv``)."""
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class PreparedData:
    """What `prepare_public_data` wrote.

    Attributes:
        radiography: The Kaggle-layout folder, or None when not written.
        xray_ct: The Mendeley-layout folder, or None when not written.
        provenance: The provenance and licence manifest (CSV).
        images_written: Images written per layout.
    """

    radiography: Path | None
    xray_ct: Path | None
    provenance: Path
    images_written: dict[str, int]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name`` with ``-2``, ``-3``... before the suffix when already used."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, number = name, 1
    while candidate.lower() in used:
        number += 1
        candidate = f"{stem}-{number}{suffix}"
    used.add(candidate.lower())
    return candidate


def _check_output(output: Path, collection_roots: Sequence[Path], overwrite: bool) -> None:
    for root in collection_roots:
        if output == root or root in output.parents or output in root.parents:
            raise ValueError(
                f"output folder '{output}' overlaps the collection folder '{root}'; the sources "
                "are never written to, choose an output folder outside them"
            )
    existing = [output / name for name in (*LAYOUTS, PROVENANCE_FILE) if (output / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{[str(path) for path in existing]} already exist; pass overwrite=True to replace them"
        )
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _provenance_row(
    output_file: Path, output: Path, layout: str, image: PublicImage, label: str
) -> dict[str, str]:
    return {
        "output_file": output_file.relative_to(output).as_posix(),
        "layout": layout,
        "collection": image.source,
        "original_path": image.image_id,
        "patient_id": image.patient_id or "",
        "label": label,
        "finding": image.finding,
        "view": image.view,
        "age_group": image.age_group,
        "license": image.license,
        "sha256": _sha256(image.file),
    }


def _write_radiography(
    output: Path, images: Sequence[PublicImage], class_of: Sequence[str], rows: list[dict]
) -> Path:
    root = output / "radiography"
    used: dict[str, set[str]] = {}
    metadata: dict[str, list[tuple[str, str, str, str]]] = {}
    for image, class_name in tqdm(
        list(zip(images, class_of, strict=True)), desc="Radiography layout", unit="image"
    ):
        name = _unique_name(
            f"{image.source}-{Path(image.image_id).stem}.png", used.setdefault(class_name, set())
        )
        target = root / class_name / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = load_image(image.file)
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(target)
        if image.mask is not None:
            mask_target = root / class_name / "masks" / name
            mask_target.parent.mkdir(parents=True, exist_ok=True)
            mask = load_image(image.mask) >= 0.5
            Image.fromarray((mask * 255).astype(np.uint8)).save(mask_target)
        metadata.setdefault(class_name, []).append(
            (
                Path(name).stem,
                "PNG",
                f"{image.width}*{image.height}",
                get_collection(image.source).url,
            )
        )
        rows.append(_provenance_row(target, output, "radiography", image, class_name))
    for class_name, entries in metadata.items():
        write_workbook(
            root / f"{class_name}.metadata.xlsx", ("FILE NAME", "FORMAT", "SIZE", "URL"), entries
        )
    return root


def _write_xray_ct(
    output: Path, images: Sequence[PublicImage], class_of: Sequence[str], rows: list[dict]
) -> Path:
    root = output / "xray_ct"
    used: dict[Path, set[str]] = {}
    metadata = []
    for image, class_name in tqdm(
        list(zip(images, class_of, strict=True)), desc="X-ray + CT layout", unit="image"
    ):
        folder = root / MODALITY_NAMES[MODALITY_KEYS[image.modality]] / class_name
        folder.mkdir(parents=True, exist_ok=True)
        suffix = _EXTENSIONS.get(image.image_format, Path(image.image_id).suffix)
        name = _unique_name(
            f"{image.source}-{Path(image.image_id).stem}{suffix}", used.setdefault(folder, set())
        )
        target = folder / name
        shutil.copyfile(image.file, target)
        patient = f"{image.source}:{image.patient_id}" if image.patient_id else ""
        metadata.append((target.relative_to(root).as_posix(), image.modality, class_name, patient))
        rows.append(_provenance_row(target, output, "xray_ct", image, class_name))
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("file", "modality", "label", "patient_id"))
        writer.writerows(metadata)
    return root


def prepare_public_data(
    collections_root: str | Path,
    output_dir: str | Path,
    *,
    layouts: Sequence[str] = LAYOUTS,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
    include_lateral: bool = False,
    include_ieee8023_ct: bool = True,
    overwrite: bool = False,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> PreparedData:
    """Write the Kaggle Radiography and Mendeley X-ray + CT layouts from the public collections.

    Args:
        collections_root: Folder holding the upstream collections side by side.
        output_dir: Where to write (outside every collection folder).
        layouts: Which of `LAYOUTS` to write.
        classes, class_map, include_lateral: Radiography selection (see `compose_radiography`).
        include_ieee8023_ct: X-ray + CT selection (see `compose_xray_ct`).
        overwrite: Replace layouts already written in ``output_dir``.
        skip_bad_images: Skip unreadable source files instead of raising `BadImagesError`.
        cache_dir: Where the scan caches go; never inside a collection.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `PreparedData` naming the folders and the provenance manifest.

    Raises:
        ValueError: An unknown layout, or an output folder overlapping a collection.
        FileExistsError: A layout is already written and ``overwrite`` is False.
    """
    unknown = [name for name in layouts if name not in LAYOUTS]
    if unknown or not layouts:
        raise ValueError(
            f"layouts must be a non-empty subset of {list(LAYOUTS)}, got {list(layouts)}"
        )
    output = Path(output_dir).expanduser().resolve()
    options = {
        "skip_bad_images": skip_bad_images,
        "cache_dir": cache_dir,
        "num_threads": num_threads,
    }
    selections = {}
    if "radiography" in layouts:
        selections["radiography"] = select_radiography_images(
            collections_root,
            classes=classes,
            class_map=class_map,
            include_lateral=include_lateral,
            **options,
        )
    if "xray_ct" in layouts:
        selections["xray_ct"] = select_xray_ct_images(
            collections_root,
            include_ieee8023_ct=include_ieee8023_ct,
            include_lateral=include_lateral,
            **options,
        )
    collection_roots = {
        root for selection in selections.values() for root in selection.collection_roots.values()
    }
    _check_output(output, sorted(collection_roots), overwrite)
    output.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, str]] = []
    written: dict[str, Path] = {}
    writers = {"radiography": _write_radiography, "xray_ct": _write_xray_ct}
    for layout, selection in selections.items():
        class_of = [selection.class_names[label] for label in selection.labels]
        written[layout] = writers[layout](output, selection.images, class_of, rows)
    provenance = output / PROVENANCE_FILE
    with provenance.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PROVENANCE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return PreparedData(
        radiography=written.get("radiography"),
        xray_ct=written.get("xray_ct"),
        provenance=provenance,
        images_written={layout: len(selection.images) for layout, selection in selections.items()},
    )


def _how_to_get(record: PublicCollection) -> str:
    if record.download is None:
        return f"by hand from {record.url}"
    if record.download.manual:
        return f"by hand (login or licence click): 'hf-covid download {record.name}' says how"
    return (
        f"hf-covid download {record.name} --to ROOT (into ROOT/{record.download.folder}/; "
        f"checksums: {record.download.checksums})"
    )


def describe_collections(records: Sequence[PublicCollection] | None = None) -> str:
    """Every collection record as text: name, title, licence, how to get it, folders, summary.

    Args:
        records: The records to describe (default: every one of `PUBLIC_COLLECTIONS`).
    """
    blocks = []
    for record in PUBLIC_COLLECTIONS.values() if records is None else records:
        folders = ", ".join(f"{name}/" for name in record.folder_names)
        blocks.append(
            f"{record.name}: {record.title}\n"
            f"  licence: {record.license}\n"
            f"  get it: {_how_to_get(record)}\n"
            f"  folders below a collections root: {folders}\n"
            f"  {record.summary}\n"
            f"  {record.url}"
        )
    return "\n\n".join(blocks)


def _class_map(text: str) -> dict[str, list[str]]:
    """``--class-map``: a JSON object of Radiography class -> ``collection:category`` names."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of :func:`main` (see ``--help``)."""
    parser = argparse.ArgumentParser(
        description="Write the Kaggle Radiography and Mendeley X-ray + CT layouts from the "
        "public collections (research use only: see provenance.csv for the licences)."
    )
    parser.add_argument(
        "collections",
        type=Path,
        nargs="?",
        help="the public collections root (upstream folders side by side)",
    )
    parser.add_argument("--output", type=Path, help="folder to write (required unless --list)")
    parser.add_argument(
        "--list",
        action="store_true",
        help="list every known collection (licence, how to get it, folder names) and exit",
    )
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--classes", nargs="+", help="Radiography classes (default: those filled)")
    parser.add_argument(
        "--class-map",
        type=_class_map,
        help='JSON, e.g. \'{"Lung_Opacity": ["ieee8023:bacterial"]}\'',
    )
    parser.add_argument("--include-lateral", action="store_true", help="keep lateral X-rays")
    parser.add_argument(
        "--no-ieee8023-ct", action="store_true", help="CTs from COVID-CT only (X-ray + CT layout)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace layouts already written")
    parser.add_argument("--skip-bad-images", action="store_true", help="skip unreadable files")
    parser.add_argument("--cache-dir", type=Path, help="scan cache (default: the datasets cache)")
    arguments = parser.parse_args(argv)
    if not arguments.list and (arguments.collections is None or arguments.output is None):
        parser.error("the collections root and --output are required (or give --list)")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """Write the layouts and print where they are.

    Returns:
        The exit status: 0, or 2 when a collection is missing, an option is refused, an image
        is unreadable or a layout is already written.
    """
    arguments = parse_arguments(argv)
    if arguments.list:
        print(describe_collections())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        prepared = prepare_public_data(
            arguments.collections,
            arguments.output,
            layouts=arguments.layouts,
            classes=arguments.classes,
            class_map=arguments.class_map,
            include_lateral=arguments.include_lateral,
            include_ieee8023_ct=not arguments.no_ieee8023_ct,
            overwrite=arguments.overwrite,
            skip_bad_images=arguments.skip_bad_images,
            cache_dir=arguments.cache_dir,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for layout, count in prepared.images_written.items():
        print(f"{layout}: {count} images in {getattr(prepared, layout)}")
    print(f"provenance and licences: {prepared.provenance}")
    return 0
