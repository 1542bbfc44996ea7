"""Preprocess once, augment per epoch: the training-time data pipeline shared by every model.

`preprocess_for_training` decodes every image once (with `load_image`), crops, standardises and
resizes it with the steps of the model's own `ChestImageProcessor` up to the resize
(:meth:`~ChestImageProcessor.resize_steps`: the lung crop, from each row's lung mask, and the
intensity standardisation, exactly as at inference), and stores it as uint8 at the target size
in the datasets cache (an Arrow file keyed by the settings and the source files' paths, sizes and
mtimes, so a second run reuses it). Each example then reads back as uint8 tensors (1, H, W) with
no decoding.

`ChestBatchCollator` turns those examples into float batches, augmenting the whole batch at once
with a fresh random draw per example (train split only), and finishing them with the model's own
`ChestImageProcessor` (channel repeat, normalisation); it is the collator of the Trainer and of
evaluation alike, so training, evaluation and serving share one preprocessing path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, Features, Image, Value
from datasets import Sequence as DatasetsSequence

from hf_covid.models.image_processing_chest import ChestImageProcessor

from .augment import ChestAugmentation
from .io import load_image, resolve_cache_dir

__all__ = ["PIXEL_COLUMNS", "ChestBatchCollator", "preprocess_for_training"]

PIXEL_COLUMNS = ("pixel_values", "lung_mask", "ct_pixel_values")
CACHED_STEP_SETTINGS = (
    "lung_crop_margin",
    "intensity_standardization",
    "clahe_clip_limit",
    "clahe_tiles",
)
"""Processor settings that change what the preprocessing cache holds (part of its key)."""
"""Columns stored as uint8 images of the target size."""
_PREPROCESS_VERSION = 2


class _UInt8Tensors:
    """Dataset transform: stored bytes -> uint8 (1, H, W) tensors, labels -> int64, flags -> bool."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        size = self.image_size
        formatted = {}
        for name, values in batch.items():
            if name in PIXEL_COLUMNS:
                formatted[name] = [
                    torch.frombuffer(bytearray(value), dtype=torch.uint8).view(1, size, size)
                    for value in values
                ]
            elif name in ("labels", "lung_crop_status"):
                formatted[name] = [torch.tensor(value, dtype=torch.int64) for value in values]
            elif name.endswith("_available"):
                formatted[name] = [torch.tensor(value, dtype=torch.bool) for value in values]
            else:
                formatted[name] = values
        return formatted


class _DecodeAndResize:
    """`Dataset.map` function: decode with `load_image`, then the processor's steps up to the
    resize (lung crop, standardisation, resize)."""

    def __init__(
        self,
        processor: ChestImageProcessor,
        image_size: int,
        image_column: str,
        mask_column: str | None,
        ct_column: str | None,
        label_column: str,
    ):
        self.processor = processor
        self.empty = bytes(image_size * image_size)
        self.image_column = image_column
        self.mask_column = mask_column
        self.ct_column = ct_column
        self.label_column = label_column

    @staticmethod
    def _read(value: dict | None) -> np.ndarray | None:
        if value is None:
            return None
        return load_image(value["bytes"] if value.get("bytes") else value["path"])

    def _encode(
        self, image: np.ndarray | None, mask: np.ndarray | None = None
    ) -> tuple[bytes, bytes | None, tuple[int, list[float]] | None]:
        """(pixels, mask pixels or None, the lung crop's (status, box) or None) of one image."""
        if image is None:
            return self.empty, None, None
        output = self.processor(images=[image], masks=None if mask is None else [mask])
        pixels = output["pixel_values"][0].round().to(torch.uint8).numpy().tobytes()
        crop = None
        if "lung_crop_status" in output:
            crop = (
                int(output["lung_crop_status"][0]),
                [float(v) for v in output["lung_crop_box"][0]],
            )
        if mask is None:
            return pixels, None, crop
        return pixels, output["lung_mask"][0].to(torch.uint8).numpy().tobytes(), crop

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        # One image is too small for intra-op threads to help, and on a busy machine their
        # spin-waiting makes each resize tens of times slower; parallelism comes from num_proc.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._process(batch)
        finally:
            torch.set_num_threads(threads)

    def _process(self, batch: dict[str, list]) -> dict[str, list]:
        output: dict[str, list] = {"pixel_values": [], "labels": list(batch[self.label_column])}
        if self.processor.crops_lungs:
            output["lung_crop_status"], output["lung_crop_box"] = [], []
        if self.mask_column:
            output["lung_mask"], output["mask_available"] = [], []
        if self.ct_column:
            output["ct_pixel_values"], output["xray_available"], output["ct_available"] = [], [], []
        for row in range(len(output["labels"])):
            image = self._read(batch[self.image_column][row])
            mask = self._read(batch[self.mask_column][row]) if self.mask_column else None
            pixels, mask_pixels, crop = self._encode(image, mask)
            output["pixel_values"].append(pixels)
            if self.processor.crops_lungs:
                output["lung_crop_status"].append(crop[0])
                output["lung_crop_box"].append(crop[1])
            if self.mask_column:
                output["lung_mask"].append(mask_pixels if mask_pixels is not None else self.empty)
                output["mask_available"].append(mask_pixels is not None)
            if self.ct_column:
                ct = self._read(batch[self.ct_column][row])
                output["ct_pixel_values"].append(self._encode(ct)[0])
                output["xray_available"].append(image is not None)
                output["ct_available"].append(ct is not None)
        return output


