"""The COVID-19 Radiography Database (Kaggle) as a `datasets.DatasetDict`.

Source: Chowdhury et al., "Can AI help in screening viral and COVID-19 pneumonia?", IEEE Access
2020, and Rahman et al., Computers in Biology and Medicine 2021; published on Kaggle as
"COVID-19 Radiography Database". Layout::

    <root>/<class>/images/<class>-<n>.png     299x299 grayscale PNG
    <root>/<class>/masks/<class>-<n>.png      256x256 lung masks (0/255), same file names
    <root>/<class>.metadata.xlsx              FILE NAME, FORMAT, SIZE, URL (source collection)

for the classes COVID, Lung_Opacity, Normal and Viral Pneumonia (older versions keep the images
directly in ``<root>/<class>/``; that works too). What is wrong with it: every class comes from
different source collections (the URL column), so a model can learn the source instead of the
disease (``group_by="source"`` tests that); the public COVID collections share images
(near-duplicates are kept in one split); Normal and pneumonia images include paediatric
collections while COVID images are adults; there are no patient identifiers.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import ClassLabel, DatasetDict, Features, Image, Value
from openpyxl import load_workbook

from hf_covid.models.labels import RADIOGRAPHY_LABELS

from .io import (
    IGNORED_MASK_WITHOUT_IMAGE,
    IGNORED_NESTED,
    IGNORED_UNKNOWN_TYPE,
    BadImagesError,
    DatasetCache,
    ImageFileInfo,
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
from .validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError

__all__ = ["METADATA_SUFFIX", "build_radiography_dataset", "mask_column_value"]

logger = logging.getLogger(__name__)

METADATA_SUFFIX = ".metadata.xlsx"


def _select_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return RADIOGRAPHY_LABELS
    known = {normalize_folder_name(name): name for name in RADIOGRAPHY_LABELS}
    unknown = [name for name in classes if normalize_folder_name(name) not in known]
    if unknown or not classes:
        raise ValueError(
            f"classes must be a non-empty subset of {list(RADIOGRAPHY_LABELS)}, got {list(classes)}"
        )
    selected = {known[normalize_folder_name(name)] for name in classes}
    return tuple(name for name in RADIOGRAPHY_LABELS if name in selected)


def _read_sources(spreadsheet: Path) -> dict[str, str]:
    """Map lower-cased file stem -> URL from a ``<class>.metadata.xlsx`` spreadsheet."""
    workbook = load_workbook(spreadsheet, read_only=True, data_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(cell or "").strip().upper() for cell in next(rows, ())]
        if "FILE NAME" not in header or "URL" not in header:
            raise ValueError(f"expected columns 'FILE NAME' and 'URL', found {header}")
        name_column, url_column = header.index("FILE NAME"), header.index("URL")
        sources = {}
        for row in rows:
            if row and row[name_column] is not None:
                url = row[url_column] if url_column < len(row) else None
                sources[Path(str(row[name_column]).strip()).stem.lower()] = str(url or "").strip()
        return sources
    finally:
        workbook.close()


def _is_data_folder(folder: Path) -> bool:
    """Whether an unrecognised folder looks like a class folder (images inside) or not (ignored)."""
    try:
        files, folders = list_folder(folder)
    except OSError:
        return True
    return bool(files) or any(sub.name.lower() == "images" for sub in folders)


def _find_class_folders(
    root: Path, class_names: tuple[str, ...], problems: list[tuple[str, str]]
) -> tuple[dict[str, Path], list[Path]]:
    """The selected class folders and the files at the root; unknown data folders are problems."""
    try:
        root_files, root_folders = list_folder(root)
    except OSError as error:
        raise BadImagesError(root, [(str(root), f"unreadable folder ({error})")]) from None
    known = {normalize_folder_name(name): name for name in RADIOGRAPHY_LABELS}
    class_folders: dict[str, Path] = {}
    for folder in root_folders:
        class_name = known.get(normalize_folder_name(folder.name))
        if class_name is None and _is_data_folder(folder):
            problems.append(
                (folder.name, f"unknown class folder (expected {list(RADIOGRAPHY_LABELS)})")
            )
        elif class_name in class_names:
            class_folders[class_name] = folder
    missing = [name for name in class_names if name not in class_folders]
    if missing:
        raise FileNotFoundError(
            f"class folder(s) {missing} not found in '{root}' (found "
            f"{[folder.name for folder in root_folders]}); pass classes=[...] to use a subset"
        )
    return class_folders, root_files


def _class_candidates(
    root: Path,
    folder: Path,
    spreadsheet: Path | None,
    cache: DatasetCache,
    problems: list[tuple[str, str]],
    ignored: Counter,
) -> list[tuple[Path, Path | None, str]]:
    """``(image, mask or None, source URL)`` for every image of one class folder.

    An unreadable folder and every unreadable file are problems; files in nested folders, of
    unknown type, and masks without an image are counted in ``ignored``.
    """
    images_folder = folder / "images" if (folder / "images").is_dir() else folder
    masks_folder = folder / "masks"
    listed: dict[str, list[Path]] = {}
    for name, subfolder in (("images", images_folder), ("masks", masks_folder)):
        if name == "masks" and not subfolder.is_dir():
            continue
        try:
            files, subfolders = list_folder(subfolder)
        except OSError as error:
            problems.append(
                (subfolder.relative_to(root).as_posix(), f"unreadable folder ({error})")
            )
            continue
        if subfolder == folder:  # old layout: images in the class folder, masks/ beside them
            subfolders = [path for path in subfolders if path != masks_folder]
        ignored[IGNORED_NESTED] += count_nested_files(subfolders)
        listed[name] = [path for path in files if is_image_candidate(path)]
        ignored[IGNORED_UNKNOWN_TYPE] += len(files) - len(listed[name])
    if images_folder != folder:
        try:
            _, class_subfolders = list_folder(folder)
        except OSError as error:
            problems.append((folder.relative_to(root).as_posix(), f"unreadable folder ({error})"))
            class_subfolders = []
        others = [path for path in class_subfolders if path not in (images_folder, masks_folder)]
        ignored[IGNORED_NESTED] += count_nested_files(others)
    if "images" in listed and not listed["images"]:
        problems.append((images_folder.relative_to(root).as_posix(), "empty class folder"))
    images = listed.get("images", [])
    masks = {path.stem.lower(): path for path in listed.get("masks", [])}
    image_stems = {path.stem.lower() for path in images}
    ignored[IGNORED_MASK_WITHOUT_IMAGE] += sum(stem not in image_stems for stem in masks)
    sources: dict[str, str] = {}
    if spreadsheet is not None:
        try:
            sources = cache.parsed(spreadsheet, _read_sources)
        except Exception as error:  # openpyxl raises many types for a corrupt workbook
            problems.append((spreadsheet.name, f"unreadable metadata spreadsheet ({error})"))
    return [
        (path, masks.get(path.stem.lower()), sources.get(path.stem.lower(), "")) for path in images
    ]


def _check_mask(
    root: Path,
    mask_info: ImageFileInfo | None,
    image_info: ImageFileInfo,
    policy: InputPolicy,
    problems: list[tuple[str, str]],
) -> ImageFileInfo | None:
    """The mask if it fits its image under the policy; a mask that does not is a problem."""
    if mask_info is None or mask_info.error is not None:
        return None
    try:
        policy.check_mask_shape(
            (mask_info.height, mask_info.width), (image_info.height, image_info.width)
        )
    except InputPolicyError as error:
        problems.append((mask_info.path.relative_to(root).as_posix(), str(error)))
        return None
    return mask_info


def mask_column_value(
    mask_info: ImageFileInfo | None, image_info: ImageFileInfo, cache: DatasetCache
) -> tuple[str | None, bool]:
    """What the ``mask`` column holds for an image, and whether the mask was resized.

    Args:
        mask_info: The checked mask file of the image, or None.
        image_info: The image file.
        cache: Where a mask of another size than its image (or a DICOM mask) gets its PNG copy
            at the image's size.

    Returns:
        ``(value, resized)``: None, the mask file's path or its copy's, and whether resized.
    """
    if mask_info is None:
        return None, False
    image_size = (image_info.height, image_info.width)
    resized = (mask_info.height, mask_info.width) != image_size
    if resized or mask_info.image_format == "DICOM":
        return str(cache.derived_png(mask_info.path, size=image_size, mask=True)), resized
    return str(mask_info.path), False


def build_radiography_dataset(
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    group_by: str | None = None,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
    input_policy: InputPolicy = DEFAULT_INPUT_POLICY,
) -> DatasetDict:
    """Build train/validation/test splits of the COVID-19 Radiography Database.

    Args:
        root: Folder holding the class folders (see the module docstring for the layout).
        classes: Classes to use, e.g. ``["COVID", "Normal"]`` for the 2-class task of the
            original paper; only these class folders must exist. Default: all four.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        group_by: None (each image its own group) or ``"source"`` (images from one source
            collection, the metadata URL, stay in one split).
        deduplicate: Keep near-duplicate images (perceptual hash) in one split.
        skip_bad_images: Skip unreadable files and folders, images outside the input policy and
            masks that do not fit their image (counted in the log and description) instead of
            raising `BadImagesError`. A selected class left without images is still an error.
        cache_dir: Where the scan cache and derived files go (default: the datasets cache);
            never inside ``root``.
        num_threads: Threads for the first-time validation of the files.
        input_policy: Size limits for images and the mask shape rule (masks of the image's
            aspect ratio are resized, others are bad files), as in the app.

    Returns:
        A `DatasetDict` with columns ``image`` (Image), ``mask`` (Image or None), ``label``
        (ClassLabel of the selected classes, in `RADIOGRAPHY_LABELS` order), ``image_id``
        (file stem) and ``source`` (metadata URL, or "").

    Raises:
        BadImagesError: Listing every bad file and folder (unless ``skip_bad_images``).
        FileNotFoundError: ``root`` or a selected class folder is missing.
        ValueError: Invalid arguments, or a selected class without a usable image.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"radiography dataset folder '{root}' does not exist")
    if group_by not in (None, "source"):
        raise ValueError(f"group_by must be None or 'source', got {group_by!r}")
    class_names = _select_classes(classes)
    cache = DatasetCache(root, cache_dir, policy=input_policy)

    problems: list[tuple[str, str]] = []
    ignored: Counter = Counter()
    class_folders, root_files = _find_class_folders(root, class_names, problems)
    spreadsheets = {path.name.lower(): path for path in root_files}
    # (image, mask or None, source URL, class name) per example.
    candidates = [
        (*candidate, class_name)
        for class_name in class_names
        for candidate in _class_candidates(
            root,
            class_folders[class_name],
            spreadsheets.get(f"{class_name}{METADATA_SUFFIX}".lower()),
            cache,
            problems,
            ignored,
        )
    ]
    files = [image for image, _, _, _ in candidates]
    files += [mask for _, mask, _, _ in candidates if mask is not None]
    infos = {info.path: info for info in cache.inspect(files, num_threads=num_threads)}
    problems += [
        (info.path.relative_to(root).as_posix(), info.error)
        for info in infos.values()
        if info.error is not None
    ]
    # (image, mask info or None, source URL, class name) per usable image.
    usable, rejected_masks = [], 0
    for image_path, mask_path, source, class_name in candidates:
        image_info = infos[image_path]
        if image_info.error is not None:
            continue
        mask_info = _check_mask(root, infos.get(mask_path), image_info, input_policy, problems)
        rejected_masks += mask_path is not None and mask_info is None
        usable.append((image_path, mask_info, source, class_name))
    skipped = report_bad_input(root, problems, skip_bad_images=skip_bad_images)
    usable_per_class = Counter(class_name for *_, class_name in usable)
    raise_for_empty_classes(root, {name: usable_per_class[name] for name in class_names}, problems)
    ignored_files = report_ignored_files(root, ignored)

    examples, without_mask, resized_masks = [], 0, 0
    for image_path, mask_info, source, class_name in usable:
        image_info = infos[image_path]
        mask_value, resized = mask_column_value(mask_info, image_info, cache)
        without_mask += mask_value is None
        resized_masks += resized
        image_is_dicom = image_info.image_format == "DICOM"
        examples.append(
            {
                "image": str(cache.derived_png(image_path) if image_is_dicom else image_path),
                "mask": mask_value,
                "label": class_names.index(class_name),
                "image_id": image_path.stem,
                "source": source,
                "hashes": image_info.hashes,
            }
        )
    if resized_masks:
        logger.warning(
            "%d lung mask(s) differ in size from their image; resized to the image size "
            "(nearest neighbour) into the cache %s",
            resized_masks,
            cache.root,
        )

    labels = [example["label"] for example in examples]
    plan = plan_splits(
        labels,
        group_keys=[example["source"] or None for example in examples] if group_by else None,
        hashes=[example["hashes"] for example in examples] if deduplicate else None,
        split_ratios=split_ratios,
        seed=seed,
    )
    class_counts = Counter(labels)
    summary = DatasetBuildSummary(
        kind="radiography",
        title="COVID-19 Radiography Database (Kaggle layout)",
        classes=list(class_names),
        images_per_class={name: class_counts.get(i, 0) for i, name in enumerate(class_names)},
        split_ratios=list(split_ratios),
        split_seed=seed,
        grouping="source collection (metadata URL)" if group_by else "image (no patient ids)",
        deduplicate=deduplicate,
        near_duplicates=plan.near_duplicates() if deduplicate else None,
        bad_files_skipped=skipped,
        ignored_files=ignored_files,
        masks={
            "matched": len(examples) - without_mask,
            "missing": without_mask,
            "resized": resized_masks,
            "rejected": rejected_masks,
        },
        sources=dict(Counter(example["source"] for example in examples if example["source"])),
    )

    columns = ("image", "mask", "label", "image_id", "source")
    columns_by_split = {name: {column: [] for column in columns} for name in SPLIT_NAMES}
    for example, split in zip(examples, plan.split_of_item, strict=True):
        for column in columns:
            columns_by_split[SPLIT_NAMES[split]][column].append(example[column])
    features = Features(
        {
            "image": Image(),
            "mask": Image(),
            "label": ClassLabel(names=list(class_names)),
            "image_id": Value("string"),
            "source": Value("string"),
        }
    )
    return make_dataset_dict(
        columns_by_split,
        features=features,
        summary=summary,
        dataset_name="covid19_radiography",
    )
