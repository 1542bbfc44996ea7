"""The RSNA Pneumonia Detection Challenge chest X-rays (Kaggle, stage 2 training set) as a `DatasetDict`.

Source: Shih, Wu, Kitamura et al., "Augmenting the National Institutes of Health Chest Radiograph
Dataset with Expert Annotations of Possible Pneumonia", Radiology: Artificial Intelligence 2019
(doi:10.1148/ryai.2019180041); https://www.kaggle.com/c/rsna-pneumonia-detection-challenge.
26,684 frontal X-rays (PA and AP), mostly of adults, drawn from NIH ChestX-ray14 and read again
by radiologists of the RSNA and the Society of Thoracic Radiology, who drew a box around every
opacity suggestive of pneumonia. Layout (the Kaggle download, unzipped)::

    <root>/stage_2_train_labels.csv         patientId, x, y, width, height, Target: one row per
                                            box; x, y, width, height empty where Target is 0
    <root>/stage_2_detailed_class_info.csv  patientId, class: one row per row above
    <root>/stage_2_train_images/<patientId>.dcm   1024x1024 8-bit JPEG Baseline DICOM
    <root>/stage_2_test_images/             unlabelled, not read

Licence: the RSNA's terms of use (attribution to the RSNA and the paper above required; research
and education, commercial or not, per rsna.org) and, for the Kaggle copy, the competition's rules.
Getting it needs a Kaggle login and accepting those rules (``hf-covid download rsna`` says how).

Classes (`RSNA_CATEGORIES`, from ``class``): normal (``Normal``), not_normal (``No Lung Opacity /
Not Normal``) and lung_opacity (``Lung Opacity``, the source of the COVID-19 Radiography
Database's Lung_Opacity class). Columns: those of `public_features` (``patient_id`` and ``view``
from the DICOM header, ``finding`` the class as RSNA writes it), plus ``boxes`` (every box as
``[x, y, width, height]`` in pixels of the image, upper-left origin; empty unless lung_opacity),
``age`` (years, from the header; 90 stands for 90 and over, as HIPAA's Safe Harbor asks; None when
unknown) and ``sex`` (``M``, ``F``, ``O`` or ""). These three live only in this builder's dataset
(typed columns, not JSON text, so `datasets` filters and maps them); compositions keep the shared
columns. Nothing else of the header is kept (no name, no date): the ``image`` column holds a PNG
copy in the cache, without the header.

What is wrong with it: a patientId names an *image*, not a person (RSNA re-keyed NIH's images and
NIH's patient ids are gone), so a split grouped by it can put one person's follow-ups in two
splits (near-duplicates are still kept together); a DICOM without PatientID is its own patient,
counted in the summary. ``Lung Opacity`` is a reader's impression of possible pneumonia, not a
diagnosis; ``No Lung Opacity / Not Normal`` pools every other finding (devices, effusion, nodules,
...). A few header ages are impossible (over 140 years): above 120 they are taken as unknown. The
images are NIH's 8-bit PNGs wrapped in DICOM again (lossy JPEG, no acquisition parameters), and
the same pictures are in NIH ChestX-ray14 under other names: a composition with NIH finds them as
near-duplicates.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict, List, Value

from ..dicom import read_dicom_header
from ..io import DatasetCache, list_folder
from ..splits import DEFAULT_SPLIT_RATIOS
from .common import (
    XRAY,
    CollectionScan,
    age_group_of,
    build_collection_dataset,
    inspect_files,
    locate_collection,
    make_public_image,
)
from .records import DownloadSource, PublicCollection, ScanOptions
from .tables import absent_files_note, read_csv_rows

__all__ = [
    "RSNA_CATEGORIES",
    "RSNA_CLASSES",
    "RSNA_EXTRA_FEATURES",
    "build_rsna_dataset",
    "rsna_age_years",
    "scan_rsna",
]

logger = logging.getLogger(__name__)

SOURCE = "rsna"
TITLE = "RSNA Pneumonia Detection Challenge (stage 2 training set)"
URL = "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge"
LICENSE = "RSNA terms of use (attribution required) and the Kaggle competition rules"
FOLDER_NAMES = ("rsna", "rsna-pneumonia-detection-challenge", "rsna_pneumonia")
LABELS_FILE = "stage_2_train_labels.csv"
CLASS_FILE = "stage_2_detailed_class_info.csv"
IMAGE_FOLDER = "stage_2_train_images"
LABEL_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
CLASS_COLUMNS = ("patientId", "class")
BOX_COLUMNS = ("x", "y", "width", "height")

RSNA_CLASSES: dict[str, str] = {
    "Normal": "normal",
    "No Lung Opacity / Not Normal": "not_normal",
    "Lung Opacity": "lung_opacity",
}
"""RSNA's ``class`` text -> the category (a key of `CATEGORY_DESCRIPTIONS`)."""
RSNA_CATEGORIES: tuple[str, ...] = ("normal", "not_normal", "lung_opacity")
RSNA_EXTRA_FEATURES = {"boxes": List(List(Value("float32"), length=4))}
"""The column this builder adds to `public_features` (age and sex are shared columns)."""
SITE = "NIH Clinical Center"
"""Where the images were taken: RSNA's challenge images are NIH ChestX-ray14 films."""

