"""The COVID-19 image data collection (ieee8023 ``covid-chestxray-dataset``) as a `DatasetDict`.

Source: Cohen, Morrison, Dao, Roth, Duong and Ghassemi, "COVID-19 Image Data Collection:
Prospective Predictions Are the Future", MELBA 2020; https://github.com/ieee8023/covid-chestxray-dataset.
Lung masks: the human annotations of v7labs (https://github.com/v7labs/covid-19-xray-dataset,
CC BY 4.0) as ``masks/<image stem>.png``. Layout (as cloned)::

    <root>/metadata.csv        patientid, offset, sex, age, finding, ..., view, modality, folder,
                               filename, doi, url, license, clinical_notes, other_notes
    <root>/images/<filename>   X-rays and CT figure crops (PNG, JPEG)
    <root>/masks/<stem>.png    optional lung masks (0 background, 255 lung)

Licence: per image, in the ``license`` column (CC BY, CC BY-NC-SA, CC BY-NC-ND, Apache 2.0, ...;
many blank, i.e. not stated); the table itself is CC BY-NC-SA 4.0. Check before redistributing.

Classes (`IEEE8023_CATEGORIES`, from ``finding``): covid (``COVID-19``, ``COVID-19, ARDS``),
normal (``No Finding``), viral (SARS, MERS, influenza, varicella, ...), bacterial (Streptococcus,
Klebsiella, Legionella, E. coli, Mycoplasma, Chlamydophila, ...), fungal (Pneumocystis,
Aspergillosis, ...) and other (ARDS, lipoid, unspecified ``Pneumonia``). Rows with the finding
``todo`` are not labelled upstream: they are left out and counted.

What is wrong with it: images are mostly figures from papers and web sites (arrows, text,
markers, cropping, unknown processing); several images per patient (follow-ups) and mixed views
(PA, AP, AP supine, lateral) and modalities; a few images are listed twice under two patient ids
(the builder merges those ids into one patient, found from the data: the same file name under
two ids); the same picture is sometimes published under another patient id (near-duplicates are
kept in one split); COVID-19 patients are adults while the Normal/pneumonia images of other
collections often are children; very few non-COVID images.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict

from ..dedup import UnionFind
from ..io import DatasetCache, list_folder
from ..splits import DEFAULT_SPLIT_RATIOS
from .common import (
    CT,
    XRAY,
    CollectionScan,
    PublicImage,
    age_group_of,
    age_problem_notes,
    build_collection_dataset,
    inspect_files,
    locate_collection,
    make_public_image,
    parse_age,
    site_of_url,
)
from .records import DownloadFile, DownloadSource, PublicCollection, ScanOptions
from .tables import absent_files_note, read_csv_rows

__all__ = [
    "FRONTAL_VIEWS",
    "IEEE8023_CATEGORIES",
    "build_ieee8023_dataset",
    "classify_finding",
    "scan_ieee8023",
]

logger = logging.getLogger(__name__)

SOURCE = "ieee8023"
TITLE = "COVID-19 image data collection (ieee8023)"
URL = "https://github.com/ieee8023/covid-chestxray-dataset"
FOLDER_NAMES = ("ieee8023", "covid-chestxray-dataset")
METADATA_FILE = "metadata.csv"
REQUIRED_COLUMNS = ("patientid", "finding", "view", "modality", "folder", "filename", "license")

IEEE8023_CATEGORIES: tuple[str, ...] = ("covid", "normal", "viral", "bacterial", "fungal", "other")
FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP", "AP Supine")
LATERAL_VIEW = "L"
UNLABELLED_FINDING = "todo"
_SEXES = {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"}

# Words of a ``finding`` (lower case) that name a pathogen family; newer versions of the table
# write the whole path ("Pneumonia/Viral/COVID-19"), older ones the pathogen alone ("SARS").
_FINDING_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("covid", ("covid-19", "covid19", "sars-cov-2")),
    ("normal", ("no finding",)),
    ("fungal", ("fungal", "pneumocystis", "aspergillosis", "aspergillus", "candida", "histoplasm")),
    (
        "bacterial",
        (
            "bacterial",
            "streptococcus",
            "klebsiella",
            "legionella",
            "e.coli",
            "e. coli",
            "mycoplasma",
            "chlamydophila",
            "chlamydia",
            "staphylococcus",
            "nocardia",
            "mycobacterium",
            "tuberculosis",
        ),
    ),
    ("viral", ("viral", "sars", "mers", "influenza", "varicella", "herpes", "h1n1", "rsv")),
)


def classify_finding(finding: str) -> str | None:
    """The category of an ieee8023 ``finding``, or None for an unlabelled (``todo``) row.

    Checked in the order covid, normal, fungal, bacterial, viral (so ``"SARS-CoV-2"`` is covid
    and ``"Mycoplasma Bacterial Pneumonia"`` bacterial); anything else (ARDS, lipoid,
    unspecified pneumonia) is ``"other"``.
    """
    text = finding.strip().lower()
    if not text or text == UNLABELLED_FINDING:
        return None
    parts = [part.strip() for part in re.split(r"[,/]", text)]
    for category, words in _FINDING_WORDS:
        if any(word in part for part in parts for word in words):
            return category
    return "other"


def _patient_sort_key(patient: str) -> tuple[bool, int, str]:
    """Numbers first, in numeric order, then other ids."""
    return (not patient.isdigit(), int(patient) if patient.isdigit() else 0, patient)


def _merged_patient_ids(rows: list[dict[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Patient id -> merged id, joining ids that list the same file; and a note per merge.

    The merged id is the smallest of the joined ids (numerically where they are numbers).
    """
    patients = sorted({row["patientid"] for row in rows})
    index = {patient: position for position, patient in enumerate(patients)}
    union_find = UnionFind(len(patients))
    first_patient_of_file: dict[str, str] = {}
    for row in rows:
        first = first_patient_of_file.setdefault(row["filename"], row["patientid"])
        union_find.union(index[first], index[row["patientid"]])
    files_of: dict[str, set[str]] = {}
    for row in rows:
        files_of.setdefault(row["patientid"], set()).add(row["filename"])
    merged, notes = {}, []
    for group in union_find.groups():
        ids = sorted((patients[i] for i in group), key=_patient_sort_key)
        for patient in ids:
            merged[patient] = ids[0]
        if len(ids) > 1:
            listed = Counter(name for patient in ids for name in files_of[patient])
            shared = sorted(name for name, count in listed.items() if count > 1)
            notes.append(
                f"ieee8023 patient ids {', '.join(ids)} merged into {ids[0]}: they list the "
                f"same file(s) {', '.join(shared)}."
            )
    return merged, notes


