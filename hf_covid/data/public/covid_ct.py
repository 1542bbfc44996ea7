"""The UCSD COVID-CT slices as a `DatasetDict`.

Source: Zhao, Zhang, He and Xie, "COVID-CT-Dataset: A CT Scan Dataset about COVID-19",
arXiv:2003.13865 (2020); https://github.com/UCSD-AI4H/COVID-CT. Layout (the upstream zips
``Images-processed/CT_COVID.zip`` and ``CT_NonCOVID.zip`` unpacked)::

    <root>/CT_COVID/*.png|jpg        slices with COVID-19 findings
    <root>/CT_NonCOVID/*.png|jpg     slices without COVID-19
    <root>/COVID-CT-MetaInfo.xlsx    optional: file name -> patient id (also as .csv)
    <root>/Data-split/**/{train,val,test}CT_{COVID,NonCOVID}.txt   optional official split

(``<root>/Images-processed/`` holding the two folders works too). Licence: none stated; the
upstream README says all copyrights belong to the authors and publishers of the papers the
slices were taken from, so treat every slice as restricted. Classes (`COVID_CT_CATEGORIES`):
non_covid and covid.

What is wrong with it: the slices are crops of figures in papers (varied size, windowing and
resolution, no Hounsfield units, colour annotations, RGB/RGBA, some ``.png`` files hold JPEG
data); several slices come from one patient, and without the meta-information file there are no
patient ids (each slice is then its own group, and same-patient slices can sit in two splits:
the build summary says so); the same figure is also published in other collections (ieee8023),
found by the near-duplicate search of a composition.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict
from openpyxl import load_workbook

from ..io import DatasetCache, list_folder, normalize_folder_name
from ..splits import DEFAULT_SPLIT_RATIOS
from .common import (
    CT,
    CollectionScan,
    build_collection_dataset,
    inspect_files,
    locate_collection,
    make_public_image,
)
from .records import DownloadFile, DownloadSource, PublicCollection, ScanOptions

__all__ = ["COVID_CT_CATEGORIES", "build_covid_ct_dataset", "scan_covid_ct"]

SOURCE = "covid_ct"
TITLE = "COVID-CT (UCSD-AI4H)"
URL = "https://github.com/UCSD-AI4H/COVID-CT"
FOLDER_NAMES = ("covid_ct", "COVID-CT", "Images-processed", "COVID-CT/Images-processed")
CLASS_FOLDERS = {"ctcovid": "covid", "ctnoncovid": "non_covid"}
COVID_CT_CATEGORIES: tuple[str, ...] = ("non_covid", "covid")
METADATA_NAMES = ("COVID-CT-MetaInfo.xlsx", "COVID-CT-MetaInfo.csv")
SPLIT_FOLDER = "Data-split"
_SPLIT_PREFIXES = {"train": "train", "val": "validation", "test": "test"}


def _class_folders(folder: Path) -> dict[str, Path]:
    return {
        CLASS_FOLDERS[key]: sub
        for sub in list_folder(folder)[1]
        if (key := normalize_folder_name(sub.name)) in CLASS_FOLDERS
    }


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (its CT_COVID/ and CT_NonCOVID/ folders)."""
    return len(_class_folders(folder)) == len(CLASS_FOLDERS)


def _read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV or the first sheet of an xlsx file, keys normalised (``"patientid"``)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    else:
        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = [
                ["" if cell is None else str(cell) for cell in row]
                for row in workbook.worksheets[0].iter_rows(values_only=True)
            ]
        finally:
            workbook.close()
    if not rows:
        return []
    header = [normalize_folder_name(name) for name in rows[0]]
    return [dict(zip(header, (value.strip() for value in row), strict=False)) for row in rows[1:]]


def _read_patient_ids(path: Path) -> dict[str, str]:
    """File name -> patient id from the meta-information table."""
    rows = _read_table(path)
    if rows and not {"filename", "patientid"} <= rows[0].keys():
        raise ValueError(
            f"'{path}' needs the columns 'File name' and 'Patient ID', found {sorted(rows[0])}"
        )
    return {row["filename"]: row["patientid"] for row in rows if row.get("patientid")}


def _read_official_split(folder: Path) -> dict[tuple[str, str], str]:
    """(category, file name) -> split name from the ``Data-split`` lists."""
    split_of: dict[tuple[str, str], str] = {}
    for path in sorted(folder.rglob("*.txt")):
        stem = path.stem.lower()
        prefix = next((p for p in _SPLIT_PREFIXES if stem.startswith(p)), None)
        key = normalize_folder_name(stem[len(prefix) :]) if prefix else ""
        if prefix is None or key not in CLASS_FOLDERS:
            continue
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                split_of[(CLASS_FOLDERS[key], line.strip())] = _SPLIT_PREFIXES[prefix]
    return split_of


