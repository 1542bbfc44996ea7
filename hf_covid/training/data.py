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
the class away). With ``mask_model`` (a lung U-Net checkpoint), the dual-channel model gets the
U-Net's mask for *every* image instead (`hf_covid.lung_masks.add_unet_masks`; the human masks
stay in its ``human_mask`` column), and the run record's ``data.mask_model`` names the U-Net.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict, Image, load_from_disk
from transformers import PreTrainedModel

from hf_covid.checkpoints import DatasetRecord, portable
from hf_covid.data import (
    DATASET_BUILDERS,
    ChestAugmentation,
    ChestBatchCollator,
    preprocess_for_training,
)
from hf_covid.data.builders import is_saved_dataset
from hf_covid.data.public.collections import find_collections
from hf_covid.data.public.compose import PUBLIC_COMPOSERS, PUBLIC_COMPOSITION_KINDS
from hf_covid.data.summary import read_build_summary
from hf_covid.data.synthetic import LESION_MASK_FOLDER
from hf_covid.lung_masks import HUMAN_MASK_COLUMN, LungSegmenter, add_unet_masks
from hf_covid.models.image_processing_chest import ChestImageProcessor
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
    "mask_presence",
    "preprocessing_columns",
]


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


def build_image_processor(model_args: ModelArguments, image_size: int) -> ChestImageProcessor:
    """The ``ChestImageProcessor`` saved with the checkpoint (the family's channels and
    normalisation; ImageNet statistics for ResNet)."""
    family = get_model_family(model_args.model_type)
    return ChestImageProcessor(
        size={"height": image_size, "width": image_size}, **dict(family.processor_options)
    )


def build_collators(
    family: ModelFamily, processor: ChestImageProcessor, data_args: DataArguments
) -> tuple[ChestBatchCollator, ChestBatchCollator]:
    """Training collator (with augmentation when enabled) and evaluation collator (without)."""
    augmentation = ChestAugmentation(**data_args.augmentation) if data_args.augment else None
    select = {"input_names": family.input_names, "label_key": family.target}
    return (
        ChestBatchCollator(augmentation, processor, **select),
        ChestBatchCollator(None, processor, **select),
    )


def preprocessing_columns(family: ModelFamily) -> dict[str, str | None]:
    """The image columns ``preprocess_for_training`` reads for a family's dataset."""
    dataset: DatasetKind = family.dataset
    return {
        "image_column": dataset.image_column,
        "mask_column": dataset.mask_column if family.uses_mask else None,
        "ct_column": dataset.ct_column,
    }


@dataclass
class TrainingData:
    """Preprocessed splits plus what the reports say about them."""

    splits: Any
    """``DatasetDict`` train / validation / test from ``preprocess_for_training``."""
    class_names: tuple[str, ...]
    record: DatasetRecord


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
    return {"classes": list(classes) if data_args.classes else None}


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
        builder = DATASET_BUILDERS[family.dataset_kind]
        options.update(
            pairing=data_args.pairing,
            keep_unpaired=data_args.keep_unpaired,
            metadata_file=data_args.metadata_file,
        )
    else:
        builder = DATASET_BUILDERS[family.dataset_kind]
        options.update(
            classes=list(classes) if data_args.classes else None, group_by=data_args.group_by
        )
    try:
        return builder(root, **options)
    except (FileNotFoundError, ValueError) as error:  # missing folders, bad files, bad options
        raise ConfigurationError(f"data_dir {root}: {error}") from error


def mask_presence(split: Any, column: str = "mask") -> np.ndarray:
    """Whether each row of ``split`` has a mask (read without decoding the images)."""
    if column not in split.column_names:
        return np.zeros(len(split), dtype=bool)
    masks = split.select_columns([column]).cast_column(column, Image(decode=False))[column]
    return np.array([mask is not None for mask in masks], dtype=bool)


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
    # The U-Net's mask files live only until preprocessing has decoded them into the cache.
    with tempfile.TemporaryDirectory(prefix="hf_covid_unet_masks_") as mask_dir:
        masked = _with_unet_masks(raw, segmenter, mask_dir, data_args.mask_model, root)
        return _preprocess(family, masked, data_args, expected)


def _preprocess(
    family: ModelFamily, raw: DatasetDict, data_args: DataArguments, classes: tuple[str, ...]
) -> TrainingData:
    """The checked splits decoded into the cache, with the record of what they hold."""
    record = dataset_record(family, raw, data_args.data_dir, data_args.image_size)
    splits = preprocess_for_training(
        raw, image_size=data_args.image_size, **preprocessing_columns(family)
    )
    return TrainingData(splits, classes, record)


def _mask_segmenter(family: ModelFamily, data_args: DataArguments) -> LungSegmenter | None:
    """The lung U-Net named by ``mask_model``, or None when the recipe names none.

    Raises:
        ConfigurationError: ``mask_model`` for a model that reads no input mask, or a
            checkpoint that is missing or is not a segmentation model.
    """
    if not data_args.mask_model:
        return None
    if not family.uses_mask or family.target == "lung_mask":
        raise ConfigurationError(
            f"mask_model: the {family.display_name} reads no lung mask as input; remove "
            "mask_model (it applies to models that do, e.g. dual_channel)"
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
    raw: DatasetDict, segmenter: LungSegmenter, mask_dir: str, mask_model: str, root: Path
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
    return record
