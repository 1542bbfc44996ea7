"""What a checkpoint is evaluated on: the split, the builder options of its training run, and
the model's inputs (preprocessed split and collator)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets import DatasetDict, Image, load_from_disk
from transformers import PreTrainedModel

from hf_covid.checkpoints import LUNG_SEGMENTER_FOLDER, RunRecord, portable
from hf_covid.data import DATASET_BUILDERS, ChestBatchCollator, preprocess_for_training
from hf_covid.data.builders import is_saved_dataset
from hf_covid.data.io import resolve_cache_dir
from hf_covid.data.public.collections import find_collections
from hf_covid.data.public.compose import PUBLIC_COMPOSERS
from hf_covid.lung_masks import (
    UNET_MASK_CACHE,
    LungSegmenter,
    add_unet_masks,
    checkpoint_segmenter,
    mask_presence,
)
from hf_covid.registry import ModelFamily, get_model_family

__all__ = [
    "CHECKPOINT_UNET",
    "DATASET_MASKS",
    "MASK_SOURCES",
    "build_dataset",
    "load_evaluation_split",
    "model_image_size",
    "prepare_inputs",
    "run_build_options",
    "unet_masks",
]

CHECKPOINT_UNET = f"the checkpoint's lung U-Net ({LUNG_SEGMENTER_FOLDER}/)"
"""The U-Net saved with a checkpoint, as results name it."""
DATASET_MASKS = "the dataset's own masks"
"""What results' ``masks`` say when they used the masks stored in the data."""


def unet_masks(unet: str) -> str:
    """What results' ``masks`` say when the U-Net named ``unet`` drew every image's mask."""
    return f"{unet}, for every image"


def _select_split(data, split: str, where: str):
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"{where} has no split '{split}'; available: {sorted(data)}")
        return data[split]
    return data


def load_evaluation_split(
    family: ModelFamily,
    class_names: Sequence[str],
    split: str,
    *,
    data_dir: str | Path | None = None,
    dataset=None,
    build_options: Mapping | None = None,
):
    """The raw split (image columns + ``label``) a model of ``family`` is evaluated on.

    ``dataset`` (a ``DatasetDict``, a ``Dataset``, or the folder of one saved with
    ``save_to_disk``) is used as is; otherwise ``data_dir`` is a saved dataset, a collections
    root or a dataset root (:func:`build_dataset`, with ``build_options``, e.g. the split seed
    and ratios used in training).

    Raises:
        ValueError: no data given, no such split, no labels, or classes that differ from the
            model's.
    """
    if dataset is None and data_dir is None:
        raise ValueError("pass data_dir (a dataset folder) or dataset (a built dataset)")
    source = dataset if dataset is not None else Path(data_dir)
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data folder '{path}' does not exist")
        options = dict(build_options or {})
        labels = family.dataset.labels
        if family.dataset.ct_column is None and class_names and set(class_names) < set(labels):
            options.setdefault("classes", list(class_names))
        source = build_dataset(path, family.dataset_kind, options)
    where = f"data '{data_dir}'" if dataset is None else "the dataset"
    data = _select_split(source, split, where)
    if "label" not in data.column_names:
        raise ValueError(
            f"split '{split}' of {where} has no 'label' column (columns: {data.column_names}); "
            "evaluation needs labelled data"
        )
    image_column = family.dataset.image_column
    if image_column not in data.column_names:
        raise ValueError(
            f"split '{split}' of {where} has no '{image_column}' column (columns: "
            f"{data.column_names}); the {family.key} model needs the {family.dataset.name}"
        )
    if family.task == "segmentation":
        mask_column = family.dataset.mask_column
        if mask_column not in data.column_names:
            raise ValueError(
                f"split '{split}' of {where} has no '{mask_column}' column for the "
                f"{family.display_name}"
            )
        masks = data.select_columns([mask_column]).cast_column(mask_column, Image(decode=False))
        data = data.select(
            [index for index, mask in enumerate(masks[mask_column]) if mask is not None]
        )
        if len(data) == 0:
            raise ValueError(f"split '{split}' of {where} has no lung masks to evaluate Dice on")
        return data
    feature = data.features["label"]
    data_classes = list(getattr(feature, "names", None) or [])
    if not data_classes:
        raise ValueError(f"split '{split}' of {where}: 'label' is not a ClassLabel with names")
    if data_classes != list(class_names):
        raise ValueError(
            f"label mismatch: the model predicts {list(class_names)} but split '{split}' of "
            f"{where} has the classes {data_classes}"
        )
    if len(data) == 0:
        raise ValueError(f"split '{split}' of {where} is empty")
    if min(data["label"]) < 0:
        raise ValueError(f"split '{split}' of {where} has unlabelled examples (label -1)")
    return data


def build_dataset(data_dir: str | Path, dataset_kind: str, options: Mapping | None = None):
    """The dataset in ``data_dir``: saved with ``save_to_disk``, a collections root, or a folder.

    A collections root (the public collections side by side, see
    :func:`hf_covid.data.public.collections.find_collections`) is composed into the ``dataset_kind``
    layout; any other folder is built with that layout's builder. Options a builder does not
    take (e.g. ``group_by`` for a composition) are dropped.

    Args:
        data_dir: The folder.
        dataset_kind: ``"radiography"`` or ``"xray_ct"``.
        options: Builder keyword arguments (split ratios, seed, classes, pairing, ...).
    """
    path = Path(data_dir).expanduser()
    if is_saved_dataset(path):
        return load_from_disk(str(path))
    options = dict(options or {})
    if find_collections(path):
        compose = PUBLIC_COMPOSERS[dataset_kind]
        accepted = inspect.signature(compose).parameters
        return compose(path, **{key: value for key, value in options.items() if key in accepted})
    return DATASET_BUILDERS[dataset_kind](path, **options)