def _view_of(row: dict[str, str]) -> str:
    view = row["view"].strip()
    if view in ("", "?"):
        return ""
    return view.lower() if row["modality"] == CT else view


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (its ``metadata.csv``)."""
    return (folder / METADATA_FILE).is_file()


def scan_ieee8023(
    root: str | Path,
    *,
    views: Sequence[str] | None = FRONTAL_VIEWS,
    include_lateral: bool = False,
    modality: str | None = XRAY,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label the ieee8023 collection (see `build_ieee8023_dataset`)."""
    if modality not in (XRAY, CT, None):
        raise ValueError(f"modality must be {XRAY!r}, {CT!r} or None (both), got {modality!r}")
    root = locate_collection(root, FOLDER_NAMES, is_collection, TITLE)
    cache = DatasetCache(root, cache_dir)
    rows = read_csv_rows(root / METADATA_FILE, REQUIRED_COLUMNS)
    merged, notes = _merged_patient_ids(rows)
    allowed_views = (
        None if views is None else {*views, *([LATERAL_VIEW] if include_lateral else [])}
    )

    excluded: Counter[str] = Counter()
    selected: list[tuple[dict[str, str], str]] = []
    seen_files: set[str] = set()
    absent: list[str] = []
    image_folder = root / "images"
    present = (
        {path.name for path in list_folder(image_folder)[0]} if image_folder.is_dir() else set()
    )
    for row in rows:
        if row["filename"] in seen_files:
            continue  # the same file under a second (merged) patient id
        seen_files.add(row["filename"])
        category = classify_finding(row["finding"])
        view = _view_of(row)
        if row["folder"] != "images":
            excluded[f"not an image file (folder '{row['folder']}/')"] += 1
        elif category is None:
            excluded[f"unlabelled (finding '{row['finding'] or 'blank'}')"] += 1
        elif modality is not None and row["modality"] != modality:
            excluded[f"{row['modality']} (modality={modality!r})"] += 1
        elif row["modality"] == XRAY and allowed_views is not None and view not in allowed_views:
            reason = (
                "lateral view (include_lateral=False)"
                if view == LATERAL_VIEW
                else (f"view '{view or 'unknown'}' not in {sorted(allowed_views)}")
            )
            excluded[reason] += 1
        elif row["filename"] not in present:
            absent.append(row["filename"])
        else:
            selected.append((row, category))
    referenced = {row["filename"] for row in rows}
    unreferenced = len(present - referenced)
    if unreferenced:
        excluded["in images/ but not in metadata.csv"] += unreferenced
    if absent:
        excluded["listed in metadata.csv but absent from images/"] = len(absent)
        notes.append(absent_files_note("ieee8023", METADATA_FILE, "images/", absent))
        logger.warning("%s", notes[-1])

    masks = {}
    if (root / "masks").is_dir():
        masks = {path.stem: path for path in list_folder(root / "masks")[0]}
    image_paths = [image_folder / row["filename"] for row, _ in selected]
    mask_paths = [masks.get(Path(row["filename"]).stem) for row, _ in selected]
    infos, skipped = inspect_files(
        cache,
        root,
        image_paths + [path for path in mask_paths if path is not None],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
    )
    info_of = {info.path: info for info in infos}

    images: list[PublicImage] = []
    age_problems: Counter[str] = Counter()
    for (row, category), path, mask_path in zip(selected, image_paths, mask_paths, strict=True):
        info = info_of[path]
        if info.error is not None:
            continue
        age, age_problem = parse_age(row.get("age"))
        if age_problem:
            age_problems[age_problem] += 1
        images.append(
            make_public_image(
                info,
                info_of.get(mask_path) if mask_path is not None else None,
                cache,
                source=SOURCE,
                category=category,
                finding=row["finding"],
                modality=row["modality"],
                patient_id=merged[row["patientid"]],
                view=_view_of(row),
                license=row["license"],
                age_group=age_group_of(age),
                age=age,
                sex=_SEXES.get(row.get("sex", "").strip().upper(), ""),
                site=site_of_url(row.get("url", "")),
            )
        )
    notes += age_problem_notes(SOURCE, age_problems)
    return CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=IEEE8023_CATEGORIES,
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="patient_id (ids listing the same file merged)",
        notes=notes,
    )


