"""What a run trains on: the model of its family, its image processor, collators and data.

``data_dir`` is one of three things, recognised in this order:

* a dataset saved with ``DatasetDict.save_to_disk`` (e.g. the study's composition with U-Net
  masks), used as is;
* a *collections root*: the public collections side by side (``ieee8023/``,
  ``kermany/chest_xray/``, ``covid_ct/``), composed into the layout the model's dataset kind
  needs (`compose_radiography` or `compose_xray_ct`, grouped by patient; the run record's
  ``dataset.sources`` counts the images per collection);
* a folder in the model's own layout (Kaggle Radiography or Mendeley X-ray + CT).

Models that read the lung mask keep to the images that have one: the lung U-Net trains only on
images with a mask, and the dual-channel model refuses data where only some images have one
(in the public collections only the ieee8023 COVID X-rays do, so the mask's presence would give
the class away). With ``mask_model`` (a lung U-Net checkpoint), every image gets the U-Net's mask
instead (`hf_covid.lung_masks.add_unet_masks`, cached per image and U-Net; the human masks stay
in its ``human_mask`` column): the dual-channel model's input, the lung crop's box
(``lung_crop_margin``) and the outside-the-lungs augmentation's region. The run record's
``data.mask_model`` names the U-Net, and the checkpoint keeps a copy of it in
``lung_segmenter/`` (`hf_covid.checkpoints.LUNG_SEGMENTER_FOLDER`), so that evaluation and
serving make the same masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict, load_from_disk
from transformers import PreTrainedModel

from hf_covid.checkpoints import LUNG_SEGMENTER_FOLDER, DatasetRecord, portable
from hf_covid.data import (
    DATASET_BUILDERS,
    ChestAugmentation,
    ChestBatchCollator,
    preprocess_for_training,
)
from hf_covid.data.builders import is_saved_dataset
from hf_covid.data.io import resolve_cache_dir
from hf_covid.data.public.class_maps import DEFAULT_RADIOGRAPHY_COMPOSITION
from hf_covid.data.public.collections import find_collections
from hf_covid.data.public.compose import PUBLIC_COMPOSERS, PUBLIC_COMPOSITION_KINDS
from hf_covid.data.summary import read_build_summary
from hf_covid.data.synthetic import LESION_MASK_FOLDER
from hf_covid.lung_masks import (
    HUMAN_MASK_COLUMN,
    UNET_MASK_CACHE,
    LungSegmenter,
    add_unet_masks,
    mask_presence,
)
from hf_covid.models.image_processing_chest import LUNG_CROP_STATUSES, ChestImageProcessor
from hf_covid.registry import DatasetKind, ModelFamily, get_model_family

from .arguments import ConfigurationError, DataArguments, ModelArguments

__all__ = [
    "TrainingData",
    "build_collators",
    "build_image_processor",
    "build_model",
    "dataset_record",
    "expected_classes",
    "load_training_data",
    "lung_crop_record",
    "preprocessing_columns",
    "preprocessing_options",
    "reads_lung_masks",
]

COMPOSITION_OPTIONS = ("composition", "class_map", "age_groups")
"""Data options that only a collections root takes."""


def build_model(model_args: ModelArguments, class_names: Sequence[str]) -> PreTrainedModel:
    """Instantiate the model named by ``model_args`` for ``class_names``.

    Raises:
        ConfigurationError: a ``config_overrides`` field the model's config does not take.
    """
    family = get_model_family(model_args.model_type)
    try:
        return family.build_model(
            class_names,
            model_args.config_overrides,
            pretrained=model_args.pretrained,
            freeze_backbone=model_args.freeze_backbone,
        )
    except TypeError as error:
        raise ConfigurationError(
            f"config_overrides: {error} (fields of {family.config_class.__name__})"
        ) from error


def preprocessing_options(data_args: DataArguments) -> dict[str, Any]:
    """The `ChestImageProcessor` settings a recipe chooses: the size, the lung crop (from the
    checkpoint's own U-Net copy) and the intensity standardisation."""
    options: dict[str, Any] = {
        "size": {"height": data_args.image_size, "width": data_args.image_size},
        "intensity_standardization": data_args.intensity_standardization,
    }
    if data_args.lung_crop_margin is not None:
        options["lung_crop_margin"] = data_args.lung_crop_margin
        options["lung_crop_segmenter"] = LUNG_SEGMENTER_FOLDER
    return options


def build_image_processor(
    model_args: ModelArguments, data_args: DataArguments
) -> ChestImageProcessor:
    """The ``ChestImageProcessor`` saved with the checkpoint: the recipe's preprocessing
    (`preprocessing_options`) and the family's channels and normalisation (ImageNet statistics
    for ResNet)."""
    family = get_model_family(model_args.model_type)
    return ChestImageProcessor(**preprocessing_options(data_args), **dict(family.processor_options))


def build_collators(
    family: ModelFamily, processor: ChestImageProcessor, data_args: DataArguments
) -> tuple[ChestBatchCollator, ChestBatchCollator]:
    """Training collator (with augmentation when enabled) and evaluation collator (without)."""
    augmentation = _augmentation(data_args)
    select = {"input_names": family.input_names, "label_key": family.target}
    return (
        ChestBatchCollator(augmentation, processor, **select),
        ChestBatchCollator(None, processor, **select),
    )


def _augmentation(data_args: DataArguments) -> ChestAugmentation | None:
    """The recipe's training augmentation, or None.

    Raises:
        ConfigurationError: bad augmentation settings, or the outside-the-lungs step without
            ``mask_model``.
    """
    if not data_args.augment:
        return None
    try:
        augmentation = ChestAugmentation(**data_args.augmentation)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"augmentation: {error}") from error
    if augmentation.needs_lung_mask and not data_args.mask_model:
        raise ConfigurationError(
            "augmentation: outside_lungs_probability needs every image's lung mask; set "
            "mask_model (a lung U-Net)"
        )
    return augmentation


