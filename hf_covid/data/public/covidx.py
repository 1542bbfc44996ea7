"""COVIDx CXR, COVID-Net's benchmark, with its published patient split, as a `DatasetDict`.

Source: Wang, Lin and Wong, "COVID-Net: a tailored deep convolutional neural network design for
detection of COVID-19 cases from chest X-ray images", Scientific Reports 10:19549 (2020);
https://github.com/lindawangg/COVID-Net (``docs/COVIDx.md``, label files in ``labels/``). COVIDx
is not a collection of its own but a fixed selection, by patient, from others: ieee8023
(``cohen``), Figure1 (``fig1``), Actualmed (``actmed``), the COVID-19 Radiography Database's SIRM
images (``sirm``), RSNA (``rsna``) and, in later versions, RICORD (``ricord``), BIMCV and
Stony Brook. Its label files list one image per line::

    <patient id> <file name> <class> [<data source>]

with the class ``normal``, ``pneumonia`` or ``COVID-19`` (COVIDx up to 5, the A versions),
``positive`` or ``negative`` (the B versions from COVIDx7B, the Kaggle COVIDx CXR downloads), or
``viral`` / ``bacteria`` (the first version, which has no data source field). Layout (the Kaggle download ``andyczhao/covidx-cxr2``, or what
COVID-Net's scripts write)::

    <root>/train.txt, test.txt [, val.txt]     or train_COVIDx9A.txt, train_split.txt, ...,
                                               also in <root>/labels/
    <root>/train/<file name>, test/<file name> [, val/<file name>]   (or <root>/data/train/, ...)

Licence: none of its own; every image keeps its source's (ieee8023 per image, RSNA's terms, ...),
and several sources are behind a login (``hf-covid download covidx`` says where to get them).

Classes (`COVIDX_CATEGORIES`, only those the label files use, in this order): normal, pneumonia
(COVIDx's non-COVID-19 pneumonia), viral, bacterial, non_covid (``negative``) and covid
(``COVID-19``, ``positive``). The split is COVID-Net's, exactly: every image in the split its
label file names (``use_official_split``); COVID-Net publishes no validation list before CXR-4,
so the validation split is carved from its train list by patient (``validation_fraction``),
leaving its test split untouched. ``patient_id`` is COVIDx's, and ``data_source`` (a column of
this builder only) the upstream source of each image. A listed file the folders do not hold is
counted and named in the build summary, never dropped silently.

What is wrong with it: COVID-19 images and controls come from different sources (COVID-19 from
paper figures, SIRM and RICORD; normal and pneumonia almost all from RSNA, i.e. NIH), so the
source confounds the class; the test split of COVIDx 3-5 holds only 100 images per class, which
makes the published sensitivities coarse (one image is 1%); the test split changed over the
versions, so a number is only comparable on the same label files; a patient id in both the train
and the test list would leak, and the summary counts any. COVID-Net's published numbers for its
test split are among the study's published anchors.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetDict, Value

from ..io import DatasetCache, list_folder
from ..splits import SPLIT_NAMES, plan_splits
from .common import (
    XRAY,
    CollectionScan,
    build_collection_dataset,
    inspect_files,
    locate_collection,
    make_public_image,
)
from .records import DownloadSource, PublicCollection, ScanOptions
from .tables import absent_files_note

__all__ = [
    "COVIDX_CATEGORIES",
    "COVIDX_CLASSES",
    "CovidxLine",
    "build_covidx_dataset",
    "find_covidx_label_files",
    "read_covidx_label_file",
    "scan_covidx",
]

logger = logging.getLogger(__name__)

SOURCE = "covidx"
TITLE = "COVIDx CXR (COVID-Net's benchmark)"
URL = "https://github.com/lindawangg/COVID-Net/blob/master/docs/COVIDx.md"
FOLDER_NAMES = ("covidx", "COVIDx", "covidx-cxr2", "covidx_cxr")
COVIDX_CLASSES: dict[str, str] = {
    "normal": "normal",
    "pneumonia": "pneumonia",
    "viral": "viral",
    "bacteria": "bacterial",
    "negative": "non_covid",
    "covid-19": "covid",
    "positive": "covid",
}
"""A label file's class (lower case) -> the category (a key of `CATEGORY_DESCRIPTIONS`)."""
COVIDX_CATEGORIES: tuple[str, ...] = (
    "normal",
    "pneumonia",
    "viral",
    "bacterial",
    "non_covid",
    "covid",
)
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}
"""Split name -> the prefix of its label file and the name of its image folder."""
LABEL_FOLDERS = ("", "labels")
IMAGE_BASES = ("", "data")
EXTRA_FEATURES = {"data_source": Value("string")}
DEFAULT_VALIDATION_FRACTION = 0.1
_LABEL_FILE = re.compile(r"^(?P<prefix>train|val|test)(?:_[^/]*)?\.txt$", re.IGNORECASE)


