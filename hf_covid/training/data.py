"""What a run trains on: the model of its family, its image processor, collators and data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel

from hf_covid.checkpoints import DatasetRecord
from hf_covid.data import (
    DATASET_BUILDERS,
    ChestAugmentation,
    ChestBatchCollator,
    preprocess_for_training,
)
from hf_covid.data.summary import read_build_summary
from hf_covid.data.synthetic import LESION_MASK_FOLDER
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


def _build_raw(family: ModelFamily, data_args: DataArguments, classes: Sequence[str]):
    root = Path(data_args.data_dir)
    options: dict[str, Any] = dict(
        split_ratios=tuple(data_args.split_ratios),
        seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
        skip_bad_images=data_args.skip_bad_images,
        cache_dir=data_args.cache_dir,
    )
    if family.dataset_kind == "xray_ct":
        options.update(
            pairing=data_args.pairing,
            keep_unpaired=data_args.keep_unpaired,
            metadata_file=data_args.metadata_file,
        )
    else:
        options.update(
            classes=list(classes) if data_args.classes else None, group_by=data_args.group_by
        )
    try:
        return DATASET_BUILDERS[family.dataset_kind](root, **options)
    except (FileNotFoundError, ValueError) as error:  # missing folders, bad files, bad options
        raise ConfigurationError(f"data_dir {root}: {error}") from error


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
    record = dataset_record(family, raw, data_args.data_dir, data_args.image_size)
    splits = preprocess_for_training(
        raw, image_size=data_args.image_size, **preprocessing_columns(family)
    )
    return TrainingData(splits, expected, record)


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
        name=family.dataset.name,
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
