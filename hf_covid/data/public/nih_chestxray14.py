"""NIH ChestX-ray14 (adult and pediatric frontal X-rays of the NIH Clinical Center) as a `DatasetDict`.

Source: Wang, Peng, Lu, Lu, Bagheri and Summers, "ChestX-ray8: Hospital-scale Chest X-ray
Database and Benchmarks", CVPR 2017; https://nihcc.app.box.com/v/ChestXray-NIHCC (112,120
frontal X-rays of 30,805 patients). Licence: no restriction on use; cite the paper and
acknowledge the NIH Clinical Center. Expert labels: Majkowska et al., "Chest Radiograph
Interpretation with Deep Learning Models", Radiology 2019 (Google's re-reading of a subset for
four findings). Layout, as NIH publishes it::

    <root>/Data_Entry_2017_v2020.csv     Image Index, Finding Labels, Follow-up #, Patient ID,
                                         Patient Age, Patient Gender, View Position, ...
                                         (or the older Data_Entry_2017.csv)
    <root>/images/00000001_000.png       all images in one folder, or the official archives
    <root>/images_001/images/*.png       ... images_012/images/*.png unpacked side by side
    <root>/train_val_list.txt            optional: the official patient-wise split lists
    <root>/test_list.txt
    <root>/google2019_nih-chest-xray-labels.csv   optional: Google's 2019 expert labels
                                                  (Fracture, Pneumothorax, Airspace opacity,
                                                  Nodule or mass), as torchxrayvision ships it

Columns: the shared public columns (``patient_id`` from ``Patient ID``, ``age`` in years and
``age_group``, ``sex``, ``view`` PA / AP, ``site`` "NIH Clinical Center") plus ``follow_up``
(NIH's follow-up number), ``findings`` (the 14 findings and ``No Finding``, as a list) and, where
Google's file is present, ``expert_<finding>`` ("YES", "NO", None when not re-read). Label
mapping (`NIH_CATEGORIES`, stated in the build summary): ``No Finding`` -> normal; ``Pneumonia``
among the findings -> pneumonia; any other finding -> other.

What is wrong with it: the findings are mined from the radiology reports by NLP, not read from
the images (Google's re-reading disagrees often: of the images it covers, many ``Pneumonia``
images show no airspace opacity); ``Pneumonia`` is unspecified adult pneumonia, mostly with other
findings, not viral pneumonia. One hospital for every image. Many images are follow-ups of one
patient (split by patient, never by image). View (AP vs PA) differs by finding (bed-side AP films
for the sicker patients) and can become a shortcut; report it per class. Some ages in the 2017
table are impossible (over 120): they are counted and treated as unknown.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict, Value
from datasets import Sequence as SequenceFeature

from ..io import DatasetCache, list_folder
from ..splits import DEFAULT_SPLIT_RATIOS, SPLIT_NAMES, plan_splits, validate_split_ratios
from .common import (
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
)
from .licenses import NIH_CHESTXRAY14_LICENSE
from .records import DownloadFile, DownloadSource, PublicCollection, ScanOptions
from .tables import read_csv_rows

__all__ = [
    "EXPERT_FINDINGS",
    "NIH_CATEGORIES",
    "NIH_FINDINGS",
    "build_nih_chestxray14_dataset",
    "nih_category",
    "scan_nih_chestxray14",
]

logger = logging.getLogger(__name__)

SOURCE = "nih_chestxray14"
TITLE = "NIH ChestX-ray14 (NIH Clinical Center)"
URL = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
LICENSE = NIH_CHESTXRAY14_LICENSE
SITE = "NIH Clinical Center"
FOLDER_NAMES = ("nih_chestxray14", "ChestX-ray14", "chestxray14", "nih")
TABLE_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
EXPERT_TABLE_NAMES = ("google2019_nih-chest-xray-labels.csv",)
SPLIT_LISTS = {"train_val_list.txt": "train_val", "test_list.txt": "test"}
REQUIRED_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
)
NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
"""The 14 text-mined findings; an image with none of them is ``No Finding``."""
NO_FINDING = "No Finding"
NIH_CATEGORIES: tuple[str, ...] = ("normal", "pneumonia", "other")
EXPERT_FINDINGS: tuple[str, ...] = (
    "Fracture",
    "Pneumothorax",
    "Airspace opacity",
    "Nodule or mass",
)
"""The findings Google's 2019 expert panel re-read (columns ``expert_<snake case>``)."""
VIEWS = ("PA", "AP")
_SEXES = {"M": "M", "F": "F"}


