"""The pediatric pneumonia chest X-rays of Kermany et al. as a `DatasetDict`.

Source: Kermany, Goldbaum et al., "Identifying Medical Diagnoses and Treatable Diseases by
Image-Based Deep Learning", Cell 2018; Mendeley Data doi:10.17632/rscbjbr9sj.2 (also on Kaggle as
``paultimothymooney/chest-xray-pneumonia``). Licence: CC BY 4.0. Layout::

    <root>/chest_xray/{train,test,val}/NORMAL/IM-0117-0001.jpeg, NORMAL2-IM-0587-0001.jpeg
    <root>/chest_xray/{train,test,val}/PNEUMONIA/person12_virus_44.jpeg, person3_bacteria_11.jpeg

(``val/`` and ``test/`` optional; the Kaggle zip nests ``chest_xray/chest_xray``, found too).
Classes (`KERMANY_CATEGORIES`): normal, bacterial and viral, from the folder and the file name.
Patient ids come from the file name: ``personN_virus_M`` -> ``personN_virus`` (the virus and
bacteria files count persons separately, so the number alone is not taken as one child), and
``NORMAL2-IM-0587-0001`` -> ``NORMAL2-IM-0587``.

What is wrong with it: every image is of a child aged 1-5 from one hospital (Guangzhou Women
and Children's Medical Center), anterior-posterior; mixed with adult COVID-19 images a model
learns age and hospital, not disease. Some copies of this set hold 224x224 re-saves (aspect ratio
lost) and byte-identical files under two names (near-duplicates are kept in one split). The
upstream train/val/test folders are pooled and split again by patient here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict

from ..io import DatasetCache, list_folder, normalize_folder_name
from ..splits import DEFAULT_SPLIT_RATIOS
from .common import (
    XRAY,
    CollectionScan,
    build_collection_dataset,
    inspect_files,
    locate_collection,
    make_public_image,
)
from .records import DownloadFile, DownloadSource, PublicCollection, ScanOptions

__all__ = ["KERMANY_CATEGORIES", "build_kermany_dataset", "kermany_patient_id", "scan_kermany"]

SOURCE = "kermany"
TITLE = "Pediatric pneumonia chest X-rays (Kermany et al.)"
URL = "https://data.mendeley.com/datasets/rscbjbr9sj/2"
LICENSE = "CC BY 4.0"
FOLDER_NAMES = ("chest_xray", "chest_xray/chest_xray", "kermany/chest_xray", "kermany")
SPLIT_FOLDERS = ("train", "val", "test")
KERMANY_CATEGORIES: tuple[str, ...] = ("normal", "bacterial", "viral")
VIEW = "AP"
SITE = "Guangzhou Women and Children's Medical Center"

_PNEUMONIA_NAME = re.compile(r"^(?P<patient>person\d+_(?P<kind>bacteria|virus))_\d+", re.IGNORECASE)
_NORMAL_NAME = re.compile(r"^(?P<patient>(?:NORMAL2-)?IM-\d+)-", re.IGNORECASE)
_CATEGORY_OF_KIND = {"bacteria": "bacterial", "virus": "viral"}


def kermany_patient_id(file_name: str) -> str | None:
    """The patient id in a Kermany file name, or None when the name follows neither pattern."""
    match = _PNEUMONIA_NAME.match(file_name) or _NORMAL_NAME.match(file_name)
    return match.group("patient") if match else None


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (a ``train/`` folder)."""
    return (folder / "train").is_dir()


def scan_kermany(
    root: str | Path,
    *,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label the Kermany collection (see `build_kermany_dataset`)."""
    root = locate_collection(root, FOLDER_NAMES, is_collection, f"{TITLE} ('train/' folder)")
    cache = DatasetCache(root, cache_dir)
    excluded: Counter[str] = Counter()
    problems: list[tuple[str, str]] = []
    candidates: list[tuple[Path, str, str, str | None]] = []
    without_patient = 0
    for split_folder in SPLIT_FOLDERS:
        if not (root / split_folder).is_dir():
            continue
        for folder in list_folder(root / split_folder)[1]:
            kind = normalize_folder_name(folder.name)
            if kind not in ("normal", "pneumonia"):
                problems.append(
                    (folder.relative_to(root).as_posix(), "unknown folder (NORMAL, PNEUMONIA)")
                )
                continue
            for path in list_folder(folder)[0]:
                patient = kermany_patient_id(path.name)
                if kind == "normal":
                    category, finding = "normal", "NORMAL"
                else:
                    match = _PNEUMONIA_NAME.match(path.name)
                    if match is None:
                        excluded["pneumonia file name says neither bacteria nor virus"] += 1
                        continue
                    finding = f"PNEUMONIA ({match.group('kind').lower()})"
                    category = _CATEGORY_OF_KIND[match.group("kind").lower()]
                without_patient += patient is None
                candidates.append((path, category, finding, patient))
    infos, skipped = inspect_files(
        cache,
        root,
        [candidate[0] for candidate in candidates],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
        problems=problems,
    )
    images = [
        make_public_image(
            info,
            None,
            cache,
            source=SOURCE,
            category=category,
            finding=finding,
            modality=XRAY,
            patient_id=patient,
            view=VIEW,
            license=LICENSE,
            age_group="pediatric",
            site=SITE,
        )
        for (_, category, finding, patient), info in zip(candidates, infos, strict=True)
        if info.error is None
    ]
    notes = [
        "Kermany: every image is of a child aged 1-5 from one hospital; the upstream "
        "train/val/test folders are pooled and split again by patient."
    ]
    if without_patient:
        notes.append(f"Kermany: {without_patient} file name(s) hold no patient id (own group).")
    return CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=KERMANY_CATEGORIES,
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="patient_id (from the file names)",
        notes=notes,
    )


def build_kermany_dataset(
    root: str | Path,
    *,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build patient-grouped train/validation/test splits of the Kermany pediatric X-rays.

    Args:
        root: The ``chest_xray`` folder (holding ``train/``), or a folder above it.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicate images (perceptual hash) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache goes; never inside ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the columns of `public_features`, labels `KERMANY_CATEGORIES`
        (``finding``: ``NORMAL``, ``PNEUMONIA (bacteria)`` or ``PNEUMONIA (virus)``).
    """
    scan = scan_kermany(
        root, skip_bad_images=skip_bad_images, cache_dir=cache_dir, num_threads=num_threads
    )
    return build_collection_dataset(
        scan, split_ratios=split_ratios, seed=seed, deduplicate=deduplicate
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_kermany(root, **options.file_options)


DOWNLOAD = DownloadSource(
    folder="kermany",
    files=(
        DownloadFile(
            url="https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
            "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded",
            name="ChestXRay2017.zip",
            # The SHA-256 of ChestXRay2017.zip that other download scripts verify it against.
            checksum="sha256:13efc055629733dbab07877f8b3c9f81097840dbcdaa326a8542322c2281ce36",
        ),
    ),
    checksums="SHA-256 of ChestXRay2017.zip, Mendeley Data version 2 (a version never changes)",
)

COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license=LICENSE,
    categories=KERMANY_CATEGORIES,
    modalities=(XRAY,),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_kermany_dataset,
    summary="normal, bacterial and viral pneumonia X-rays of children aged 1-5 from one hospital "
    "(Guangzhou)",
    download=DOWNLOAD,
)
