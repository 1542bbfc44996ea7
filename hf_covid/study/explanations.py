"""Explanations of the study's classifiers on real X-rays, per configuration of the ablation.

For a trained classifier, on the COVID-19 test X-rays of its own test split that have a human
(v7labs) lung mask, in the model's own view (its lung crop and standardisation; the human mask
cropped to the same box):

- **Where the evidence lies**: the fraction of Grad-CAM and of HiResCAM energy (the sum of the
  map, :func:`hf_covid.explain.energy_inside`) inside the lung mask, for the COVID class, next
  to the lung area fraction, which is what a uniform map scores. A model whose interval lies
  above the area fraction puts its evidence on the lungs; one below it looks elsewhere.
- **Whether the map is faithful** (deletion, in the spirit of ROAD: Rong et al., "A Consistent
  and Efficient Evaluation Strategy for Attribution Methods", ICML 2022): the drop of the COVID
  probability when the top-k% most-attributed pixels are removed, against removing the
  bottom-k%. Removed pixels are filled in from their kept neighbours (normalised box blur), not
  set to black, so that the removal itself does not create strong edges the model reacts to.

Intervals are bootstraps over patients. Research software: a map shows what a model used, not
where disease is; no diagnosis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hf_covid.checkpoints import load_checkpoint
from hf_covid.evaluation.metrics import bootstrap_mean_interval
from hf_covid.evaluation.predict import class_names_of
from hf_covid.explain import (
    CAM_METHODS,
    INPUT_KEYS,
    default_target_layers,
    energy_inside,
    plot_gradcam_overlays,
)
from hf_covid.registry import get_model_family

from .probe_data import POSITIVE_CLASS, StudyImages, model_inputs, predict_probabilities

logger = logging.getLogger(__name__)

__all__ = [
    "EMPTY_MAPS",
    "ExplanationSettings",
    "explain_checkpoint",
    "explanation_settings",
    "lung_energy",
    "remove_pixels",
    "xray_branch",
]


@dataclass(frozen=True)
class ExplanationSettings:
    """How many images and which removal fractions.

    Attributes:
        max_images: At most this many COVID test X-rays with a human mask per model.
        fractions: Fractions of the pixels removed in the deletion test.
        n_resamples: Bootstrap resamples of the intervals (over patients).
        overlays: Images shown in each model's overlay figure.
        seed: Bootstrap seed.
    """

    max_images: int = 60
    fractions: tuple[float, ...] = (0.1, 0.2)
    n_resamples: int = 1000
    overlays: int = 4
    seed: int = 0


def explanation_settings(quick: bool) -> ExplanationSettings:
    """The full settings, or tiny ones for CI (``quick``)."""
    if quick:
        return ExplanationSettings(max_images=4, fractions=(0.2,), n_resamples=100, overlays=2)
    return ExplanationSettings()


def xray_branch(model: torch.nn.Module) -> str:
    """The key of the map that explains the X-ray (``"image"`` or ``"xray"``)."""
    for key in default_target_layers(model):
        if INPUT_KEYS.get(key, "pixel_values") == "pixel_values":
            return key
    raise ValueError(f"{type(model).__name__} has no CAM layer on its X-ray input")


def lung_energy(cams: torch.Tensor, masks: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: the fraction of the map's energy inside the mask, and the mask's area fraction.

    A uniform map scores exactly the area fraction, a map that lies wholly inside scores 1.

    Args:
        cams: (N, H, W) non-negative maps.
        masks: (N, H, W) or (N, 1, H, W) binary lung masks.
    """
    masks = masks[:, 0] if masks.ndim == 4 else masks
    return {
        "energy_inside": energy_inside(cams, masks, per_image=True),
        "area_fraction": (masks > 0).flatten(1).float().mean(dim=1).numpy().astype(np.float64),
    }