def build_ieee8023_dataset(
    root: str | Path,
    *,
    views: Sequence[str] | None = FRONTAL_VIEWS,
    include_lateral: bool = False,
    modality: str | None = XRAY,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build patient-grouped train/validation/test splits of the ieee8023 collection.

    Args:
        root: The cloned ``covid-chestxray-dataset`` folder (with ``metadata.csv``), or a folder
            holding it as ``ieee8023/`` or ``covid-chestxray-dataset/``.
        views: X-ray views kept (default: the frontal views PA, AP, AP Supine); None keeps every
            view, unknown ones included. CT rows are not filtered by view.
        include_lateral: Also keep lateral (``L``) X-rays.
        modality: ``"X-ray"`` (default), ``"CT"``, or None for both.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicate images (perceptual hash) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache and derived files go; never inside ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the columns of `public_features`, labels `IEEE8023_CATEGORIES`;
        left-out rows (unlabelled, other views or modality, missing files) are counted in the
        build summary's ``ignored_files``.
    """
    scan = scan_ieee8023(
        root,
        views=views,
        include_lateral=include_lateral,
        modality=modality,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    return build_collection_dataset(
        scan, split_ratios=split_ratios, seed=seed, deduplicate=deduplicate
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_ieee8023(
        root,
        include_lateral=options.include_lateral,
        modality=XRAY if options.xray_only else None,
        **options.file_options,
    )


DOWNLOAD_COMMIT = "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"
"""The commit of the upstream repository that ``hf-covid download ieee8023`` fetches."""
DOWNLOAD = DownloadSource(
    folder="ieee8023",
    files=(
        DownloadFile(
            url=f"{URL}/archive/{DOWNLOAD_COMMIT}.zip",
            name=f"covid-chestxray-dataset-{DOWNLOAD_COMMIT[:12]}.zip",
            strip_components=1,
            members=(METADATA_FILE, "images/", "README.md", "SCHEMA.md"),
        ),
    ),
    checksums="none published: GitHub makes the archive of the pinned commit on request",
)

COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license="per image (CC BY, CC BY-NC-SA, CC BY-NC-ND, ...; many not stated); table CC BY-NC-SA 4.0",
    categories=IEEE8023_CATEGORIES,
    modalities=(XRAY, CT),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_ieee8023_dataset,
    summary="COVID-19 and other pneumonia X-rays and CT crops, mostly figures from papers and web "
    "sites; adults; v7labs human lung masks",
    download=DOWNLOAD,
)