def reads_lung_masks(family: ModelFamily, data_args: DataArguments) -> bool:
    """Whether preprocessing keeps each image's lung mask: the family reads it, or the lung crop
    or the outside-the-lungs augmentation needs it."""
    augmentation = _augmentation(data_args)
    return (
        family.uses_mask
        or data_args.lung_crop_margin is not None
        or (augmentation is not None and augmentation.needs_lung_mask)
    )


def preprocessing_columns(
    family: ModelFamily, lung_masks: bool | None = None
) -> dict[str, str | None]:
    """The image columns ``preprocess_for_training`` reads for a family's dataset.

    Args:
        family: The model family.
        lung_masks: Keep the mask column (default: when the family reads the mask).
    """
    dataset: DatasetKind = family.dataset
    keep_mask = family.uses_mask if lung_masks is None else lung_masks
    return {
        "image_column": dataset.image_column,
        "mask_column": dataset.mask_column if keep_mask else None,
        "ct_column": dataset.ct_column,
    }


@dataclass
class TrainingData:
    """Preprocessed splits plus what the reports say about them."""

    splits: Any
    """``DatasetDict`` train / validation / test from ``preprocess_for_training``."""
    class_names: tuple[str, ...]
    record: DatasetRecord
    segmenter: LungSegmenter | None = None
    """The ``mask_model`` U-Net that drew every image's lungs (saved with the checkpoint)."""


def expected_classes(family: ModelFamily, data_args: DataArguments) -> tuple[str, ...]:
    """The classes the recipe expects: ``classes`` if set (checked), else the dataset's.

    Raises:
        ConfigurationError: classes the family's dataset does not have.
    """
    labels = family.dataset.labels
    if not data_args.classes:
        return labels
    classes = tuple(data_args.classes)
    if family.dataset.ct_column and classes != labels:
        raise ConfigurationError(
            f"classes: the X-ray + CT data has the classes {list(labels)}, "
            f"but the recipe expects {data_args.classes}"
        )
    unknown = [name for name in classes if name not in labels]
    if unknown:
        raise ConfigurationError(
            f"classes: {unknown} are not {family.dataset.name} classes; expected names from "
            f"{list(labels)}"
        )
    return classes