def nih_category(findings: Sequence[str]) -> str:
    """The category of an image's findings: normal, pneumonia or other (see the module doc)."""
    if list(findings) == [NO_FINDING]:
        return "normal"
    return "pneumonia" if "Pneumonia" in findings else "other"


def _expert_column(finding: str) -> str:
    return "expert_" + finding.lower().replace(" ", "_")


def _find_table(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / name for name in names if (root / name).is_file()), None)


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (NIH's ``Data_Entry`` table)."""
    return _find_table(folder, TABLE_NAMES) is not None


def _image_files(root: Path) -> dict[str, Path]:
    """File name -> path of every image in ``images/`` and ``images_*/images/`` (or
    ``images_*/`` when an archive was unpacked without its inner folder)."""
    folders = [root / "images"] if (root / "images").is_dir() else []
    for folder in list_folder(root)[1]:
        if folder.name.startswith("images_"):
            inner = folder / "images"
            folders.append(inner if inner.is_dir() else folder)
    files: dict[str, Path] = {}
    for folder in folders:
        for path in list_folder(folder)[0]:
            files.setdefault(path.name, path)
    return files


def _official_split(root: Path) -> dict[str, str] | None:
    """Image name -> ``"train_val"`` or ``"test"`` from NIH's split lists, when both exist."""
    if not all((root / name).is_file() for name in SPLIT_LISTS):
        return None
    split_of: dict[str, str] = {}
    for name, split in SPLIT_LISTS.items():
        for line in (root / name).read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                split_of[line.strip()] = split
    return split_of


def _expert_labels(root: Path) -> dict[str, dict[str, str]]:
    path = _find_table(root, EXPERT_TABLE_NAMES)
    if path is None:
        return {}
    rows = read_csv_rows(path, ("Image Index", *EXPERT_FINDINGS))
    return {row["Image Index"]: {f: row[f] for f in EXPERT_FINDINGS} for row in rows}


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def scan_nih_chestxray14(
    root: str | Path,
    *,
    views: Sequence[str] = VIEWS,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label NIH ChestX-ray14 (see `build_nih_chestxray14_dataset`).

    Raises:
        FileNotFoundError: no ``Data_Entry`` table in or below ``root`` (the message lists the
            folders looked at and the table names).
        ValueError: the table (or Google's) lacks a column; the message names file and column.
    """
    root = locate_collection(
        root, FOLDER_NAMES, is_collection, f"{TITLE} ({' or '.join(TABLE_NAMES)})"
    )
    table = _find_table(root, TABLE_NAMES)
    rows = read_csv_rows(table, REQUIRED_COLUMNS)
    files = _image_files(root)
    experts = _expert_labels(root)
    official = _official_split(root)
    cache = DatasetCache(root, cache_dir)

    excluded: Counter[str] = Counter()
    problems_by_kind: Counter[str] = Counter()
    absent: list[str] = []
    selected: list[dict[str, str]] = []
    listed_names = set()
    for row in rows:
        name = row["Image Index"]
        listed_names.add(name)
        if name not in files:
            absent.append(name)
        elif row["View Position"] not in views:
            excluded[f"view '{row['View Position'] or 'blank'}' not in {list(views)}"] += 1
        else:
            selected.append(row)
    unlisted = sorted(set(files) - listed_names)
    notes = [
        f"{TITLE}: labels from {table.name}, text-mined from the reports (NLP), not read from "
        "the images; label mapping: 'No Finding' -> normal, 'Pneumonia' among the findings -> "
        "pneumonia, any other finding -> other."
    ]
    if absent:
        excluded[f"listed in {table.name} but absent from the image folders"] += len(absent)
        notes.append(
            f"{TITLE}: {len(absent)} image(s) listed in {table.name} are not in the image "
            f"folders ({_listed(absent)}); expected when only some of NIH's archives are "
            "unpacked."
        )
    if unlisted:
        excluded[f"in the image folders but not in {table.name}"] += len(unlisted)
        notes.append(
            f"{TITLE}: {len(unlisted)} image file(s) not listed in {table.name} were left out "
            f"({_listed(unlisted)})."
        )
        logger.warning("%s: %d image(s) not in %s left out", TITLE, len(unlisted), table.name)

    infos, skipped = inspect_files(
        cache,
        root,
        [files[row["Image Index"]] for row in selected],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
    )
    images: list[PublicImage] = []
    for row, info in zip(selected, infos, strict=True):
        if info.error is not None:
            continue
        findings = [f for f in row["Finding Labels"].split("|") if f]
        age, problem = parse_age(row["Patient Age"])
        if problem:
            problems_by_kind[problem] += 1
        expert = experts.get(row["Image Index"])
        extra: dict[str, object] = {
            "follow_up": int(row["Follow-up #"]) if row["Follow-up #"].isdigit() else None,
            "findings": findings,
        }
        for finding in EXPERT_FINDINGS if experts else ():
            extra[_expert_column(finding)] = expert[finding] if expert else None
        images.append(
            make_public_image(
                info,
                None,
                cache,
                source=SOURCE,
                category=nih_category(findings),
                finding=row["Finding Labels"],
                modality=XRAY,
                patient_id=row["Patient ID"] or None,
                view=row["View Position"],
                license=LICENSE,
                age_group=age_group_of(age),
                age=age,
                sex=_SEXES.get(row["Patient Gender"].upper(), ""),
                site=SITE,
                extra=extra,
            )
        )
    notes += age_problem_notes(SOURCE, problems_by_kind)
    if experts:
        covered = sum(image.image_id.rsplit("/", 1)[-1] in experts for image in images)
        notes.append(
            f"{TITLE}: {covered} image(s) have Google's 2019 expert labels "
            f"({', '.join(EXPERT_FINDINGS)})."
        )
    extra_features = {"follow_up": Value("int32"), "findings": SequenceFeature(Value("string"))}
    if experts:
        extra_features |= {_expert_column(f): Value("string") for f in EXPERT_FINDINGS}
    return CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=NIH_CATEGORIES,
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="patient_id (NIH's Patient ID: follow-ups together)",
        notes=notes,
        official_split=(
            {
                image.image_id: official.get(image.image_id.rsplit("/", 1)[-1], "")
                for image in images
            }
            if official
            else None
        ),
        extra_features=extra_features,
    )


def _official_split_names(
    scan: CollectionScan, split_ratios: Sequence[float], seed: int
) -> list[str]:
    """A split name per image: NIH's test list is the test split; its train/validation list is
    split by patient into train and validation in the ratio of ``split_ratios``."""
    train, validation, _ = validate_split_ratios(split_ratios)
    unlisted = [image.image_id for image in scan.images if not scan.official_split[image.image_id]]
    if unlisted:
        raise ValueError(
            f"{TITLE}: {len(unlisted)} image(s) are in neither {' nor '.join(SPLIT_LISTS)} "
            f"({_listed(unlisted)}); pass use_official_split=False to plan a split instead"
        )
    train_val = [
        i for i, image in enumerate(scan.images) if scan.official_split[image.image_id] != "test"
    ]
    plan = plan_splits(
        [scan.categories.index(scan.images[i].category) for i in train_val],
        group_keys=[scan.images[i].group_key for i in train_val],
        split_ratios=(train / (train + validation), validation / (train + validation), 0.0),
        seed=seed,
    )
    names = ["test"] * len(scan.images)
    for position, index in enumerate(train_val):
        names[index] = SPLIT_NAMES[plan.split_of_item[position]]
    return names


def build_nih_chestxray14_dataset(
    root: str | Path,
    *,
    use_official_split: bool = True,
    views: Sequence[str] = VIEWS,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build patient-grouped train/validation/test splits of NIH ChestX-ray14.

    Args:
        root: The folder holding NIH's ``Data_Entry`` table and its images (``images/`` or the
            ``images_001/images/`` ... folders of the archives), or a folder holding it as
            ``nih_chestxray14/``.
        use_official_split: Where ``train_val_list.txt`` and ``test_list.txt`` are present, use
            NIH's test list as the test split and split its train/validation list by patient;
            otherwise, or without them, plan a patient-grouped split.
        views: Views kept (PA and AP: every NIH image is frontal).
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicate images (perceptual hash) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache goes; never inside ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the shared public columns, ``follow_up``, ``findings`` and, where
        Google's table is present, ``expert_<finding>``; labels `NIH_CATEGORIES`. Listed images
        that are absent and images the table does not list are counted (and named) in the build
        summary, never dropped silently.
    """
    scan = scan_nih_chestxray14(
        root,
        views=views,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    fixed_split = None
    if use_official_split and scan.official_split is not None:
        fixed_split = _official_split_names(scan, split_ratios, seed)
    return build_collection_dataset(
        scan,
        split_ratios=split_ratios,
        seed=seed,
        deduplicate=deduplicate,
        fixed_split=fixed_split,
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_nih_chestxray14(root, **options.file_options)


_NIH_ARCHIVES = (
    ("vfk49d74nhbxq3nqjg0900w5nvkorp5c", "fe8ed0a6961412fddcbb3603c11b3698"),
    ("i28rlmbvmfjbl8p2n3ril0pptcmcu9d1", "ab07a2d7cbe6f65ddd97b4ed7bde10bf"),
    ("f1t00wrtdk94satdfb9olcolqx20z2jp", "2301d03bde4c246388bad3876965d574"),
    ("0aowwzs5lhjrceb3qp67ahp0rd1l1etg", "9f1b7f5aae01b13f4bc8e2c44a4b8ef6"),
    ("v5e3goj22zr6h8tzualxfsqlqaygfbsn", "1861f3cd0ef7734df8104f2b0309023b"),
    ("asi7ikud9jwnkrnkj99jnpfkjdes7l6l", "456b53a8b351afd92a35bc41444c58c8"),
    ("jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", "1075121ea20a137b87f290d6a4a5965e"),
    ("tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j", "b61f34cec3aa69f295fbb593cbd9d443"),
    ("upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj", "442a3caa61ae9b64e61c561294d1e183"),
    ("l6nilvfa9cg3s28tqv1qc1olm3gnz54p", "09ec81c4c31e32858ad8cf965c494b74"),
    ("hhq8fkdgvcari67vfhs7ppg2w6ni4jze", "499aefc67207a5a97692424cf5dbeed5"),
    ("ioqwiy20ihqwyr8pf4c24eazhh281pbu", "dc9fda1757c2de0032b63347a7d2895c"),
)
"""NIH's Box links of ``images_001.tar.gz`` ... ``images_012.tar.gz`` (its ``batch_download_zips.py``)
and the MD5 sums NIH lists for them in the same Box folder."""
_TORCHXRAYVISION_COMMIT = "f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5"
DOWNLOAD = DownloadSource(
    folder="nih_chestxray14",
    files=(
        *(
            DownloadFile(
                url=f"https://nihcc.box.com/shared/static/{key}.gz",
                name=f"images_{number:03d}.tar.gz",
                checksum=f"md5:{md5}",
                target=f"images_{number:03d}",
            )
            for number, (key, md5) in enumerate(_NIH_ARCHIVES, start=1)
        ),
        # NIH serves its table only through the Box web page; torchxrayvision (Apache-2.0)
        # keeps NIH's file unchanged, gzipped.
        DownloadFile(
            url="https://raw.githubusercontent.com/mlmed/torchxrayvision/"
            f"{_TORCHXRAYVISION_COMMIT}/torchxrayvision/data/Data_Entry_2017_v2020.csv.gz",
            name="Data_Entry_2017_v2020.csv.gz",
        ),
    ),
    checksums="MD5 of each image archive as NIH lists them; none for the table (a GitHub "
    "file of a pinned commit); train_val_list.txt and test_list.txt are on NIH's Box page "
    "(https://nihcc.app.box.com/v/ChestXray-NIHCC) only: put them in the folder by hand",
)


COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license=LICENSE,
    categories=NIH_CATEGORIES,
    modalities=(XRAY,),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_nih_chestxray14_dataset,
    summary="frontal X-rays of adults and children from one US hospital; 14 text-mined findings "
    "and 'No Finding'; the adult controls of the study",
    download=DOWNLOAD,
)
