"""The Extensive COVID-19 X-Ray and CT Chest Images Dataset (Mendeley) as a `datasets.DatasetDict`.

Source: El-Shafai and Abd El-Samie, "Extensive COVID-19 X-Ray and CT Chest Images Dataset",
Mendeley Data 2020 (doi:10.17632/8h65ywd2jr.3). Layout::

    <root>/X-ray/COVID/*       <root>/X-ray/Non-COVID/*
    <root>/CT/COVID/*          <root>/CT/Non-COVID/*

(folder names matched case- and punctuation-insensitively: ``xray``, ``x_ray``, ``ct`` work),
JPEG and PNG of mixed sizes. What is wrong with it: there are no patient identifiers, so an X-ray
and a CT can only be paired by label ("label pairing": the same class, different people); most
images are augmented copies (flips, rotations, zoom, brightness) of a few originals, so
near-duplicates are kept in one split; Non-COVID mixes normal and other findings.

With ``pairing="patient"`` a metadata CSV (``file, modality, label, patient_id``; ``file``
relative to the root) names the patient of each image, and an X-ray is paired with a CT of the
same patient. Images are split before pairing (grouped by patient where known), so no image and
no patient is in two splits, and every description says which pairing was used.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import ClassLabel, DatasetDict, Features, Image, Value

from hf_covid.models.labels import BINARY_LABELS

from .io import (
    IGNORED_NESTED,
    IGNORED_UNKNOWN_TYPE,
    BadImagesError,
    DatasetCache,
    count_nested_files,
    is_image_candidate,
    list_folder,
    normalize_folder_name,
    raise_for_empty_classes,
    report_bad_input,
    report_ignored_files,
)
from .splits import (
    DEFAULT_SPLIT_RATIOS,
    SPLIT_NAMES,
    make_dataset_dict,
    plan_splits,
)
from .summary import DatasetBuildSummary
from .validation import DEFAULT_INPUT_POLICY, InputPolicy

__all__ = [
    "CLASS_FOLDERS",
    "DEFAULT_METADATA_FILE",
    "MODALITIES",
    "MODALITY_NAMES",
    "PAIRING_DESCRIPTIONS",
    "UNPAIRED",
    "build_xray_ct_dataset",
    "pair_by_split",
]

logger = logging.getLogger(__name__)

MODALITIES: tuple[str, str] = ("xray", "ct")
"""Modality keys, also the normalised folder names ("X-ray" -> "xray", "CT" -> "ct")."""
MODALITY_NAMES = {"xray": "X-ray", "ct": "CT"}
CLASS_FOLDERS = {normalize_folder_name(name): name for name in BINARY_LABELS}
DEFAULT_METADATA_FILE = "metadata.csv"
PAIRING_DESCRIPTIONS = {
    "label": "label-paired: X-ray and CT of the same class from different people",
    "patient": "patient-paired: X-ray and CT of the same patient (from the metadata file)",
}
UNPAIRED = "unpaired"
"""``pairing`` value of a row that holds one modality only (``keep_unpaired=True``)."""


def _read_patient_metadata(metadata_file: Path) -> dict[str, dict[str, str]]:
    """Map lower-cased relative path -> row (``file``, ``patient_id``, optional ``modality``, ``label``)."""
    with metadata_file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or ()}
        if "file" not in fields or "patient_id" not in fields:
            raise ValueError(
                f"metadata file '{metadata_file}' needs columns 'file' and 'patient_id', "
                f"found {reader.fieldnames}"
            )
        rows = {}
        for row in reader:
            entry = {key: (row[name] or "").strip() for key, name in fields.items()}
            rows[Path(entry["file"]).as_posix().lower()] = entry
    return rows


def _metadata_class(value: str) -> str:
    """Class name of a metadata label: a class name in any spelling, or its index ("1" = COVID)."""
    if value.isdigit() and int(value) < len(BINARY_LABELS):
        return BINARY_LABELS[int(value)]
    return CLASS_FOLDERS.get(normalize_folder_name(value), value)


def _discover(
    root: Path, ignored: Counter
) -> tuple[list[tuple[Path, str, str]], list[tuple[str, str]]]:
    """Find ``(file, modality, class name)`` candidates and folder problems.

    Files in nested folders and of unknown type are counted in ``ignored``.
    """
    try:
        _, root_folders = list_folder(root)
    except OSError as error:
        raise BadImagesError(root, [(str(root), f"unreadable folder ({error})")]) from None
    modality_folders = {
        normalize_folder_name(folder.name): folder
        for folder in root_folders
        if normalize_folder_name(folder.name) in MODALITIES
    }
    missing = [MODALITY_NAMES[key] for key in MODALITIES if key not in modality_folders]
    if missing:
        raise FileNotFoundError(
            f"modality folder(s) {missing} not found in '{root}' (found "
            f"{[folder.name for folder in root_folders]}; expected X-ray/ and CT/)"
        )
    candidates: list[tuple[Path, str, str]] = []
    problems: list[tuple[str, str]] = []
    for modality in MODALITIES:
        try:
            _, class_folders = list_folder(modality_folders[modality])
        except OSError as error:
            problems.append((modality_folders[modality].name, f"unreadable folder ({error})"))
            continue
        found = set()
        for folder in class_folders:
            relative = folder.relative_to(root).as_posix()
            class_name = CLASS_FOLDERS.get(normalize_folder_name(folder.name))
            if class_name is None:
                problems.append(
                    (relative, f"unknown class folder (expected {list(BINARY_LABELS)})")
                )
                continue
            found.add(class_name)
            try:
                files, subfolders = list_folder(folder)
            except OSError as error:
                problems.append((relative, f"unreadable folder ({error})"))
                continue
            ignored[IGNORED_NESTED] += count_nested_files(subfolders)
            images = [path for path in files if is_image_candidate(path)]
            ignored[IGNORED_UNKNOWN_TYPE] += len(files) - len(images)
            if not images:
                problems.append((relative, "empty class folder"))
            candidates += [(path, modality, class_name) for path in images]
        absent = [name for name in BINARY_LABELS if name not in found]
        if absent:
            raise FileNotFoundError(
                f"class folder(s) {absent} not found in '{modality_folders[modality]}'"
            )
    return candidates, problems


def build_xray_ct_dataset(
    root: str | Path,
    *,
    pairing: str = "label",
    keep_unpaired: bool = False,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    metadata_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
    input_policy: InputPolicy = DEFAULT_INPUT_POLICY,
) -> DatasetDict:
    """Build train/validation/test splits of X-ray + CT pairs.

    Args:
        root: Folder holding ``X-ray/`` and ``CT/`` (see the module docstring).
        pairing: ``"label"`` (each X-ray joined to a CT of the same class drawn from a seeded
            generator, within its split; the only option for the public data) or ``"patient"``
            (X-ray and CT of the same patient, from the metadata file).
        keep_unpaired: Also keep images without a partner, as rows with the other modality None
            and ``pairing="unpaired"``, so single-modality training and evaluation use all data.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split and of the label pairing.
        deduplicate: Keep near-duplicate images (perceptual hash, per modality) in one split.
        skip_bad_images: Skip unreadable files and folders and images outside the input policy
            instead of raising `BadImagesError`. A modality and class left without images is
            still an error.
        metadata_file: CSV for ``pairing="patient"`` (default ``<root>/metadata.csv``).
        cache_dir: Where the scan cache goes (default: the datasets cache); never inside ``root``.
        num_threads: Threads for the first-time validation of the files.
        input_policy: Size limits for images, as in the app.

    Returns:
        A `DatasetDict` with columns ``xray`` and ``ct`` (Image or None), ``label``
        (ClassLabel `BINARY_LABELS`), ``xray_id`` and ``ct_id`` (path relative to root, or
        None), ``patient_id`` (or None) and ``pairing`` ("label", "patient" or "unpaired").

    Raises:
        BadImagesError: Listing every bad file and folder (unless ``skip_bad_images``).
        FileNotFoundError: A modality or class folder, or the metadata file, is missing.
        ValueError: Invalid arguments, or a modality and class without a usable image.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"X-ray/CT dataset folder '{root}' does not exist")
    if pairing not in PAIRING_DESCRIPTIONS:
        raise ValueError(f"pairing must be 'label' or 'patient', got {pairing!r}")
    cache = DatasetCache(root, cache_dir, policy=input_policy)
    ignored: Counter = Counter()
    candidates, problems = _discover(root, ignored)

    metadata: dict[str, dict[str, str]] = {}
    if pairing == "patient":
        metadata_path = Path(metadata_file) if metadata_file else root / DEFAULT_METADATA_FILE
        if not metadata_path.is_file():
            raise FileNotFoundError(
                f"pairing='patient' needs a metadata file with patient ids, '{metadata_path}' "
                "not found (the public data set has none: use pairing='label')"
            )
        metadata = _read_patient_metadata(metadata_path)

    infos = cache.inspect([path for path, _, _ in candidates], num_threads=num_threads)
    items = []
    for (path, modality, class_name), info in zip(candidates, infos, strict=True):
        relative = path.relative_to(root).as_posix()
        if info.error is not None:
            problems.append((relative, info.error))
            continue
        row = metadata.get(relative.lower(), {})
        if row.get("label") and _metadata_class(row["label"]) != class_name:
            problems.append(
                (relative, f"metadata label {row['label']!r} but folder {class_name!r}")
            )
            continue
        if row.get("modality") and normalize_folder_name(row["modality"]) != modality:
            problems.append(
                (
                    relative,
                    f"metadata modality {row['modality']!r} but folder {MODALITY_NAMES[modality]!r}",
                )
            )
            continue
        value = str(cache.derived_png(path)) if info.image_format == "DICOM" else str(path)
        items.append(
            {
                "value": value,
                "id": relative,
                "modality": modality,
                "label": BINARY_LABELS.index(class_name),
                "patient_id": row.get("patient_id") or None,
                "hashes": info.hashes,
            }
        )
    skipped = report_bad_input(root, problems, skip_bad_images=skip_bad_images)
    usable = Counter((item["modality"], item["label"]) for item in items)
    raise_for_empty_classes(
        root,
        {
            f"{MODALITY_NAMES[modality]} {name}": usable[modality, label]
            for modality in MODALITIES
            for label, name in enumerate(BINARY_LABELS)
        },
        problems,
    )
    ignored_files = report_ignored_files(root, ignored)

    # Stratify by modality and class, so both modalities keep the class balance in every split.
    strata = [MODALITIES.index(item["modality"]) * 2 + item["label"] for item in items]
    plan = plan_splits(
        strata,
        group_keys=[item["patient_id"] for item in items] if pairing == "patient" else None,
        hashes=[item["hashes"] for item in items] if deduplicate else None,
        dedup_scopes=[item["modality"] for item in items],
        split_ratios=split_ratios,
        seed=seed,
    )
    columns_by_split, pairing_lines = pair_by_split(
        items, plan.split_of_item, pairing, keep_unpaired, seed
    )

    stratum_names = [f"{MODALITY_NAMES[m]} {name}" for m in MODALITIES for name in BINARY_LABELS]
    counts = Counter(strata)
    summary = DatasetBuildSummary(
        kind="xray_ct",
        title="Extensive COVID-19 X-Ray and CT (Mendeley layout)",
        classes=list(BINARY_LABELS),
        images_per_class={name: counts.get(i, 0) for i, name in enumerate(stratum_names)},
        split_ratios=list(split_ratios),
        split_seed=seed,
        grouping="patient_id" if pairing == "patient" else "image (no patient ids)",
        deduplicate=deduplicate,
        near_duplicates=plan.near_duplicates() if deduplicate else None,
        pairing=pairing,
        pairing_note=PAIRING_DESCRIPTIONS[pairing],
        bad_files_skipped=skipped,
        ignored_files=ignored_files,
        notes=pairing_lines,
    )
    features = Features(
        {
            "xray": Image(),
            "ct": Image(),
            "label": ClassLabel(names=list(BINARY_LABELS)),
            "xray_id": Value("string"),
            "ct_id": Value("string"),
            "patient_id": Value("string"),
            "pairing": Value("string"),
        }
    )
    return make_dataset_dict(
        columns_by_split,
        features=features,
        summary=summary,
        dataset_name=f"covid19_xray_ct_{pairing}_paired",
    )