def _fill_from_neighbours(images: torch.Tensor, keep: torch.Tensor, size: int = 9) -> torch.Tensor:
    """Removed pixels (``keep`` False) replaced by the mean of the kept ones around them."""
    kept = keep.float()
    total = F.avg_pool2d(images * kept, size, stride=1, padding=size // 2)
    weight = F.avg_pool2d(kept, size, stride=1, padding=size // 2)
    mean = (images * kept).flatten(1).sum(1) / kept.flatten(1).sum(1).clamp_min(1)
    filled = torch.where(weight > 0, total / weight.clamp_min(1e-6), mean[:, None, None, None])
    return torch.where(keep, images, filled)


def remove_pixels(
    images: torch.Tensor, attributions: torch.Tensor, fraction: float, *, most: bool
) -> torch.Tensor:
    """``images`` with the ``fraction`` most (or least) attributed pixels removed (filled in).

    Args:
        images: (N, 1, H, W) X-rays in [0, 1].
        attributions: (N, H, W) maps.
        fraction: Share of each image's pixels to remove, in (0, 1).
        most: Remove the most attributed pixels (else the least).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    flat = attributions.flatten(1)
    count = max(1, round(fraction * flat.shape[1]))
    # Ties (flat regions of a map) are broken at random, not by position.
    jitter = torch.rand(flat.shape, generator=torch.Generator().manual_seed(0)) * 1e-6
    order = (flat + jitter).argsort(dim=1, descending=most)[:, :count]
    keep = torch.ones_like(flat, dtype=torch.bool).scatter(1, order, False)
    return _fill_from_neighbours(images, keep.view(images.shape))


EMPTY_MAPS = "no map: every map is zero"
"""Verdict of a method whose maps are all zero (no positive evidence for the class)."""


def _mean_with_interval(
    values: np.ndarray, settings: ExplanationSettings, groups: list | None = None
) -> dict:
    low, high = bootstrap_mean_interval(values, settings.n_resamples, 0.95, settings.seed, groups)
    return {"mean": float(values.mean()), "interval": [low, high]}


def _verdict(excess: Mapping) -> str:
    low, high = excess["interval"]
    if low > 0:
        return "more on the lungs than a uniform map"
    if high < 0:
        return "less on the lungs than a uniform map"
    return "no different from a uniform map"


def explain_checkpoint(
    key: str,
    checkpoint_dir: Path,
    test: StudyImages,
    settings: ExplanationSettings,
    figure: Path | None = None,
) -> dict:
    """Energy inside the lungs and deletion faithfulness of one classifier's CAMs.

    Args:
        key: The model's family key (for the figure's titles).
        checkpoint_dir: Its checkpoint folder.
        test: Its test split in its own view (:func:`~hf_covid.study.probe_data.load_study_images`).
        settings: Image counts and removal fractions.
        figure: Where the Grad-CAM overlays go (they show the collections' images: keep them out
            of a repository), or None for none.

    Returns:
        ``n_images``, ``covid_probability``, ``lung_area_fraction`` and per method of
        ``CAM_METHODS`` the ``energy_inside``, ``excess_over_uniform``, its ``verdict`` and the
        ``deletion`` scores; or ``skipped`` with the reason.
    """
    logger.info("explanations: %s", key)
    model, processor = load_checkpoint(checkpoint_dir)
    class_names = class_names_of(model.config)
    entry: dict = {"model": key, "display_name": get_model_family(key).display_name}
    if POSITIVE_CLASS not in class_names or POSITIVE_CLASS not in test.class_names:
        return entry | {"skipped": f"no {POSITIVE_CLASS} class"}
    rows = np.flatnonzero(
        (test.labels == test.class_names.index(POSITIVE_CLASS)) & test.has_human_mask
    )[: settings.max_images]
    if rows.size == 0:
        return entry | {"skipped": "no COVID test X-ray with a human lung mask"}
    images = test.select(rows)
    groups = images.groups
    covid = class_names.index(POSITIVE_CLASS)
    # The dual-channel model takes the U-Net's mask as input, as in training.
    inputs = model_inputs(model, processor, images.images, images.unet_masks)
    branch = xray_branch(model)
    base = predict_probabilities(model, processor, images.images, images.unet_masks)[:, covid]
    entry |= {
        "n_images": int(rows.size),
        "covid_probability": _mean_with_interval(base, settings, groups),
        "methods": {},
    }
    area = None
    for method, cam_class in CAM_METHODS.items():
        cams = cam_class(model)(inputs, class_index=covid)[branch]
        scores = lung_energy(cams, images.human_masks)
        area = scores["area_fraction"]
        # An all-zero map (no positive evidence for COVID) points nowhere: left out of the energy.
        drawn = cams.flatten(1).amax(dim=1).numpy() > 0
        drawn_groups = [group for group, kept in zip(groups, drawn, strict=True) if kept]
        result: dict = {"n_empty_maps": int((~drawn).sum()), "verdict": EMPTY_MAPS}
        if drawn.any():
            excess = _mean_with_interval(
                scores["energy_inside"][drawn] - area[drawn], settings, drawn_groups
            )
            result |= {
                "energy_inside": _mean_with_interval(
                    scores["energy_inside"][drawn], settings, drawn_groups
                ),
                "excess_over_uniform": excess,
                "verdict": _verdict(excess),
            }
        result["deletion"] = {}
        for fraction in settings.fractions:
            drops = {}
            for most, name in ((True, "top"), (False, "bottom")):
                removed = remove_pixels(images.images, cams, fraction, most=most)
                probability = predict_probabilities(model, processor, removed, images.unet_masks)
                drops[name] = base - probability[:, covid]
            result["deletion"][f"{fraction:g}"] = {
                "drop_top": _mean_with_interval(drops["top"], settings, groups),
                "drop_bottom": _mean_with_interval(drops["bottom"], settings, groups),
                "faithfulness": _mean_with_interval(
                    drops["top"] - drops["bottom"], settings, groups
                ),
            }
        entry["methods"][method] = result
        if method == "gradcam" and figure is not None:
            shown = min(settings.overlays, int(rows.size))
            plot_gradcam_overlays(
                [images.images[i, 0].numpy() for i in range(shown)],
                [cams[i].numpy() for i in range(shown)],
                figure,
                titles=[f"{key}: P({POSITIVE_CLASS}) {base[i]:.2f}" for i in range(shown)],
                contours=[images.human_masks[i, 0].numpy() for i in range(shown)],
            )
            entry["figure"] = figure.name
    entry["lung_area_fraction"] = _mean_with_interval(area, settings, groups)
    return entry