SEXES = ("M", "F", "O")
HEADER_KEYWORDS = ("PatientID", "PatientAge", "PatientSex", "ViewPosition")
"""The only DICOM elements read; names and dates are never read."""
OLDEST_AGE_KEPT = 90
"""Ages at or above it are kept as it (HIPAA Safe Harbor: ages over 89 are identifying)."""
PLAUSIBLE_AGE = 120
_AGE = re.compile(r"^(?P<number>\d{1,3})\s*(?P<unit>[DWMY]?)$", re.IGNORECASE)
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25, "": 365.25}


def rsna_age_years(text: str) -> float | None:
    """Age in years from a DICOM Age String (``"062Y"``, ``"18M"``) or a bare number (``"62"``).

    Returns:
        The age, or None for an empty, malformed or implausible (over 120 years) value.
    """
    match = _AGE.match(text.strip())
    if match is None:
        return None
    years = int(match["number"]) * _DAYS_PER_UNIT[match["unit"].upper()] / 365.25
    return years if years <= PLAUSIBLE_AGE else None


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (its ``stage_2_train_labels.csv``)."""
    return (folder / LABELS_FILE).is_file()


def _read_labels(root: Path) -> tuple[dict[str, list[list[float]]], dict[str, str]]:
    """Boxes per patientId (every labelled id, empty list where none) and class per patientId.

    Raises:
        ValueError: A column is missing, a Target is not 0/1, a box not numeric, a class unknown
            or given twice differently, naming the file and line.
    """
    labels_path, class_path = root / LABELS_FILE, root / CLASS_FILE
    boxes: dict[str, list[list[float]]] = {}
    for line, row in enumerate(read_csv_rows(labels_path, LABEL_COLUMNS), start=2):
        patient_boxes = boxes.setdefault(row["patientId"], [])
        if row["Target"] == "1":
            try:
                patient_boxes.append([float(row[name]) for name in BOX_COLUMNS])
            except ValueError:
                raise ValueError(
                    f"'{labels_path}' line {line}: Target 1 needs numbers in "
                    f"{', '.join(BOX_COLUMNS)}, got {[row[name] for name in BOX_COLUMNS]}"
                ) from None
        elif row["Target"] != "0":
            raise ValueError(
                f"'{labels_path}' line {line}: Target must be 0 or 1, got {row['Target']!r}"
            )
    classes: dict[str, str] = {}
    for line, row in enumerate(read_csv_rows(class_path, CLASS_COLUMNS), start=2):
        if row["class"] not in RSNA_CLASSES:
            raise ValueError(
                f"'{class_path}' line {line}: unknown class {row['class']!r}, expected one of "
                f"{list(RSNA_CLASSES)}"
            )
        if classes.setdefault(row["patientId"], row["class"]) != row["class"]:
            raise ValueError(
                f"'{class_path}' line {line}: patientId {row['patientId']!r} has the classes "
                f"{classes[row['patientId']]!r} and {row['class']!r}"
            )
    return boxes, classes


def _rsna_header(path: Path) -> dict[str, str]:
    """The DICOM elements `HEADER_KEYWORDS` of one file (what the scan cache keeps)."""
    return read_dicom_header(path, HEADER_KEYWORDS)


def scan_rsna(
    root: str | Path,
    *,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label the RSNA collection (see `build_rsna_dataset`)."""
    root = locate_collection(root, FOLDER_NAMES, is_collection, f"{TITLE} ('{LABELS_FILE}')")
    boxes, classes = _read_labels(root)
    image_folder = root / IMAGE_FOLDER
    if not image_folder.is_dir():
        raise FileNotFoundError(f"{TITLE}: the image folder '{image_folder}' does not exist")
    files = {path.stem: path for path in list_folder(image_folder)[0]}
    excluded: Counter[str] = Counter()
    absent: list[str] = []
    candidates: list[tuple[Path, str]] = []
    for patient in sorted(boxes):
        if patient not in classes:
            excluded[f"in {LABELS_FILE} but not in {CLASS_FILE}"] += 1
        elif patient not in files:
            absent.append(f"{patient}.dcm")
        else:
            candidates.append((files[patient], patient))
    if unclassed := len(classes.keys() - boxes.keys()):
        excluded[f"in {CLASS_FILE} but not in {LABELS_FILE}"] += unclassed
    if unlisted := len(files.keys() - boxes.keys()):
        excluded[f"in {IMAGE_FOLDER}/ but not in {LABELS_FILE}"] += unlisted
    notes = [
        "RSNA: a patientId names an image, not a person: one person's follow-ups can sit in two "
        "splits (NIH's patient ids are not in this collection)."
    ]
    if absent:
        excluded[f"listed in {LABELS_FILE} but absent from {IMAGE_FOLDER}/"] = len(absent)
        notes.append(absent_files_note("RSNA", LABELS_FILE, f"{IMAGE_FOLDER}/", absent))
        logger.warning("%s", notes[-1])

    cache = DatasetCache(root, cache_dir)
    infos, skipped = inspect_files(
        cache,
        root,
        [path for path, _ in candidates],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
    )
    images = []
    without_patient = implausible_age = disagreeing = 0
    for (path, patient), info in zip(candidates, infos, strict=True):
        if info.error is not None:
            continue
        header = cache.parsed(path, _rsna_header)
        years = rsna_age_years(header["PatientAge"])
        implausible_age += years is None and header["PatientAge"] != ""
        without_patient += not header["PatientID"]
        category = RSNA_CLASSES[classes[patient]]
        disagreeing += (category == "lung_opacity") != bool(boxes[patient])
        image = make_public_image(
            info,
            None,
            cache,
            source=SOURCE,
            category=category,
            finding=classes[patient],
            modality=XRAY,
            patient_id=header["PatientID"] or None,
            view=header["ViewPosition"],
            license=LICENSE,
            age_group=age_group_of(years),
            age=None if years is None else float(min(int(years), OLDEST_AGE_KEPT)),
            sex=sex if (sex := header["PatientSex"].upper()) in SEXES else "",
            site=SITE,
            extra={"boxes": boxes[patient]},
        )
        images.append(image)
    if without_patient:
        notes.append(
            f"RSNA: {without_patient} DICOM file(s) have no PatientID; each is its own patient."
        )
    if implausible_age:
        notes.append(
            f"RSNA: {implausible_age} header age(s) are malformed or over {PLAUSIBLE_AGE} years "
            "and were taken as unknown."
        )
    if disagreeing:
        notes.append(
            f"RSNA: {disagreeing} image(s) have a class that disagrees with Target in "
            f"{LABELS_FILE} (class kept, boxes as listed)."
        )
    scan = CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=RSNA_CATEGORIES,
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="patient_id (DICOM PatientID: one image each in this collection)",
        notes=notes,
        extra_features=dict(RSNA_EXTRA_FEATURES),
    )
    return scan