@dataclass(frozen=True)
class CovidxLine:
    """One line of a COVIDx label file.

    Attributes:
        patient_id: COVIDx's patient id (first field).
        file_name: The image's file name (may hold spaces).
        label: The class as written (``"COVID-19"``, ``"positive"``).
        data_source: The upstream source (``"cohen"``, ``"rsna"``), "" in the first version.
        line: Line number in the file, for messages.
    """

    patient_id: str
    file_name: str
    label: str
    data_source: str
    line: int


def read_covidx_label_file(path: Path) -> list[CovidxLine]:
    """The lines of a COVIDx label file, blank lines skipped.

    The class is the last field that is a known class (`COVIDX_CLASSES`), at the third field or
    later; what lies between the patient id and it is the file name, what follows the source.

    Raises:
        ValueError: A line without a patient id, a file name and a known class, naming the file,
            the line and the format expected.
    """
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        known = [i for i in range(2, len(fields)) if fields[i].lower() in COVIDX_CLASSES]
        if not known:
            raise ValueError(
                f"'{path}' line {number}: expected '<patient id> <file name> <class> "
                f"[<data source>]' with a class of {sorted(set(COVIDX_CLASSES))}, got {text!r}"
            )
        position = known[-1]
        lines.append(
            CovidxLine(
                patient_id=fields[0],
                file_name=" ".join(fields[1:position]),
                label=fields[position],
                data_source=" ".join(fields[position + 1 :]),
                line=number,
            )
        )
    return lines


