"""Lung masks made by a trained lung U-Net: `LungSegmenter`, and masks for every image of a data set.

In the public collections only the ieee8023 X-rays (nearly all COVID-19) have human lung masks.
A model fed "a mask where there is one" could read the class from the mask's presence, or from
its style (crisp human outline vs smooth U-Net output). So the dual-channel model of the study
gets the U-Net's mask for *every* image; the human masks are kept beside them in
``human_mask`` to measure what the U-Net's masks cost where both exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from .checkpoints import (
    LUNG_SEGMENTER_FOLDER,
    CheckpointSource,
    load_checkpoint,
    resolve_checkpoint,
)
from .data.io import load_image
from .data.summary import read_build_summary
from .models.labels import LUNG_MASK_LABELS

__all__ = [
    "HUMAN_MASK_COLUMN",
    "UNET_MASK_CACHE",
    "LungSegmenter",
    "add_unet_masks",
    "checkpoint_segmenter",
    "mask_paths",
    "mask_presence",
    "with_human_masks",
]


class LungSegmenter:
    """The lung U-Net: a lung mask for a chest X-ray.

    Args:
        model: a segmentation model with ``predict_mask(pixel_values) -> (B, 1, H, W)``.
        image_processor: its :class:`ChestImageProcessor`.
    """

    def __init__(self, model: PreTrainedModel, image_processor: Any) -> None:
        self.model = model.eval()
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike | CheckpointSource) -> LungSegmenter:
        """Load the U-Net and its processor from a checkpoint folder or Hub id (at a revision)."""
        return cls(*load_checkpoint(path_or_repo))

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the weights and the processor settings: two segmenters with the same
        fingerprint make the same masks (the key of their mask cache)."""
        digest = hashlib.sha256(f"mask method {MASK_METHOD_VERSION}".encode())
        digest.update(
            json.dumps(self.image_processor.to_dict(), sort_keys=True, default=str).encode()
        )
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The (H, W) bool lung mask of a 2-D image in [0, 1], at the image's resolution.

        The processor's ``post_process_semantic_segmentation`` (logits resized to the image,
        then thresholded) makes it, as the ``image-segmentation`` pipeline does, so that the
        chest pipeline's lung crop is the one training and serving make.
        """
        pixel_values = self.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            outputs = self.model(pixel_values=pixel_values)
        label_map = self.image_processor.post_process_semantic_segmentation(
            outputs, target_sizes=[image.shape[:2]]
        )[0]
        return label_map.numpy() == self.model.config.label2id[LUNG_MASK_LABELS[1]]


def checkpoint_segmenter(
    checkpoint: str | os.PathLike, processor: Any = None
) -> LungSegmenter | None:
    """The lung U-Net a checkpoint was trained with, or None when it has none.

    Its own copy (`LUNG_SEGMENTER_FOLDER`) where the checkpoint has one; else, for a processor
    that crops to the lungs, the U-Net its ``lung_crop_segmenter`` names (a folder or Hub id).

    Raises:
        FileNotFoundError: the processor crops to the lungs and its U-Net is nowhere to be found.
    """
    path = resolve_checkpoint(checkpoint)
    if (path / LUNG_SEGMENTER_FOLDER).is_dir():
        return LungSegmenter.from_pretrained(path / LUNG_SEGMENTER_FOLDER)
    if processor is None or not getattr(processor, "crops_lungs", False):
        return None
    named = processor.lung_crop_segmenter
    if named and named != LUNG_SEGMENTER_FOLDER:
        return LungSegmenter.from_pretrained(named)
    raise FileNotFoundError(
        f"checkpoint '{checkpoint}' crops every image to its lungs, but its lung U-Net is "
        f"missing: no {LUNG_SEGMENTER_FOLDER}/ folder in it (the processor names "
        f"{named or 'none'}); copy the U-Net it was trained with there"
    )


def mask_presence(split: Any, column: str = "mask") -> np.ndarray:
    """Whether each row of ``split`` has a mask (read without decoding the images)."""
    if column not in split.column_names:
        return np.zeros(len(split), dtype=bool)
    return np.array([value is not None for value in _raw_values(split, column)], dtype=bool)


MASK_METHOD_VERSION = 2
"""Part of a segmenter's fingerprint: a change in how :meth:`LungSegmenter.segment` makes a mask
from the U-Net's output makes every cached mask stale."""
UNET_MASK_CACHE = "unet_masks"
"""Below a cache folder: the lung U-Net's masks of every image, by U-Net and image."""
HUMAN_MASK_COLUMN = "human_mask"
"""Column that keeps the collection's own (human) lung mask, None where there is none."""


