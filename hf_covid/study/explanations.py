"""Explanations of the study's classifiers on real X-rays (issue 14.4).

For every trained classifier that takes an X-ray (``<study_dir>/models/<family key>``), on the
COVID-19 test X-rays of its own test split that have a human (v7labs) lung mask:

- **Where the evidence lies**: the fraction of Grad-CAM and of HiResCAM energy (the sum of the
  map, :func:`hf_covid.explain.energy_inside`) inside the lung mask, for the COVID class, next
  to the lung area fraction, which is what a uniform map scores. A model whose interval lies
  above the area fraction puts its evidence on the lungs; one below it looks elsewhere.
- **Whether the map is faithful** (deletion, in the spirit of ROAD: Rong et al., "A Consistent
  and Efficient Evaluation Strategy for Attribution Methods", ICML 2022): the drop of the COVID
  probability when the top-k% most-attributed pixels are removed, against removing the
  bottom-k%. Removed pixels are filled in from their kept neighbours (normalised box blur), not
  set to black, so that the removal itself does not create strong edges the model reacts to.

Research software: a map shows what a model used, not where disease is; no diagnosis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature

from hf_covid.checkpoints import load_checkpoint
from hf_covid.data.public import ieee8023
from hf_covid.data.public.common import locate_collection
from hf_covid.evaluation.inputs import model_image_size
from hf_covid.evaluation.metrics import bootstrap_mean_interval
from hf_covid.evaluation.predict import class_names_of
from hf_covid.evaluation.report import markdown_table
from hf_covid.explain import (
    CAM_METHODS,
    INPUT_KEYS,
    default_target_layers,
    energy_inside,
    plot_gradcam_overlays,
)
from hf_covid.registry import get_model_family

from .probe_data import (
    FIGURES_DIR,
    LUNG_UNET,
    POSITIVE_CLASS,
    Compositions,
    LungMasker,
    StudyImages,
    load_study_images,
    model_inputs,
    one_torch_thread,
    predict_probabilities,
    study_checkpoints,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EMPTY_MAPS",
    "ExplanationSettings",
    "explanation_settings",
    "explanations_markdown",
    "lung_energy",
    "remove_pixels",
    "run_explanations",
    "xray_branch",
]


@dataclass(frozen=True)
class ExplanationSettings:
    """How many images and which removal fractions.

    Attributes:
        max_images: At most this many COVID test X-rays with a human mask per model.
        fractions: Fractions of the pixels removed in the deletion test.
        n_resamples: Bootstrap resamples of the intervals (over images).
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


def _covid_xrays_with_masks(
    key: str, checkpoint_dir: Path, compositions: Compositions, collections_root: Path
) -> Dataset:
    """The COVID X-rays of the model's test split that have a human lung mask."""
    family = get_model_family(key)
    test = compositions.for_checkpoint(checkpoint_dir, family.dataset_kind)["test"]
    if family.dataset_kind == "radiography":
        covid = test.features["label"].names.index(POSITIVE_CLASS)
        masks = test.select_columns(["mask"]).cast_column("mask", ImageFeature(decode=False))
        rows = [
            index
            for index, (label, mask) in enumerate(zip(test["label"], masks["mask"], strict=True))
            if label == covid and mask is not None
        ]
        return test.select(rows)
    # X-ray + CT layout: the human masks live beside the ieee8023 images.
    root = locate_collection(
        collections_root, ieee8023.FOLDER_NAMES, ieee8023.is_collection, ieee8023.TITLE
    )
    covid = test.features["label"].names.index(POSITIVE_CLASS)
    rows = {"image": [], "mask": [], "label": [], "image_id": [], "source": []}
    for xray_id, label in zip(test["xray_id"], test["label"], strict=True):
        source, _, relative = (xray_id or "").partition("/")
        mask = root / "masks" / f"{Path(relative).stem}.png"
        if label == covid and source == ieee8023.SOURCE and mask.is_file():
            rows["image"].append(str(root / relative))
            rows["mask"].append(str(mask))
            rows["label"].append(0)
            rows["image_id"].append(relative)
            rows["source"].append(source)
    features = Features(
        {
            "image": ImageFeature(),
            "mask": ImageFeature(),
            "label": ClassLabel(names=[POSITIVE_CLASS]),
            "image_id": Value("string"),
            "source": Value("string"),
        }
    )
    return Dataset.from_dict(rows, features=features)


EMPTY_MAPS = "no map: every map is zero"
"""Verdict of a method whose maps are all zero (no positive evidence for the class)."""


def _mean_with_interval(values: np.ndarray, settings: ExplanationSettings) -> dict:
    low, high = bootstrap_mean_interval(values, settings.n_resamples, 0.95, settings.seed)
    return {"mean": float(values.mean()), "interval": [low, high]}