def pair_by_split(
    items: list[dict],
    split_of_item: list[int],
    pairing: str,
    keep_unpaired: bool,
    seed: int,
) -> tuple[dict[str, dict[str, list]], list[str]]:
    """Join X-rays to CTs within each split (same class, or same patient), seeded.

    Every X-ray of a pool (split and class, or split and patient) gets a CT of the pool, drawn
    in a seeded random order and reused in turn when there are fewer CTs than X-rays. Images
    without a partner become one-modality rows when ``keep_unpaired``, else they are dropped.

    Args:
        items: One dict per image with ``modality`` (a `MODALITIES` key), ``label``, ``id``,
            ``value`` (the image column value) and ``patient_id`` (or None).
        split_of_item: The split index (into `SPLIT_NAMES`) of each item.
        pairing: ``"label"`` or ``"patient"``: what an X-ray and its CT share.
        keep_unpaired: Keep images without a partner as one-modality rows.
        seed: Seed of the draw.

    Returns:
        ``(columns_by_split, pairing_lines)``: split name -> column name -> values (the
        X-ray + CT dataset's columns), and one line per split saying what was paired.
    """
    rng = np.random.default_rng([seed, 1])
    pools: dict[tuple, dict[str, list[dict]]] = {}
    unpooled: dict[int, list[dict]] = {split: [] for split in range(len(SPLIT_NAMES))}
    for item, split in zip(items, split_of_item, strict=True):
        key_value = item["label"] if pairing == "label" else item["patient_id"]
        if key_value is None:
            unpooled[split].append(item)
            continue
        pool = pools.setdefault((split, key_value), {"xray": [], "ct": []})
        pool[item["modality"]].append(item)

    columns = ("xray", "ct", "label", "xray_id", "ct_id", "patient_id", "pairing")
    columns_by_split = {name: {column: [] for column in columns} for name in SPLIT_NAMES}

    def add_row(split: int, xray: dict | None, ct: dict | None, row_pairing: str) -> None:
        first = xray or ct
        row = {
            "xray": xray["value"] if xray else None,
            "ct": ct["value"] if ct else None,
            "label": first["label"],
            "xray_id": xray["id"] if xray else None,
            "ct_id": ct["id"] if ct else None,
            "patient_id": first["patient_id"],
            "pairing": row_pairing,
        }
        for column in columns:
            columns_by_split[SPLIT_NAMES[split]][column].append(row[column])

    stats = {name: Counter() for name in SPLIT_NAMES}
    for (split, _), pool in sorted(pools.items(), key=lambda entry: str(entry[0])):
        xrays, cts = pool["xray"], pool["ct"]
        if not xrays or not cts:
            unpooled[split] += xrays + cts
            continue
        order = [cts[k] for k in rng.permutation(len(cts))]
        for index, xray in enumerate(xrays):
            add_row(split, xray, order[index % len(order)], pairing)
        unpooled[split] += order[len(xrays) :]
        stats[SPLIT_NAMES[split]]["reused CT"] += max(0, len(xrays) - len(cts))
    for split, split_items in unpooled.items():
        for item in split_items:
            stats[SPLIT_NAMES[split]][f"unpaired {item['modality']}"] += 1
            if keep_unpaired:
                is_xray = item["modality"] == "xray"
                add_row(split, item if is_xray else None, None if is_xray else item, UNPAIRED)

    lines = []
    for name in SPLIT_NAMES:
        paired = sum(value != UNPAIRED for value in columns_by_split[name]["pairing"])
        unpaired = stats[name]["unpaired xray"] + stats[name]["unpaired ct"]
        fate = "kept as one-modality rows" if keep_unpaired else "dropped (keep_unpaired=False)"
        lines.append(
            f"{name} rows: {paired} {pairing}-paired ({stats[name]['reused CT']} reusing a CT), "
            f"{unpaired} unpaired images ({stats[name]['unpaired xray']} X-ray, "
            f"{stats[name]['unpaired ct']} CT) {fate}."
        )
    return columns_by_split, lines