def _cache_key(rows: dict[str, list], image_columns: Sequence[str], settings: dict) -> str:
    """Hash of the settings, every column value and the size and mtime of every source file."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted(rows):
        for value in rows[name]:
            if name in image_columns and value is not None:
                if value.get("bytes"):
                    digest.update(hashlib.sha1(value["bytes"]).digest())
                    continue
                stat = os.stat(value["path"])
                value = [value["path"], stat.st_size, stat.st_mtime_ns]
            digest.update(json.dumps(value, default=str).encode())
    return digest.hexdigest()[:32]


def preprocess_for_training(
    dataset_dict: DatasetDict,
    *,
    image_size: int,
    processor: ChestImageProcessor | None = None,
    image_column: str = "image",
    mask_column: str | None = "mask",
    ct_column: str | None = None,
    label_column: str = "label",
    num_proc: int | None = None,
    cache_dir: str | Path | None = None,
) -> DatasetDict:
    """Decode, crop and resize every image once into the datasets cache (uint8 at the target size).

    Args:
        dataset_dict: Splits from `build_radiography_dataset` or `build_xray_ct_dataset`.
        image_size: Side of the square output images.
        processor: The model's image processor, whose steps up to the resize (lung crop,
            intensity standardisation) are applied; None resizes only. A processor that crops
            to the lungs needs ``mask_column`` (a lung mask for every image, e.g. the U-Net's).
        image_column: The X-ray (or main image) column; None values become zeros.
        mask_column: Lung mask column, or None.
        ct_column: CT column for the X-ray + CT data, or None.
        label_column: Class label column.
        num_proc: Processes for the one-time decoding.
        cache_dir: Where the preprocessed Arrow files go (default: the datasets cache).

    Returns:
        A `DatasetDict` whose examples hold uint8 tensors ``pixel_values`` (1, H, W), with
        ``lung_mask`` (0/1) and bool ``mask_available`` when ``mask_column``, with
        ``ct_pixel_values`` and bool ``xray_available`` / ``ct_available`` when ``ct_column``
        (a missing image is zeros with ``*_available`` False), int64 ``labels``, with the lung
        crop int64 ``lung_crop_status`` (an index into `LUNG_CROP_STATUSES`) and
        ``lung_crop_box`` (top, left, bottom, right as fractions of the image), and the other
        non-image columns (ids) unchanged.

    Raises:
        ValueError: a bad size, a missing column, or a lung-cropping processor for data with a
            CT column or without a mask column.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    square = {"height": image_size, "width": image_size}
    steps = (processor or ChestImageProcessor(size=square)).resize_steps()
    if dict(steps.size) != square:
        raise ValueError(f"the processor resizes to {dict(steps.size)}, not to {square}")
    if steps.crops_lungs and (mask_column is None or ct_column is not None):
        raise ValueError(
            "the lung crop needs a lung mask for every X-ray (mask_column) and applies to "
            "X-ray-only data (no ct_column)"
        )
    image_columns = [column for column in (image_column, mask_column, ct_column) if column]
    cache_root = resolve_cache_dir(cache_dir) / "preprocessed"
    cache_root.mkdir(parents=True, exist_ok=True)
    function = _DecodeAndResize(
        steps, image_size, image_column, mask_column, ct_column, label_column
    )
    result = {}
    for split, dataset in dataset_dict.items():
        missing = [c for c in (*image_columns, label_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"split '{split}' has no column(s) {missing}; columns are {dataset.column_names}"
            )
        for column in image_columns:
            dataset = dataset.cast_column(column, Image(decode=False))
        kept = [c for c in dataset.column_names if c not in (*image_columns, label_column)]
        features = {
            "pixel_values": Value("binary"),
            "labels": Value("int64"),
            **(
                {
                    "lung_crop_status": Value("int64"),
                    "lung_crop_box": DatasetsSequence(Value("float32"), length=4),
                }
                if steps.crops_lungs
                else {}
            ),
            **(
                {"lung_mask": Value("binary"), "mask_available": Value("bool")}
                if mask_column
                else {}
            ),
            **(
                {
                    "ct_pixel_values": Value("binary"),
                    "xray_available": Value("bool"),
                    "ct_available": Value("bool"),
                }
                if ct_column
                else {}
            ),
            **{column: dataset.features[column] for column in kept},
        }
        settings = {
            "version": _PREPROCESS_VERSION,
            "image_size": image_size,
            "steps": {
                name: getattr(steps, name)
                for name in ("resample", "mask_threshold", *CACHED_STEP_SETTINGS)
            },
            "columns": [image_column, mask_column, ct_column, label_column],
        }
        key = _cache_key(dataset.to_dict(), image_columns, settings)
        processed = dataset.map(
            function,
            batched=True,
            batch_size=32,
            remove_columns=[*image_columns, label_column],
            features=Features(features),
            cache_file_name=str(cache_root / f"{key}.arrow"),
            load_from_cache_file=True,
            new_fingerprint=key,
            num_proc=num_proc,
            desc=f"Decoding and resizing {split} to {image_size}x{image_size}",
        )
        result[split] = processed.with_transform(_UInt8Tensors(image_size))
    return DatasetDict(result)


class ChestBatchCollator:
    """Batch preprocessed examples into float tensors for a model (training and evaluation).

    The last preprocessing step (channel repeat, normalisation) is the image processor's own
    :meth:`ChestImageProcessor.to_model_input`, so a model sees the same values in training as
    when served by that processor.

    Args:
        augmentation: Applied to each batch, one draw per example (train split only); None for
            evaluation.
        processor: The `ChestImageProcessor` saved with the model (channels and normalisation);
            None: one grayscale channel in [0, 1].
        input_names: Batch keys to keep (a model family's inputs); None keeps every key.
        label_key: Batch key returned as ``labels`` when ``input_names`` is given (the lung mask
            for segmentation).

    Returns (when called on a list of examples):
        ``pixel_values`` (B, C, H, W) float in [0, 1] (normalised if the processor says so), and
        when present in the examples ``lung_mask`` (B, 1, H, W) float 0/1, ``ct_pixel_values``
        (B, C, H, W), ``xray_available`` / ``ct_available`` (B,) bool, ``labels`` (B,) long.
    """

    def __init__(
        self,
        augmentation: ChestAugmentation | None = None,
        processor: ChestImageProcessor | None = None,
        *,
        input_names: Sequence[str] | None = None,
        label_key: str = "labels",
    ):
        self.augmentation = augmentation
        self.processor = processor or ChestImageProcessor(num_channels=1)
        self.input_names = None if input_names is None else tuple(input_names)
        self.label_key = label_key

    @staticmethod
    def _stack(examples: Sequence[dict], key: str, *, image: bool) -> torch.Tensor:
        """Stack one key; uint8 images are scaled to [0, 1], masks (0/1) and floats kept."""
        stacked = torch.stack([torch.as_tensor(example[key]) for example in examples])
        if image and stacked.dtype == torch.uint8:
            return stacked.to(torch.float32).div_(255.0)
        return stacked.to(torch.float32)

    def _augment(
        self,
        pixel_values: torch.Tensor,
        lung_mask: torch.Tensor | None,
        ct_pixel_values: torch.Tensor | None,
        flags: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One batched call per modality; missing images stay zeros (no noise on nothing)."""
        pixel_values, lung_mask = self.augmentation.augment_batch(
            pixel_values, lung_mask, apply=flags.get("xray_available")
        )
        if ct_pixel_values is not None:
            ct_pixel_values, _ = self.augmentation.augment_batch(
                ct_pixel_values, apply=flags.get("ct_available")
            )
        return pixel_values, lung_mask, ct_pixel_values

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        batch: dict[str, torch.Tensor] = {}
        first = examples[0]
        pixel_values = self._stack(examples, "pixel_values", image=True)
        lung_mask = (
            self._stack(examples, "lung_mask", image=False) if "lung_mask" in first else None
        )
        ct_pixel_values = (
            self._stack(examples, "ct_pixel_values", image=True)
            if "ct_pixel_values" in first
            else None
        )
        flags = {
            key: torch.tensor([bool(example[key]) for example in examples])
            for key in ("xray_available", "ct_available")
            if key in first
        }
        if self.augmentation is not None:
            pixel_values, lung_mask, ct_pixel_values = self._augment(
                pixel_values, lung_mask, ct_pixel_values, flags
            )
        batch["pixel_values"] = self.processor.to_model_input(pixel_values)
        if lung_mask is not None:
            batch["lung_mask"] = lung_mask
        if ct_pixel_values is not None:
            batch["ct_pixel_values"] = self.processor.to_model_input(ct_pixel_values)
        batch.update(flags)
        if "labels" in first:
            batch["labels"] = torch.tensor(
                [int(example["labels"]) for example in examples], dtype=torch.long
            )
        if self.input_names is None:
            return batch
        missing = [name for name in (*self.input_names, self.label_key) if name not in batch]
        if missing:
            raise KeyError(f"the examples lack {missing} (they have {sorted(batch)})")
        selected = {name: batch[name] for name in self.input_names}
        selected["labels"] = batch[self.label_key]
        return selected
