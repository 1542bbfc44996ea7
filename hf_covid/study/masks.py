"""Lung masks made by the trained U-Net for every image of a composition.

In the public collections only the ieee8023 X-rays (nearly all COVID-19) have human lung masks.
A model fed "a mask where there is one" could read the class from the mask's presence, or from
its style (crisp human outline vs smooth U-Net output). So the dual-channel model of the study
gets the U-Net's mask for *every* image; the human masks are kept beside them in
``human_mask`` to measure what the U-Net's masks cost where both exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from tqdm.auto import tqdm

from hf_covid.data.io import load_image
from hf_covid.data.summary import read_build_summary
from hf_covid.inference import LungSegmenter

__all__ = ["HUMAN_MASK_COLUMN", "add_unet_masks", "with_human_masks"]

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
