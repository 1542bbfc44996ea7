"""Lung masks made by a trained lung U-Net: `LungSegmenter`, and masks for every image of a data set.

In the public collections only the ieee8023 X-rays (nearly all COVID-19) have human lung masks.
A model fed "a mask where there is one" could read the class from the mask's presence, or from
its style (crisp human outline vs smooth U-Net output). So the dual-channel model of the study
gets the U-Net's mask for *every* image; the human masks are kept beside them in
``human_mask`` to measure what the U-Net's masks cost where both exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from .checkpoints import CheckpointSource, load_checkpoint
from .data.io import load_image
from .data.resize import resize_image
from .data.summary import read_build_summary

__all__ = ["HUMAN_MASK_COLUMN", "LungSegmenter", "add_unet_masks", "with_human_masks"]


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

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The (H, W) bool lung mask of a 2-D image in [0, 1], at the image's resolution."""
        pixel_values = self.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            mask = self.model.predict_mask(pixel_values)[0, 0].float().numpy()
        return resize_image(mask, image.shape, nearest=True) > 0.5


HUMAN_MASK_COLUMN = "human_mask"
"""Column that keeps the collection's own (human) lung mask, None where there is none."""


def _mask_values(split, column: str) -> list[str | None]:
    """The file path of each row's image in ``column`` (None where empty), without decoding."""
    values = split.select_columns([column]).cast_column(column, Image(decode=False))[column]
    return [value["path"] if value is not None else None for value in values]


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
        mask_dir: Where the mask PNGs go (``<split>/<row>.png``, 0 background / 255 lung, at the
            image's resolution); never inside a collection.
        checkpoint_name: How the build summary names the U-Net.
        progress: Show a progress bar.

    Returns:
        The dataset with ``mask`` from the U-Net for every row, ``human_mask`` holding the
        collection's masks, and the build summary saying so.
    """
    mask_dir = Path(mask_dir)
    summary = read_build_summary(dataset)
    made: dict[str, list[str | None]] = {}
    human_count = 0
    for name, split in dataset.items():
        folder = mask_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[str | None] = []
        images = _mask_values(split, "image")
        for row, image_path in enumerate(
            tqdm(images, desc=f"U-Net masks ({name})", disable=not progress)
        ):
            mask = segmenter.segment(load_image(image_path))
            target = folder / f"{row:05d}.png"
            PILImage.fromarray(mask.astype(np.uint8) * 255).save(target)
            paths.append(str(target))
        made[name] = paths
        human_count += sum(path is not None for path in _mask_values(split, "mask"))
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
    keep = [index for index, path in enumerate(_mask_values(split, HUMAN_MASK_COLUMN)) if path]
    return split.select(keep).remove_columns("mask").rename_column(HUMAN_MASK_COLUMN, "mask")