def mask_paths(split, column: str) -> list[str | None]:
    """The file path of each row's image in ``column`` (None where empty), without decoding."""
    return [value["path"] if value is not None else None for value in _raw_values(split, column)]


def _raw_values(split, column: str) -> list[dict | None]:
    """Each row's ``{"path", "bytes"}`` of ``column``, without decoding."""
    return split.select_columns([column]).cast_column(column, Image(decode=False))[column]


def _image_key(value: dict) -> str:
    """A file name for an image's mask: the hash of its bytes, or of its path, size and mtime."""
    if value.get("bytes"):
        return hashlib.sha1(value["bytes"]).hexdigest()
    stat = os.stat(value["path"])
    return hashlib.sha1(
        f"{os.path.abspath(value['path'])}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()


def add_unet_masks(
    dataset: DatasetDict,
    segmenter: LungSegmenter,
    mask_dir: str | Path,
    *,
    checkpoint_name: str = "lung U-Net",
    progress: bool = True,
) -> DatasetDict:
    """Give every image the U-Net's lung mask; keep the human mask in `HUMAN_MASK_COLUMN`.

    Args:
        dataset: A Radiography-layout `DatasetDict` (``image`` and ``mask`` columns), e.g. from
            `hf_covid.data.public.compose.compose_radiography`.
        segmenter: The trained lung U-Net.
        mask_dir: The mask cache: PNGs (0 background / 255 lung, at the image's resolution) in
            ``<segmenter fingerprint>/<image key>.png``, the key a hash of the image file's path,
            size and modification time (or of its bytes). A mask already there is reused, so
            the U-Net runs once per image and segmenter. Never inside a collection.
        checkpoint_name: How the build summary names the U-Net.
        progress: Show a progress bar.

    Returns:
        The dataset with ``mask`` from the U-Net for every row, ``human_mask`` holding the
        collection's masks, and the build summary saying so.
    """
    folder = Path(mask_dir) / segmenter.fingerprint
    folder.mkdir(parents=True, exist_ok=True)
    summary = read_build_summary(dataset)
    made: dict[str, list[str | None]] = {}
    human_count = 0
    for name, split in dataset.items():
        paths: list[str | None] = []
        for value in tqdm(
            _raw_values(split, "image"), desc=f"U-Net masks ({name})", disable=not progress
        ):
            target = folder / f"{_image_key(value)}.png"
            if not target.is_file():
                mask = segmenter.segment(load_image(value.get("bytes") or value["path"]))
                partial = target.with_suffix(".part.png")
                PILImage.fromarray(mask.astype(np.uint8) * 255).save(partial)
                partial.replace(target)  # never a half-written mask under the final name
            paths.append(str(target))
        made[name] = paths
        human_count += sum(path is not None for path in mask_paths(split, "mask"))
    renamed = DatasetDict(
        {name: split.rename_column("mask", HUMAN_MASK_COLUMN) for name, split in dataset.items()}
    )
    result = DatasetDict(
        {
            name: split.add_column("mask", made[name]).cast_column("mask", Image())
            for name, split in renamed.items()
        }
    )
    if summary is not None:
        total = sum(len(split) for split in dataset.values())
        summary.masks = {"lung_unet": total, "human_kept_in_human_mask": human_count}
        summary.notes.append(
            f"The mask column holds the {checkpoint_name}'s lung mask for all {total} images "
            f"(one mask source for every class); the {human_count} human masks are kept in "
            f"'{HUMAN_MASK_COLUMN}'."
        )
        for split in result.values():
            split.info.description = summary.to_json()
    return result


def with_human_masks(split):
    """The rows of a `add_unet_masks` split that have a human mask, with it as ``mask``."""
    keep = [index for index, path in enumerate(mask_paths(split, HUMAN_MASK_COLUMN)) if path]
    return split.select(keep).remove_columns("mask").rename_column(HUMAN_MASK_COLUMN, "mask")