def _verdict(excess: Mapping) -> str:
    low, high = excess["interval"]
    if low > 0:
        return "more on the lungs than a uniform map"
    if high < 0:
        return "less on the lungs than a uniform map"
    return "no different from a uniform map"


def _explain_model(
    key: str,
    checkpoint_dir: Path,
    compositions: Compositions,
    collections_root: Path,
    masker: LungMasker | None,
    settings: ExplanationSettings,
    figures_dir: Path,
) -> dict:
    logger.info("explanations: %s", key)
    model, processor = load_checkpoint(checkpoint_dir)
    family = get_model_family(model.config.model_type)
    class_names = class_names_of(model.config)
    entry: dict = {"model": key, "display_name": family.display_name}
    if POSITIVE_CLASS not in class_names:
        return entry | {"skipped": f"the model has no {POSITIVE_CLASS} class"}
    split = _covid_xrays_with_masks(key, checkpoint_dir, compositions, collections_root)
    split = split.select(range(min(len(split), settings.max_images)))
    if len(split) == 0:
        return entry | {"skipped": "no COVID test X-ray with a human lung mask"}
    size = model_image_size(model.config, processor)
    images: StudyImages = load_study_images(split, size)
    # The dual-channel model was trained with U-Net masks as its mask input.
    input_masks = masker(images.images) if masker is not None else images.human_masks
    covid = class_names.index(POSITIVE_CLASS)
    inputs = model_inputs(model, processor, images.images, input_masks)
    branch = xray_branch(model)
    base = predict_probabilities(model, processor, images.images, input_masks)[:, covid]
    entry |= {
        "n_images": len(split),
        "covid_probability": _mean_with_interval(base, settings),
        "methods": {},
    }
    area = None
    for method, cam_class in CAM_METHODS.items():
        cams = cam_class(model)(inputs, class_index=covid)[branch]
        scores = lung_energy(cams, images.human_masks)
        area = scores["area_fraction"]
        # An all-zero map (no positive evidence for COVID) points nowhere: left out of the energy.
        drawn = cams.flatten(1).amax(dim=1).numpy() > 0
        result: dict = {"n_empty_maps": int((~drawn).sum()), "verdict": EMPTY_MAPS}
        if drawn.any():
            excess = _mean_with_interval(scores["energy_inside"][drawn] - area[drawn], settings)
            result |= {
                "energy_inside": _mean_with_interval(scores["energy_inside"][drawn], settings),
                "excess_over_uniform": excess,
                "verdict": _verdict(excess),
            }
        result["deletion"] = {}
        for fraction in settings.fractions:
            drops = {}
            for most, name in ((True, "top"), (False, "bottom")):
                removed = remove_pixels(images.images, cams, fraction, most=most)
                probability = predict_probabilities(model, processor, removed, input_masks)
                drops[name] = base - probability[:, covid]
            result["deletion"][f"{fraction:g}"] = {
                "drop_top": _mean_with_interval(drops["top"], settings),
                "drop_bottom": _mean_with_interval(drops["bottom"], settings),
                "faithfulness": _mean_with_interval(drops["top"] - drops["bottom"], settings),
            }
        entry["methods"][method] = result
        if method == "gradcam":
            shown = min(settings.overlays, len(split))
            path = plot_gradcam_overlays(
                [images.images[i, 0].numpy() for i in range(shown)],
                [cams[i].numpy() for i in range(shown)],
                figures_dir / f"explanations_{key}.png",
                titles=[f"{key}: P({POSITIVE_CLASS}) {base[i]:.2f}" for i in range(shown)],
                contours=[images.human_masks[i, 0].numpy() for i in range(shown)],
            )
            entry["figure"] = path.name
    entry["lung_area_fraction"] = _mean_with_interval(area, settings)
    return entry


def run_explanations(study_dir: Path, collections_root: Path, *, quick: bool) -> dict:
    """Score the CAMs of the study's X-ray classifiers on real X-rays with human lung masks.

    Args:
        study_dir: The study folder (checkpoints under ``models/<family key>``; overlay figures
            go to ``figures/explanations_<key>.png``).
        collections_root: The public collections side by side.
        quick: Tiny settings for CI (:func:`explanation_settings`).

    Returns:
        A JSON-able dict: ``settings``, ``models`` (one entry per classifier: ``n_images``,
        ``lung_area_fraction``, per method ``energy_inside``, ``excess_over_uniform`` and its
        ``verdict``, ``deletion`` per removed fraction; or ``skipped`` with the reason),
        ``figures``, ``recomposed`` (dataset kinds composed again for want of a saved
        composition under ``<study_dir>/data``) and ``notes``.
    """
    with one_torch_thread():
        return _run_explanations(
            Path(study_dir), Path(collections_root), explanation_settings(quick)
        )