def _public_options(family: ModelFamily, data_args: DataArguments, classes: Sequence[str]):
    """Composition options from the recipe; options the public collections cannot take raise."""
    if family.dataset_kind == "xray_ct":
        chosen = [name for name in COMPOSITION_OPTIONS if getattr(data_args, name)]
        if chosen:
            raise ConfigurationError(
                f"{', '.join(chosen)}: the X-ray + CT composition has no named compositions; "
                "remove them"
            )
        if data_args.pairing != "label" or data_args.metadata_file:
            raise ConfigurationError(
                "pairing: the public collections have no X-ray and CT of one patient; use "
                "pairing: label and no metadata_file"
            )
        return {"keep_unpaired": data_args.keep_unpaired}
    if data_args.group_by:
        raise ConfigurationError(
            f"group_by: {data_args.group_by!r} does not apply to a collections root (its splits "
            "are grouped by patient within each collection); remove it"
        )
    return {
        "classes": list(classes) if data_args.classes else None,
        "composition": data_args.composition or DEFAULT_RADIOGRAPHY_COMPOSITION,
        "class_map": data_args.class_map or None,
        "age_groups": data_args.age_groups,
    }


def _check_composition_options(data_args: DataArguments, root: Path) -> None:
    """Composition options name a composition of the public collections: refuse them for a
    folder in a layout of its own."""
    chosen = [name for name in COMPOSITION_OPTIONS if getattr(data_args, name)]
    if chosen:
        raise ConfigurationError(
            f"{', '.join(chosen)}: {root} is no collections root (the public collections side "
            "by side); these options choose a composition of those collections"
        )


def _build_raw(family: ModelFamily, data_args: DataArguments, classes: Sequence[str]):
    root = Path(data_args.data_dir)
    if is_saved_dataset(root):
        return load_from_disk(str(root))
    options: dict[str, Any] = dict(
        split_ratios=tuple(data_args.split_ratios),
        seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
        skip_bad_images=data_args.skip_bad_images,
        cache_dir=data_args.cache_dir,
    )
    if find_collections(root):
        builder = PUBLIC_COMPOSERS[family.dataset_kind]
        options.update(_public_options(family, data_args, classes))
    elif family.dataset_kind == "xray_ct":
        _check_composition_options(data_args, root)
        builder = DATASET_BUILDERS[family.dataset_kind]
        options.update(
            pairing=data_args.pairing,
            keep_unpaired=data_args.keep_unpaired,
            metadata_file=data_args.metadata_file,
        )
    else:
        _check_composition_options(data_args, root)
        builder = DATASET_BUILDERS[family.dataset_kind]
        options.update(
            classes=list(classes) if data_args.classes else None, group_by=data_args.group_by
        )
    try:
        return builder(root, **options)
    except (FileNotFoundError, ValueError) as error:  # missing folders, bad files, bad options
        raise ConfigurationError(f"data_dir {root}: {error}") from error