def find_covidx_label_files(folder: Path) -> dict[str, Path]:
    """The label file of every split found in ``folder`` or ``folder/labels``.

    Raises:
        ValueError: Two or more label files for one split (e.g. ``train_COVIDx9A.txt`` and
            ``train_COVIDx9B.txt``), naming them and how to choose.
    """
    found: dict[str, list[Path]] = {}
    for sub in LABEL_FOLDERS:
        if not (folder / sub).is_dir():
            continue
        for path in list_folder(folder / sub)[0]:
            match = _LABEL_FILE.match(path.name)
            if match:
                split = next(s for s, p in SPLIT_FOLDERS.items() if p == match["prefix"].lower())
                found.setdefault(split, []).append(path)
    several = {split: paths for split, paths in found.items() if len(paths) > 1}
    if several:
        listed = "; ".join(
            f"{split}: {', '.join(p.name for p in paths)}" for split, paths in several.items()
        )
        raise ValueError(
            f"{TITLE}: several label files for one split in '{folder}' ({listed}); choose one "
            "per split with label_files={'train': ..., 'test': ...}"
        )
    return {split: paths[0] for split, paths in found.items()}


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (a train and a test label file)."""
    try:
        return {"train", "test"} <= find_covidx_label_files(folder).keys()
    except ValueError:  # several label files per split: a COVIDx folder all the same
        return True


def _image_folder(root: Path, split: str) -> Path:
    """The image folder of ``split``: ``<root>/<split>/`` or ``<root>/data/<split>/``."""
    candidates = [root / base / SPLIT_FOLDERS[split] for base in IMAGE_BASES]
    return next((folder for folder in candidates if folder.is_dir()), candidates[0])


def _carve_validation(
    train: Sequence[tuple[CovidxLine, str]], fraction: float, seed: int
) -> list[int]:
    """Split index (0 train, 1 validation) of every train image, by COVIDx patient."""
    if fraction <= 0 or not train:
        return [0] * len(train)
    plan = plan_splits(
        [COVIDX_CATEGORIES.index(category) for _, category in train],
        group_keys=[line.patient_id for line, _ in train],
        split_ratios=(1.0 - fraction, fraction, 0.0),
        seed=seed,
    )
    return plan.split_of_item


def _scan(
    root: str | Path,
    *,
    label_files: Mapping[str, str | Path] | None,
    validation_fraction: float,
    seed: int,
    skip_bad_images: bool,
    cache_dir: str | Path | None,
    num_threads: int | None,
) -> tuple[CollectionScan, dict[str, dict[str, object]]]:
    """The scan (with its split in ``official_split``), and each image's data source."""
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if label_files is None:
        root = locate_collection(
            root, FOLDER_NAMES, is_collection, f"{TITLE} (train and test label files)"
        )
        files = find_covidx_label_files(root)
    else:
        root = Path(root).expanduser().resolve()
        files = {("validation" if s == "val" else s): Path(p) for s, p in label_files.items()}
        unknown = sorted(files.keys() - SPLIT_FOLDERS.keys())
        if unknown:
            raise ValueError(f"label_files: unknown split(s) {unknown}; use {list(SPLIT_FOLDERS)}")
    if not {"train", "test"} <= files.keys():
        raise FileNotFoundError(
            f"{TITLE}: need a train and a test label file in '{root}', found {sorted(files)}"
        )

    excluded: Counter[str] = Counter()
    notes: list[str] = []
    listed: dict[str, list[tuple[CovidxLine, str, Path]]] = {}
    for split in (name for name in SPLIT_NAMES if name in files):
        label_file, folder = files[split], _image_folder(root, split)
        present = {path.name: path for path in list_folder(folder)[0]} if folder.is_dir() else {}
        seen: set[str] = set()
        absent: list[str] = []
        source_of: dict[str, str] = {}
        for line in read_covidx_label_file(label_file):
            if line.file_name in seen:
                excluded[f"listed twice in {label_file.name}"] += 1
                continue
            seen.add(line.file_name)
            source_of[line.file_name] = line.data_source
            if line.file_name not in present:
                absent.append(line.file_name)
                continue
            category = COVIDX_CLASSES[line.label.lower()]
            listed.setdefault(split, []).append((line, category, present[line.file_name]))
        if absent:
            where = f"{folder.relative_to(root).as_posix()}/"
            excluded[f"listed in {label_file.name} but absent from {where}"] = len(absent)
            notes.append(absent_files_note("COVIDx", label_file.name, where, absent, source_of))
            logger.warning("%s", notes[-1])
        if unlisted := len(present.keys() - seen):
            excluded[f"in {folder.name}/ but not in {label_file.name}"] += unlisted

    patients = {split: {line.patient_id for line, *_ in items} for split, items in listed.items()}
    if shared := patients.get("train", set()) & patients.get("test", set()):
        notes.append(
            f"COVIDx: {len(shared)} patient id(s) appear in both the train and the test label "
            "files (COVID-Net's split, kept as published)."
        )
    if "validation" not in files:
        train = listed.get("train", [])
        carved = _carve_validation([(line, c) for line, c, _ in train], validation_fraction, seed)
        listed["train"] = [item for item, split in zip(train, carved, strict=True) if split == 0]
        listed["validation"] = [item for item, split in zip(train, carved, strict=True) if split]
        notes.append(
            f"COVIDx: no validation list; {len(listed['validation'])} train image(s) of "
            f"{len({line.patient_id for line, *_ in listed['validation']})} patient(s) "
            f"(validation_fraction={validation_fraction}, seed {seed}) form the validation "
            "split, COVID-Net's test split is unchanged."
        )

    items = [(split, *item) for split in SPLIT_NAMES for item in listed.get(split, [])]
    cache = DatasetCache(root, cache_dir)
    infos, skipped = inspect_files(
        cache,
        root,
        [path for *_, path in items],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
    )
    images, official_split = [], {}
    for (split, line, category, _), info in zip(items, infos, strict=True):
        if info.error is not None:
            continue
        image = make_public_image(
            info,
            None,
            cache,
            source=SOURCE,
            category=category,
            finding=line.label,
            modality=XRAY,
            patient_id=line.patient_id,
            view="",
            license="",
            age_group="",
            extra={"data_source": line.data_source},
        )
        images.append(image)
        official_split[image.image_id] = split
    notes.append(
        "COVIDx: no licence of its own; each image keeps its source's (see data_source); "
        "sources confound the classes (COVID-19 and controls come from different collections)."
    )
    present_categories = {image.category for image in images}
    scan = CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=tuple(c for c in COVIDX_CATEGORIES if c in present_categories),
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="COVIDx patient id (COVID-Net's label files)",
        notes=notes,
        official_split=official_split,
        extra_features=dict(EXTRA_FEATURES),
    )
    return scan