def _run_explanations(
    study_dir: Path, collections_root: Path, settings: ExplanationSettings
) -> dict:
    checkpoints = study_checkpoints(study_dir)
    compositions = Compositions(collections_root, study_dir)
    masker = LungMasker(checkpoints[LUNG_UNET]) if LUNG_UNET in checkpoints else None
    models = [
        _explain_model(
            key, folder, compositions, collections_root, masker, settings, study_dir / FIGURES_DIR
        )
        for key, folder in checkpoints.items()
        if get_model_family(key).task == "classification"
    ]
    notes = []
    if masker is None:
        notes.append(
            f"No lung U-Net checkpoint: models that take a lung mask got the human mask instead "
            f"of the U-Net's (models/{LUNG_UNET} missing)."
        )
    if compositions.note():
        notes.append(compositions.note())
    return {
        "settings": asdict(settings),
        "recomposed": list(compositions.recomposed),
        "models": models,
        "figures": {entry["model"]: entry["figure"] for entry in models if "figure" in entry},
        "notes": notes,
    }


def _interval_text(value: Mapping, signed: bool = False) -> str:
    number = "{:+.3f}" if signed else "{:.3f}"
    low, high = value["interval"]
    return f"{number.format(value['mean'])} [{number.format(low)}, {number.format(high)}]"


def _method_title(method: str) -> str:
    return {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}.get(method, method)


def explanations_markdown(result: Mapping) -> str:
    """The explanation section of the study document, from :func:`run_explanations`."""
    lines = [
        "## Explanations on real X-rays",
        "",
        "COVID-19 test X-rays of each model's own test split that have a human (v7labs) lung "
        "mask; maps for the COVID class. *Energy inside* is the share of the map's sum inside the "
        "lung mask; a uniform map scores the lung area fraction, so the *excess* over it is what "
        "says whether a model looks at the lungs. *Deletion*: drop of P(COVID) when the top-k% "
        "most-attributed pixels are removed (filled in from their neighbours), minus the drop "
        "when the bottom-k% are; above 0 means the map points at pixels the model uses. "
        "The dual-input model is explained on its X-ray branch with the CT marked missing; "
        "the dual-channel model gets the U-Net's mask as input, as in training. "
        "All-zero maps (no positive evidence) are left out of the energy. Intervals: 95% "
        "bootstrap over images. A map shows what a model used, not where disease is.",
        "",
    ]
    rows = []
    for entry in result["models"]:
        if "skipped" in entry:
            rows.append([entry["model"], "", "", "", "", entry["skipped"], ""])
            continue
        for method, scores in entry["methods"].items():
            deletion = ", ".join(
                f"{float(k):.0%}: {_interval_text(v['faithfulness'], signed=True)}"
                for k, v in scores["deletion"].items()
            )
            rows.append(
                [
                    entry["model"],
                    _method_title(method),
                    str(entry["n_images"]),
                    f"{entry['lung_area_fraction']['mean']:.3f}",
                    _interval_text(scores["energy_inside"]) if "energy_inside" in scores else "n/a",
                    scores["verdict"],
                    deletion,
                ]
            )
    header = [
        "Model",
        "Map",
        "Images",
        "Lung area (uniform map)",
        "Energy inside the lungs",
        "Compared with uniform",
        "Deletion: top minus bottom",
    ]
    lines += markdown_table(header, rows)
    looking = sorted(
        {
            e["model"]
            for e in result["models"]
            for s in e.get("methods", {}).values()
            if s["verdict"].startswith("more")
        }
    )
    elsewhere = sorted(
        {
            e["model"]
            for e in result["models"]
            for s in e.get("methods", {}).values()
            if s["verdict"].startswith("less")
        }
    )
    lines += [
        "",
        f"Models whose maps favour the lungs (for some method): {', '.join(looking) or 'none'}. "
        f"Models whose maps favour what lies outside them: {', '.join(elsewhere) or 'none'}.",
        "Even a map on the lungs is no evidence of COVID-19 detection here: the lungs of adults "
        "and of children differ too (see the confound probes).",
    ]
    figures = result.get("figures") or {}
    if figures:
        lines += [
            "",
            "Grad-CAM overlays (human lung mask outlined): "
            + ", ".join(f"`{name}`" for name in figures.values())
            + ".",
        ]
    if result.get("notes"):
        lines += ["", *(f"- {note}" for note in result["notes"])]
    return "\n".join(lines) + "\n"