def build_rsna_dataset(
    root: str | Path,
    *,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build patient-grouped train/validation/test splits of the RSNA pneumonia X-rays.

    Args:
        root: The unzipped Kaggle folder (holding ``stage_2_train_labels.csv``), or a folder
            holding it as ``rsna/``, ``rsna-pneumonia-detection-challenge/`` or
            ``rsna_pneumonia/``.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicate images (perceptual hash) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache, the headers read and the PNG copies go; never inside
            ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the columns of `public_features` and `RSNA_EXTRA_FEATURES`, labels
        `RSNA_CATEGORIES`; listed files that are absent are counted and named in the build
        summary, as are DICOMs without PatientID.

    Raises:
        ValueError: A label file lacks a column or holds a malformed row (naming the file).
        FileNotFoundError: The collection, a label file or the image folder is missing.
    """
    scan = scan_rsna(
        root, skip_bad_images=skip_bad_images, cache_dir=cache_dir, num_threads=num_threads
    )
    return build_collection_dataset(
        scan, split_ratios=split_ratios, seed=seed, deduplicate=deduplicate
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_rsna(root, **options.file_options)


DOWNLOAD = DownloadSource(
    folder="rsna",
    instructions=(
        "The RSNA Pneumonia Detection Challenge data is behind a Kaggle login and the "
        "competition's rules:\n"
        "  1. sign in at https://www.kaggle.com and accept the rules at "
        "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/rules\n"
        "  2. download it, in the browser (Data tab) or with the Kaggle client:\n"
        "       kaggle competitions download -c rsna-pneumonia-detection-challenge\n"
        "     (the RSNA also offers it, with its terms of use, at "
        "https://www.rsna.org/education/ai-resources-and-training/ai-image-challenge/"
        "rsna-pneumonia-detection-challenge-2018)\n"
        "  3. unzip it into {root}/rsna/ so that these exist:\n"
        "       {root}/rsna/stage_2_train_labels.csv\n"
        "       {root}/rsna/stage_2_detailed_class_info.csv\n"
        "       {root}/rsna/stage_2_train_images/<patientId>.dcm"
    ),
)

COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license=LICENSE,
    categories=RSNA_CATEGORIES,
    modalities=(XRAY,),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_rsna_dataset,
    summary="26,684 NIH frontal X-rays re-read by radiologists: normal, not normal, lung opacity "
    "with boxes; one image per patientId",
    download=DOWNLOAD,
)