def scan_covidx(
    root: str | Path,
    *,
    label_files: Mapping[str, str | Path] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 42,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label COVIDx with its split (see `build_covidx_dataset`)."""
    return _scan(
        root,
        label_files=label_files,
        validation_fraction=validation_fraction,
        seed=seed,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )


def build_covidx_dataset(
    root: str | Path,
    *,
    label_files: Mapping[str, str | Path] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build COVIDx's train/validation/test splits exactly as its label files give them.

    Args:
        root: The COVIDx folder (label files and ``train/``, ``test/``), or a folder holding it
            as ``covidx/``, ``COVIDx/``, ``covidx-cxr2/`` or ``covidx_cxr/``.
        label_files: Split (``train``, ``validation`` or ``val``, ``test``) -> label file, where
            the folder holds several versions (``train_COVIDx9A.txt`` and ``..9B.txt``); then
            ``root`` is the COVIDx folder itself.
        validation_fraction: Share of the train list's patients that form the validation split
            when there is no validation list (0 keeps COVID-Net's train list whole).
        seed: Seed of that validation carve-out.
        deduplicate: Count near-duplicates across the fixed splits (perceptual hash).
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache goes; never inside ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the columns of `public_features` plus ``data_source``; labels the
        `COVIDX_CATEGORIES` the label files use. Listed files that are absent are counted in
        ``ignored_files`` and named in the notes of the build summary.

    Raises:
        ValueError: A malformed label line, or several label files for a split (naming them).
        FileNotFoundError: No train or no test label file.
    """
    scan = _scan(
        root,
        label_files=label_files,
        validation_fraction=validation_fraction,
        seed=seed,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    split_counts = Counter((scan.official_split or {}).values())
    total = max(sum(split_counts.values()), 1)
    ratios = [split_counts[name] / total for name in SPLIT_NAMES]
    return build_collection_dataset(
        scan,
        split_ratios=ratios if ratios[0] > 0 else (1.0, 0.0, 0.0),
        seed=seed,
        deduplicate=deduplicate,
        use_official_split=True,
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_covidx(root, **options.file_options)


DOWNLOAD = DownloadSource(
    folder="covidx",
    instructions=(
        "COVIDx CXR is on Kaggle, behind a login:\n"
        "  1. sign in at https://www.kaggle.com and download the data set "
        "https://www.kaggle.com/datasets/andyczhao/covidx-cxr2\n"
        "       kaggle datasets download -d andyczhao/covidx-cxr2\n"
        "  2. unzip it into {root}/covidx/ so that {root}/covidx/train.txt, "
        "{root}/covidx/test.txt, {root}/covidx/train/ and {root}/covidx/test/ exist\n"
        "     (older versions: COVID-Net's label files, e.g. labels/train_COVIDx9A.txt, with the "
        "images in {root}/covidx/data/train/ and data/test/)\n"
        "Or build it with COVID-Net's scripts (https://github.com/lindawangg/COVID-Net, "
        "docs/COVIDx.md) from its sources: ieee8023 and Figure1 and Actualmed (GitHub), the "
        "COVID-19 Radiography Database and RSNA (Kaggle, login), RICORD (TCIA) and BIMCV "
        "(registration). Listed files you do not have are counted and named when it is built."
    ),
)

COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license="none of its own: each image keeps its source's (ieee8023, RSNA, SIRM, RICORD, ...)",
    categories=COVIDX_CATEGORIES,
    modalities=(XRAY,),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_covidx_dataset,
    summary="COVID-Net's benchmark: a fixed patient split of X-rays from ieee8023, Figure1, "
    "Actualmed, SIRM, RSNA, RICORD, ...; the source confounds the class",
    download=DOWNLOAD,
)
