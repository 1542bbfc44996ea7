"""Explain a checkpoint: CAM overlays, feature-map grids and, on phantoms, measured quality.

``python scripts/visualize.py <checkpoint> --data_dir <data>`` calls :func:`main`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from .. import plots
from ..data import load_image
from ..evaluation import (
    default_output_dir,
    load_checkpoint,
    load_evaluation_split,
    prepare_inputs,
    resolve_checkpoint,
    run_build_options,
)
from ..evaluation.predict import class_names_of
from ..registry import get_model_family
from .cam import CAM_METHODS, GradCAM, cam_method, feature_maps
from .layers import INPUT_KEYS, TargetLayers, encoder_stages
from .metrics import masks_like
from .overlays import plot_feature_maps, plot_gradcam_overlays
from .quality import (
    BRANCH_ID_COLUMNS,
    LesionExamples,
    audit_shortcut_markers,
    lesion_mask_files,
    match_files,
)

__all__ = ["main", "parse_arguments", "visualize_checkpoint"]


def _lesion_contours(
    shown: Dataset, key: str, lesion_root: Path, maps: torch.Tensor
) -> list[np.ndarray | None]:
    """The lesion mask of each shown image of map ``key``, at the size of ``maps`` (None: no
    mask)."""
    default_column = "xray_id" if "xray_id" in shown.column_names else "image_id"
    column = BRANCH_ID_COLUMNS.get(key, default_column)
    return [
        None
        if mask_path is None
        else masks_like(load_image(mask_path)[None] > 0.5, maps[:1])[0].numpy()
        for mask_path in match_files(list(shown[column]), lesion_mask_files(lesion_root))
    ]


def _explanation_quality(
    model: nn.Module,
    raw: Dataset,
    lesion_root: Path,
    cam: GradCAM,
    method: str,
    processor: object | None,
    class_name: str,
    output_dir: Path,
) -> dict:
    """Scores at the chosen layers and the stage/method sweep with its figure."""
    try:
        # One read of the lesion masks and images for both the chosen layers and the sweep.
        stages = encoder_stages(model)
        branches = list(dict.fromkeys([*cam.target_layers, *stages]))
        examples = LesionExamples(model, raw, lesion_root, branches, processor, class_name)
        quality = examples.score(model, cam.target_layers, method)
        sweep = examples.sweep(model, stages, tuple(CAM_METHODS))
    except ValueError as error:  # e.g. no lesion in this split: say so, keep the figures
        return {"explanation_quality": {"error": str(error)}}
    figure = plots.plot_explanation_sweep(sweep, output_dir / "explanation_layers.png")
    return {
        "explanation_quality": quality,
        "explanation_layer_sweep": sweep,
        "figure": figure.relative_to(output_dir).as_posix(),
    }


def visualize_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    dataset: Dataset | None = None,
    split: str = "test",
    output_dir: str | Path | None = None,
    *,
    num_images: int = 4,
    class_name: str | None = "COVID",
    target_layers: TargetLayers = None,
    feature_layers: TargetLayers = None,
    max_channels: int = 16,
    build_options: Mapping | None = None,
    phantom_root: str | Path | None = None,
    method: str = "gradcam",
) -> dict:
    """CAM overlays and feature-map grids of a checkpoint, plus measured explanation quality.

    Writes to ``output_dir`` (default ``<checkpoint>/explanations_<split>`` for a folder):
    ``gradcam_<map>.png`` (inputs above their CAM overlays, lesion outlines where the data has
    phantom lesion masks), ``feature_maps.png`` (the first image's channels per layer) and
    ``explanations.json``. When the phantom folder (``phantom_root``, default ``data_dir``) holds
    ``lesion_masks/`` the pointing game and the energy inside lesions are measured, at the
    chosen layers and at every encoder stage with every method (figure
    ``explanation_layers.png``); when it holds ``shortcut_markers.csv``, the shortcut audit.

    Args:
        checkpoint: checkpoint folder or Hub id.
        data_dir: dataset root (or saved dataset).
        dataset: a built dataset instead of ``data_dir``.
        split: the split whose images are shown.
        output_dir: where the figures go.
        num_images: images shown.
        class_name: show images of this class (None or absent from the model: the first images).
        target_layers: CAM layers (None: the model's defaults).
        feature_layers: layers whose feature maps are drawn (None: the CAM layers).
        max_channels: channels per feature-map grid.
        build_options: keyword arguments of the dataset builder.
        phantom_root: folder of the phantom ground truth (default: ``data_dir``).
        method: ``"gradcam"`` or ``"hirescam"`` (:data:`~hf_covid.explain.cam.CAM_METHODS`),
            for the overlays and the measured quality.

    Returns:
        The contents of ``explanations.json``: figure paths and any measured scores.

    Raises:
        ValueError: a checkpoint that is not a classifier.
    """
    path = resolve_checkpoint(checkpoint)
    model, processor = load_checkpoint(path)
    family = get_model_family(model.config.model_type)
    if family.task != "classification":
        raise ValueError(f"CAMs explain classifiers; {family.key} is a {family.task} model")
    class_names = class_names_of(model.config)
    raw = load_evaluation_split(
        family,
        class_names,
        split,
        data_dir=data_dir,
        dataset=dataset,
        build_options=run_build_options(path, family.dataset_kind) | dict(build_options or {}),
    )
    labels = list(raw["label"])
    rows = [r for r, label in enumerate(labels) if class_names[label] == class_name]
    shown = raw.select((rows or list(range(len(raw))))[:num_images])
    prepared, collator, _ = prepare_inputs(model, processor, shown)
    batch = collator([prepared[i] for i in range(len(shown))])
    true_labels = batch.pop("labels")
    cam = cam_method(method)(model, target_layers)
    cams = cam(batch)
    probabilities = cam.last_logits.float().softmax(dim=-1)

    output_dir = default_output_dir(checkpoint, f"explanations_{split}", output_dir)
    root = phantom_root or data_dir
    root = Path(root) if root is not None else None
    lesion_root = root / "lesion_masks" if root is not None else None
    has_lesions = lesion_root is not None and lesion_root.is_dir()
    results: dict = {"checkpoint": str(checkpoint), "split": split, "method": method}
    figures: dict[str, str] = {}
    titles = [
        f"true {class_names[int(t)]}\npred {class_names[int(p.argmax())]} {float(p.max()):.2f}"
        for t, p in zip(true_labels, probabilities, strict=True)
    ]
    for key, batch_maps in cams.items():
        contours = _lesion_contours(shown, key, lesion_root, batch_maps) if has_lesions else None
        figure = plot_gradcam_overlays(
            list(batch[INPUT_KEYS.get(key, "pixel_values")][:, 0].numpy()),
            list(batch_maps.numpy()),
            output_dir / f"gradcam_{key.replace('.', '_')}.png",
            titles=titles,
            contours=contours,
            label=type(cam).__name__,
        )
        figures[f"gradcam_{key}"] = figure.relative_to(output_dir).as_posix()
    activations = feature_maps(model, batch, feature_layers or target_layers, max_channels)
    figure = plot_feature_maps(
        {key: value[0].numpy() for key, value in activations.items()},
        output_dir / "feature_maps.png",
        max_channels,
    )
    figures["feature_maps"] = figure.relative_to(output_dir).as_posix()
    results["figures"] = figures
    if has_lesions and class_name in class_names:
        quality = _explanation_quality(
            model, raw, lesion_root, cam, method, processor, class_name, output_dir
        )
        if "figure" in quality:
            figures["explanation_layers"] = quality.pop("figure")
        results |= quality
    if root is not None and (root / "shortcut_markers.csv").is_file():
        audit = audit_shortcut_markers(
            model, raw, root, processor=processor, target_layers=target_layers
        )
        audit.pop("marker_energy_per_image")
        results["shortcut_audit"] = audit
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "explanations.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``scripts/visualize.py`` (see :func:`main`)."""
    parser = argparse.ArgumentParser(
        description="CAM overlays and feature maps of a checkpoint; on phantoms, measured "
        "explanation quality (pointing game, energy inside lesions, shortcut audit)."
    )
    parser.add_argument("checkpoint", help="checkpoint folder or Hub repository id")
    parser.add_argument(
        "--data_dir", required=True, help="dataset root, or a dataset saved with save_to_disk"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--output_dir", default=None, help="default: <checkpoint>/explanations_<split>"
    )
    parser.add_argument("--num_images", type=int, default=4)
    parser.add_argument("--class_name", default="COVID", help="show images of this class")
    parser.add_argument("--layers", nargs="+", default=None, help="CAM layers (module names)")
    parser.add_argument(
        "--method", choices=sorted(CAM_METHODS), default="gradcam", help="CAM variant"
    )
    parser.add_argument("--feature_layers", nargs="+", default=None, help="feature-map layers")
    parser.add_argument("--max_channels", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`visualize_checkpoint` from the command line and print its results as JSON.

    Returns:
        The exit status (0).
    """
    args = parse_arguments(argv)
    results = visualize_checkpoint(
        args.checkpoint,
        data_dir=args.data_dir,
        split=args.split,
        output_dir=args.output_dir,
        num_images=args.num_images,
        class_name=args.class_name,
        target_layers=args.layers,
        feature_layers=args.feature_layers,
        max_channels=args.max_channels,
        method=args.method,
    )
    print(json.dumps(results, indent=2))
    return 0