def _keep_masked_rows(family: ModelFamily, raw: DatasetDict, root: Path) -> DatasetDict:
    """The rows a mask-reading family can use (see the module docstring).

    Raises:
        ConfigurationError: the lung U-Net without masks, or the dual-channel model on data
            where only some images have a lung mask.
    """
    if not family.uses_mask:
        return raw
    column = family.dataset.mask_column
    present = {split: mask_presence(raw[split], column) for split in raw}
    if family.target == "lung_mask":
        empty = [split for split, has in present.items() if not has.any()]
        if empty:
            raise ConfigurationError(
                f"{root}: the {', '.join(empty)} split(s) hold no image with a lung mask; the "
                f"{family.display_name} trains on masked images only"
            )
        return DatasetDict(
            {split: raw[split].select(np.flatnonzero(has)) for split, has in present.items()}
        )
    partial = {split: int((~has).sum()) for split, has in present.items() if not has.all()}
    if partial:
        total = {split: len(raw[split]) for split in partial}
        raise ConfigurationError(
            f"{root}: images without a lung mask per split {partial} (of {total}); the "
            f"{family.display_name} needs one for every image, else the mask's presence can "
            "give the class away. Set mask_model to a lung U-Net checkpoint (folder or Hub id) "
            "to give every image the U-Net's mask, or pass as data_dir a saved dataset whose "
            "images all have one (hf_covid.lung_masks.add_unet_masks writes it)"
        )
    return raw


def load_training_data(family: ModelFamily, data_args: DataArguments) -> TrainingData:
    """Build, check and preprocess the dataset a model trains on.

    Raises:
        ConfigurationError: the data folder is missing or its classes differ from the recipe's.
    """
    if not data_args.data_dir:
        raise ConfigurationError("data_dir: required (the dataset root folder)")
    root = Path(data_args.data_dir)
    if not root.is_dir():
        raise ConfigurationError(f"data_dir: folder {root} does not exist")
    expected = expected_classes(family, data_args)
    if data_args.lung_crop_margin is not None and family.dataset.ct_column:
        raise ConfigurationError(
            f"lung_crop_margin: the lung crop applies to X-ray models; the {family.display_name} "
            "also reads a CT, for which there is no lung U-Net"
        )
    segmenter = _mask_segmenter(family, data_args)
    raw = _build_raw(family, data_args, expected)
    found = tuple(raw["train"].features["label"].names)
    if found != expected:
        raise ConfigurationError(
            f"{root}: the data has the classes {list(found)} but the recipe expects "
            f"{list(expected)} (set `classes` to match the data)"
        )
    for split in ("train", "validation", "test"):
        if split not in raw or len(raw[split]) == 0:
            raise ConfigurationError(f"{root}: the {split!r} split is empty; add images")
    if segmenter is None:
        return _preprocess(family, _keep_masked_rows(family, raw, root), data_args, expected)
    mask_cache = resolve_cache_dir(data_args.cache_dir) / UNET_MASK_CACHE
    masked = _with_unet_masks(raw, segmenter, mask_cache, data_args.mask_model, root)
    return _preprocess(family, masked, data_args, expected, segmenter)


def _preprocess(
    family: ModelFamily,
    raw: DatasetDict,
    data_args: DataArguments,
    classes: tuple[str, ...],
    segmenter: LungSegmenter | None = None,
) -> TrainingData:
    """The checked splits decoded into the cache, with the record of what they hold."""
    record = dataset_record(family, raw, data_args.data_dir, data_args.image_size)
    processor = ChestImageProcessor(**preprocessing_options(data_args))
    splits = preprocess_for_training(
        raw,
        image_size=data_args.image_size,
        processor=processor,
        cache_dir=data_args.cache_dir,
        **preprocessing_columns(family, reads_lung_masks(family, data_args)),
    )
    if processor.crops_lungs:
        record.lung_crop = lung_crop_record(splits, data_args)
    return TrainingData(splits, classes, record, segmenter)


def lung_crop_record(splits: DatasetDict, data_args: DataArguments) -> dict[str, Any]:
    """What the lung crop did: its U-Net and margin, and the images it left uncropped (an empty
    mask or one covering the whole image), per split."""
    uncropped: dict[str, dict[str, int]] = {}
    for name, split in splits.items():
        counts = np.bincount(
            split.with_format(None)["lung_crop_status"], minlength=len(LUNG_CROP_STATUSES)
        )
        uncropped[name] = {
            status: int(count)
            for status, count in zip(LUNG_CROP_STATUSES[1:], counts[1:], strict=True)
            if count
        }
    return {
        "segmenter": portable(data_args.mask_model),
        "margin": data_args.lung_crop_margin,
        "images": {name: len(split) for name, split in splits.items()},
        "uncropped": uncropped,
    }