def scan_covid_ct(
    root: str | Path,
    *,
    metadata_file: str | Path | None = None,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label the COVID-CT slices (see `build_covid_ct_dataset`)."""
    root = locate_collection(
        root, FOLDER_NAMES, is_collection, f"{TITLE} (folders CT_COVID/ and CT_NonCOVID/)"
    )
    cache = DatasetCache(root, cache_dir)
    search = (root, root.parent)
    if metadata_file is None:
        found = [folder / name for folder in search for name in METADATA_NAMES]
        metadata_path = next((path for path in found if path.is_file()), None)
    else:
        metadata_path = Path(metadata_file)
        if not metadata_path.is_file():
            raise FileNotFoundError(f"COVID-CT metadata file '{metadata_path}' does not exist")
    patient_of = _read_patient_ids(metadata_path) if metadata_path else {}
    split_folder = next((f / SPLIT_FOLDER for f in search if (f / SPLIT_FOLDER).is_dir()), None)
    official = _read_official_split(split_folder) if split_folder else {}

    candidates = [
        (path, category)
        for category, folder in _class_folders(root).items()
        for path in list_folder(folder)[0]
    ]
    infos, skipped = inspect_files(
        cache,
        root,
        [path for path, _ in candidates],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
    )
    images, official_split, excluded = [], {}, Counter()
    for (path, category), info in zip(candidates, infos, strict=True):
        if info.error is not None:
            continue
        if official and (category, path.name) not in official:
            excluded["not in the official Data-split lists"] += 1
            continue
        image = make_public_image(
            info,
            None,
            cache,
            source=SOURCE,
            category=category,
            finding=path.parent.name,
            modality=CT,
            patient_id=patient_of.get(path.name),
            view="axial",
            license="",
            age_group="",
        )
        images.append(image)
        if official:
            official_split[image.image_id] = official[(category, path.name)]
    with_patient = sum(image.patient_id is not None for image in images)
    notes = [
        "COVID-CT: no licence stated (copyright of the source papers' authors and publishers); "
        "slices are figure crops without Hounsfield units."
    ]
    if with_patient < len(images):
        notes.append(
            f"COVID-CT: {len(images) - with_patient} of {len(images)} slices have no patient id "
            + ("(not in the meta-information file)" if patient_of else "(no meta-information file)")
            + "; each is its own group, so slices of one patient can sit in two splits."
        )
    return CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=COVID_CT_CATEGORIES,
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="patient_id (meta-information file)" if patient_of else "image (no patient ids)",
        notes=notes,
        official_split=official_split or None,
    )


def build_covid_ct_dataset(
    root: str | Path,
    *,
    use_official_split: bool = True,
    metadata_file: str | Path | None = None,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build train/validation/test splits of the COVID-CT slices.

    Args:
        root: The folder holding ``CT_COVID/`` and ``CT_NonCOVID/`` (or a folder above it as
            ``covid_ct/``, ``COVID-CT/`` or ``Images-processed/``).
        use_official_split: Use the upstream ``Data-split`` lists where present (slices not
            listed are left out and counted); otherwise, or without them, plan a split.
        metadata_file: The meta-information table (default: ``COVID-CT-MetaInfo.xlsx`` or
            ``.csv`` in or above ``root``, if present) giving patient ids.
        split_ratios: Fractions for train, validation and test (planned split only).
        seed: Seed of the planned split.
        deduplicate: Keep near-duplicate slices in one split (planned split), or count them.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache goes; never inside ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the columns of `public_features`, labels `COVID_CT_CATEGORIES`.
    """
    scan = scan_covid_ct(
        root,
        metadata_file=metadata_file,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    return build_collection_dataset(
        scan,
        split_ratios=split_ratios,
        seed=seed,
        deduplicate=deduplicate,
        use_official_split=use_official_split,
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_covid_ct(root, **options.file_options)


DOWNLOAD_COMMIT = "0c83254a43230de176489a9b4e3ac12e23b0df53"
"""The commit of the upstream repository whose files ``hf-covid download covid_ct`` fetches."""
_RAW = f"https://github.com/UCSD-AI4H/COVID-CT/raw/{DOWNLOAD_COMMIT}"
DOWNLOAD = DownloadSource(
    folder="covid_ct",
    files=(
        *(
            DownloadFile(url=f"{_RAW}/Images-processed/{folder}.zip", name=f"{folder}.zip")
            for folder in ("CT_COVID", "CT_NonCOVID")
        ),
        DownloadFile(url=f"{_RAW}/{METADATA_NAMES[0]}", name=METADATA_NAMES[0]),
        *(
            DownloadFile(
                url=f"{_RAW}/{SPLIT_FOLDER}/{kind}/{split}CT_{kind}.txt",
                name=f"{split}CT_{kind}.txt",
                target=f"{SPLIT_FOLDER}/{kind}",
            )
            for kind in ("COVID", "NonCOVID")
            for split in _SPLIT_PREFIXES
        ),
    ),
    checksums="none published: files of the pinned commit of the GitHub repository",
)

COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license="not stated (copyright of the source papers' authors and publishers)",
    categories=COVID_CT_CATEGORIES,
    modalities=(CT,),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_covid_ct_dataset,
    summary="COVID and non-COVID CT slices cropped from paper figures (no Hounsfield units)",
    download=DOWNLOAD,
)
