"""What the lung crop costs: serving latency with and without it, and the preprocessing time it
adds to a training run (the U-Net runs once per image; its masks are cached).

Serving: one classifier's :class:`~hf_covid.serving.ChestPredictor` on the same X-ray, saved once
with a plain processor and once with a lung-cropping one and the lung U-Net beside it; the crop
adds one U-Net pass per request. Training: `hf_covid.training.load_training_data` on the same
phantom folder without the crop, with it on an empty mask cache (every mask made), and with it
again (every mask and every preprocessed image read from the caches).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import LUNG_SEGMENTER_FOLDER, save_model_and_processor
from ..data import load_image
from ..registry import get_model_family
from ..serving import ChestPredictor
from ..training import DataArguments, ModelArguments, build_image_processor, load_training_data
from .demo_models import build_demo_model

__all__ = ["CROP_MARGIN", "measure_lung_crop"]

CROP_MARGIN = 0.08
"""The margin of the crop measured (the study's)."""


def _percentiles(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * float(np.percentile(seconds, 50)),
        "p95_ms": 1000 * float(np.percentile(seconds, 95)),
    }


def _save_checkpoint(
    recipe: dict[str, Any], unet_recipe: dict[str, Any], folder: Path, image_size: int, crop: bool
) -> Path:
    arguments = ModelArguments(
        model_type=recipe["model_type"], config_overrides=recipe.get("config_overrides")
    )
    data_arguments = DataArguments(
        image_size=image_size,
        mask_model="lung_unet" if crop else None,
        lung_crop_margin=CROP_MARGIN if crop else None,
    )
    unet = None
    if crop:
        unet_model = build_demo_model(unet_recipe)
        unet_arguments = ModelArguments(model_type=unet_recipe["model_type"])
        unet = (
            unet_model,
            build_image_processor(
                unet_arguments, DataArguments(image_size=unet_recipe["image_size"])
            ),
        )
    save_model_and_processor(
        build_demo_model(recipe),
        build_image_processor(arguments, data_arguments),
        folder,
        lung_segmenter=unet,
    )
    return folder


def _serving(checkpoint: Path, xray: np.ndarray, repeats: int) -> dict[str, float]:
    predictor = ChestPredictor.from_pretrained(checkpoint)
    predictor.predict(xray=xray)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(xray=xray)
        seconds.append(time.perf_counter() - start)
    return _percentiles(seconds)


def _preprocessing_seconds(
    family_key: str, radiography_dir: Path, cache_dir: Path, image_size: int, unet: Path | None
) -> float:
    arguments = DataArguments(
        data_dir=str(radiography_dir),
        image_size=image_size,
        cache_dir=str(cache_dir),
        mask_model=str(unet) if unet else None,
        lung_crop_margin=CROP_MARGIN if unet else None,
    )
    start = time.perf_counter()
    load_training_data(get_model_family(family_key), arguments)
    return time.perf_counter() - start


def measure_lung_crop(
    recipe: dict[str, Any],
    unet_recipe: dict[str, Any],
    radiography_dir: str | Path,
    work_dir: str | Path,
    *,
    image_size: int,
    repeats: int,
) -> dict[str, Any]:
    """Serving latency with and without the lung crop, and the preprocessing time it adds.

    Args:
        recipe: The demo recipe of the X-ray classifier measured.
        unet_recipe: The lung U-Net's demo recipe (randomly initialised: speed does not depend
            on the weights).
        radiography_dir: A phantom set in the Radiography layout.
        work_dir: Scratch folder (checkpoints, caches).
        image_size: The classifier's input size.
        repeats: Timed predictions per variant.

    Returns:
        ``serving``: ``without_crop`` and ``with_crop`` p50 / p95 (ms) and their ratio;
        ``training_preprocessing_s``: ``without_crop``, ``with_crop_first_run`` (every U-Net
        mask made) and ``with_crop_cached`` (masks and images read back), with the images count;
        the load average before and after.
    """
    work_dir, radiography_dir = Path(work_dir), Path(radiography_dir)
    load_before = list(os.getloadavg())
    plain = _save_checkpoint(recipe, unet_recipe, work_dir / "plain", image_size, crop=False)
    cropping = _save_checkpoint(recipe, unet_recipe, work_dir / "cropping", image_size, crop=True)
    xray = load_image(next((radiography_dir / "COVID" / "images").glob("*.png")))
    serving = {
        "without_crop": _serving(plain, xray, repeats),
        "with_crop": _serving(cropping, xray, repeats),
        "xray_size": list(xray.shape[:2]),
    }
    serving["p50_ratio"] = serving["with_crop"]["p50_ms"] / serving["without_crop"]["p50_ms"]
    unet = cropping / LUNG_SEGMENTER_FOLDER
    family_key = get_model_family(recipe["model_type"]).key
    training = {
        "without_crop": _preprocessing_seconds(
            family_key, radiography_dir, work_dir / "cache_plain", image_size, None
        ),
        "with_crop_first_run": _preprocessing_seconds(
            family_key, radiography_dir, work_dir / "cache_crop", image_size, unet
        ),
        "with_crop_cached": _preprocessing_seconds(
            family_key, radiography_dir, work_dir / "cache_crop", image_size, unet
        ),
        "images": sum(1 for _ in radiography_dir.glob("*/images/*.png")),
    }
    return {
        "model": family_key,
        "serving": serving,
        "training_preprocessing_s": training,
        "load_average": load_before,
        "load_average_after": list(os.getloadavg()),
    }