def run_build_options(checkpoint_dir: str | Path | None, dataset_kind: str) -> dict:
    """Dataset-builder options that reproduce a checkpoint's training split (its run record);
    {} without one."""
    record = RunRecord.read(checkpoint_dir) if checkpoint_dir is not None else None
    if record is None:
        return {}
    data = record.data
    options = {
        "split_ratios": tuple(data["split_ratios"]) if data.get("split_ratios") else None,
        "seed": data.get("split_seed"),
        "deduplicate": data.get("deduplicate"),
    }
    if dataset_kind == "xray_ct":
        options |= {
            "pairing": data.get("pairing"),
            "keep_unpaired": data.get("keep_unpaired"),
            "metadata_file": data.get("metadata_file"),
        }
    else:
        options |= {
            "group_by": data.get("group_by"),
            "classes": data.get("classes"),
            "composition": data.get("composition"),
            "class_map": data.get("class_map") or None,
            "age_groups": data.get("age_groups"),
        }
    return {key: value for key, value in options.items() if value is not None}


def model_image_size(config, processor) -> int:
    """Side of a model's input: its saved processor's, else its config's (224 by default)."""
    if processor is None:
        return int(getattr(config, "image_size", 224))
    size = processor.size
    return int(size["height"] if isinstance(size, Mapping) else size.height)


MASK_SOURCES = ("auto", "unet", "dataset")
"""Where an evaluation's lung masks come from (see :func:`prepare_inputs`)."""


def _with_masks(raw, model: PreTrainedModel, processor, mask_source: str, mask_model: str | None):
    """``raw`` with a lung mask for every row, and a sentence saying where they came from.

    Raises:
        ValueError: an unknown source, or no U-Net and rows without a mask.
    """
    if mask_source not in MASK_SOURCES:
        raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
    segmenter, named = None, None
    if mask_source != "dataset":
        if mask_model:
            segmenter, named = (
                LungSegmenter.from_pretrained(mask_model),
                f"lung U-Net {portable(mask_model)}",
            )
        else:
            segmenter = checkpoint_segmenter(model.name_or_path, processor)
            named = CHECKPOINT_UNET
    if segmenter is not None:
        masked = add_unet_masks(
            DatasetDict({"evaluation": raw}),
            segmenter,
            resolve_cache_dir(None) / UNET_MASK_CACHE,
            checkpoint_name=named,
            progress=False,
        )["evaluation"]
        return masked, unet_masks(named)
    if mask_source == "unet":
        raise ValueError(
            f"mask_source='unet': the checkpoint '{model.name_or_path}' has no lung U-Net "
            f"({LUNG_SEGMENTER_FOLDER}/); pass mask_model=<a lung U-Net checkpoint>"
        )
    present = mask_presence(raw, "mask")
    if not present.all():
        raise ValueError(
            f"the {get_model_family(model.config.model_type).display_name} needs a lung mask for "
            f"every image, but {int((~present).sum())} of {len(raw)} images have none and the "
            f"checkpoint has no lung U-Net ({LUNG_SEGMENTER_FOLDER}/): pass mask_model=<a lung "
            "U-Net checkpoint>, or data with a mask for every image"
        )
    return raw, DATASET_MASKS


def prepare_inputs(
    model: PreTrainedModel,
    processor,
    raw,
    *,
    mask_source: str = "auto",
    mask_model: str | None = None,
) -> tuple[object, ChestBatchCollator, dict]:
    """Preprocess a raw split for ``model`` and build its collator (no augmentation).

    A model that reads a lung mask, or whose processor crops to the lungs, gets a mask for every
    image: with ``mask_source="auto"`` from the lung U-Net saved with its checkpoint (the masks
    it was trained with), else the dataset's own masks when every image has one, else it is
    refused; ``"unet"`` insists on a U-Net (``mask_model`` or the checkpoint's), ``"dataset"`` on
    the dataset's masks. ``settings["masks"]`` says which were used.

    Args:
        model: a loaded model of a registered family (its ``config.model_type`` picks the
            columns and inputs; its ``name_or_path`` the checkpoint folder).
        processor: its ``ChestImageProcessor`` (image size, channels, normalisation, lung crop,
            standardisation), or None (one grayscale channel in [0, 1] at the config's
            ``image_size``).
        raw: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.
        mask_source: ``"auto"``, ``"unet"`` or ``"dataset"`` (see above).
        mask_model: a lung U-Net checkpoint to make the masks with, instead of the checkpoint's.

    Returns:
        ``(prepared dataset, collator, settings)``; the collator yields the model's inputs plus
        ``labels``, settings holds ``image_size``, ``num_channels`` and ``masks`` (None when no
        mask was needed).

    Raises:
        ValueError: masks are needed and none can be had (see above).
    """
    family = get_model_family(model.config.model_type)
    image_size = model_image_size(model.config, processor)
    dataset = family.dataset
    crops = processor is not None and getattr(processor, "crops_lungs", False)
    needs_masks = family.task != "segmentation" and (family.uses_mask or crops)
    masks = None
    if needs_masks:
        raw, masks = _with_masks(raw, model, processor, mask_source, mask_model)
    prepared = preprocess_for_training(
        DatasetDict({"evaluation": raw}),
        image_size=image_size,
        processor=processor,
        image_column=dataset.image_column,
        mask_column=dataset.mask_column if family.uses_mask or crops else None,
        ct_column=dataset.ct_column,
    )["evaluation"]
    collator = ChestBatchCollator(
        None, processor, input_names=family.input_names, label_key=family.target
    )
    settings = {
        "image_size": image_size,
        "num_channels": collator.processor.num_channels,
        "masks": masks,
    }
    return prepared, collator, settings