def _mask_segmenter(family: ModelFamily, data_args: DataArguments) -> LungSegmenter | None:
    """The lung U-Net named by ``mask_model``, or None when the recipe names none.

    Raises:
        ConfigurationError: ``mask_model`` for a model that reads no input mask, or a
            checkpoint that is missing or is not a segmentation model.
    """
    if not data_args.mask_model:
        return None
    if family.target == "lung_mask" or not reads_lung_masks(family, data_args):
        raise ConfigurationError(
            f"mask_model: the {family.display_name} uses no lung mask here; remove mask_model "
            "(it gives a mask to models that read one, e.g. dual_channel, to the lung crop, "
            "lung_crop_margin, and to the outside-the-lungs augmentation)"
        )
    try:
        segmenter = LungSegmenter.from_pretrained(data_args.mask_model)
    except (OSError, KeyError, ValueError) as error:  # no checkpoint, unknown model type
        raise ConfigurationError(f"mask_model {data_args.mask_model}: {error}") from error
    model_type = segmenter.model.config.model_type
    if get_model_family(model_type).task != "segmentation":
        raise ConfigurationError(
            f"mask_model {data_args.mask_model}: a {model_type!r} checkpoint, not a lung U-Net "
            "(a segmentation model)"
        )
    return segmenter


def _with_unet_masks(
    raw: DatasetDict, segmenter: LungSegmenter, mask_dir: Path, mask_model: str, root: Path
) -> DatasetDict:
    """Every image with the U-Net's mask; the collection's masks kept in ``human_mask``.

    Raises:
        ConfigurationError: the data already holds U-Net masks.
    """
    if HUMAN_MASK_COLUMN in raw["train"].column_names:
        raise ConfigurationError(
            f"{root}: the data already holds U-Net masks (column {HUMAN_MASK_COLUMN!r}); "
            "remove mask_model"
        )
    return add_unet_masks(raw, segmenter, mask_dir, checkpoint_name=portable(mask_model))


def dataset_record(
    family: ModelFamily, raw: Any, data_dir: str | Path | None, image_size: int
) -> DatasetRecord:
    """What ``eval_results.json``, the run record and the model card say about the data.

    Split options, near-duplicates, pairing and sources come from the builders' summary stored
    with the dataset; a dataset without one (built elsewhere) records its splits only.
    """
    summary = read_build_summary(raw)
    names = raw["train"].features["label"].names
    # Only the phantom generator writes lesion ground truth next to the class folders.
    phantom_folder = data_dir is not None and (Path(data_dir) / LESION_MASK_FOLDER).is_dir()
    record = DatasetRecord(
        kind=family.dataset_kind,
        # A composition of the public collections is not the public dataset of its layout.
        name=summary.title
        if summary is not None and summary.kind in PUBLIC_COMPOSITION_KINDS
        else family.dataset.name,
        source=Path(data_dir).name if data_dir is not None else "dataset object",
        synthetic=phantom_folder or bool(summary and summary.synthetic),
        image_size=image_size,
        split_sizes={split: len(raw[split]) for split in raw},
        class_counts={
            split: dict(
                zip(
                    names,
                    np.bincount(raw[split]["label"], minlength=len(names)).tolist(),
                    strict=True,
                )
            )
            for split in raw
        },
    )
    if summary is not None:
        record.split_ratios = list(summary.split_ratios)
        record.split_seed = summary.split_seed
        record.deduplicate = summary.deduplicate
        record.near_duplicates = (
            None if summary.near_duplicates is None else vars(summary.near_duplicates).copy()
        )
        record.pairing = summary.pairing
        record.pairing_note = summary.pairing_note
        record.sources = dict(summary.sources)
        record.licenses = dict(summary.licenses)
        record.strata = [dict(row) for row in summary.strata]
        record.notes = list(summary.notes)
    return record
