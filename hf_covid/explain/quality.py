"""Measured explanation quality on phantoms whose ground truth we placed.

The synthetic phantom generator writes the lesion mask of every image under
``<root>/lesion_masks/<relative image path>.png`` and, with ``shortcut=True``, the box of a
class-correlated marker in ``<root>/shortcut_markers.csv``. Here the CAMs of a classifier are
scored against them: the pointing game and the energy inside lesions (per layer and method), and
the share of the evidence a model puts on the marker (the shortcut audit).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from ..data import load_image
from ..evaluation import prepare_inputs
from .cam import CAM_METHODS, GradCAM, cam_method
from .layers import TargetLayers, encoder_stages, resolve_layers
from .metrics import box_masks, energy_inside, masks_like, pointing_game

__all__ = [
    "BRANCH_ID_COLUMNS",
    "SHORTCUT_THRESHOLD",
    "LesionExamples",
    "audit_shortcut_markers",
    "evaluate_explanations",
    "explanation_layer_sweep",
    "lesion_mask_files",
    "lesion_mask_folder",
    "match_files",
    "read_shortcut_markers",
    "shortcut_audit",
]

SHORTCUT_THRESHOLD = 0.3
"""Mean marker-energy fraction above which :func:`shortcut_audit` flags a model."""

BRANCH_ID_COLUMNS: dict[str, str] = {"image": "image_id", "xray": "xray_id", "ct": "ct_id"}
"""Dataset column naming the file a branch's image came from (to find its lesion mask)."""


def _default_id_column(dataset: Dataset) -> str:
    """The id column of the X-ray (or only) image of a built dataset."""
    return "xray_id" if "xray_id" in dataset.column_names else "image_id"


def match_files(image_ids: Sequence[str | None], files: Mapping[str, object]) -> list:
    """For each image id, the value of ``files`` (keyed by path relative to the data root) whose
    path without suffix equals the id's, else whose file stem does (ids of the Radiography
    builder are stems); None where nothing matches.

    Raises:
        ValueError: a stem that names several files.
    """
    by_path = {Path(name).with_suffix("").as_posix(): value for name, value in files.items()}
    by_stem: dict[str, object] = {}
    duplicated = set()
    for name, value in files.items():
        stem = Path(name).stem
        if stem in by_stem:
            duplicated.add(stem)
        by_stem[stem] = value
    matched = []
    for image_id in image_ids:
        if not image_id:
            matched.append(None)
            continue
        key = Path(image_id).with_suffix("").as_posix()
        if key not in by_path and Path(image_id).stem in duplicated:
            raise ValueError(f"several files are named '{Path(image_id).stem}'; ids must be paths")
        matched.append(by_path.get(key, by_stem.get(Path(image_id).stem)))
    return matched


def lesion_mask_folder(root: str | Path) -> Path:
    """The ``lesion_masks`` folder given itself or the data root that holds it.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(root)
    if (root / "lesion_masks").is_dir():
        root = root / "lesion_masks"
    if not root.is_dir():
        raise FileNotFoundError(f"lesion mask folder '{root}' does not exist")
    return root


def lesion_mask_files(root: str | Path) -> dict[str, Path]:
    """Lesion mask files under a ``lesion_masks`` folder, keyed by their relative path."""
    folder = lesion_mask_folder(root)
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*.png"))}


class LesionExamples:
    """Images of one class that have phantom lesion masks, preprocessed once for CAM passes.

    Args:
        model: the classifier (its ``config.model_type`` picks the input columns).
        dataset: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.
        lesion_mask_root: the ``lesion_masks`` folder, or the data root that holds it.
        branches: the map keys that will be scored (``"image"``, ``"xray"``, ``"ct"``, ...).
        processor: the checkpoint's ``ChestImageProcessor`` (size, channels, normalisation).
        class_name: the explained class; only its images are kept.
        max_images: keep at most this many images.

    Raises:
        FileNotFoundError: no lesion mask folder.
        ValueError: an unknown class, or no image of it with a lesion mask.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        lesion_mask_root: str | Path,
        branches: Sequence[str],
        processor: object | None = None,
        class_name: str = "COVID",
        max_images: int | None = None,
    ) -> None:
        files = lesion_mask_files(lesion_mask_root)
        names = list(dataset.features["label"].names)
        if class_name not in names:
            raise ValueError(f"class '{class_name}' is not one of the dataset's classes {names}")
        self.class_index = names.index(class_name)
        self.default_column = _default_id_column(dataset)
        columns = {BRANCH_ID_COLUMNS.get(key, self.default_column) for key in branches}
        mask_files = {column: match_files(list(dataset[column]), files) for column in columns}
        rows: list[int] = []
        self.masks: dict[str, list[np.ndarray | None]] = {column: [] for column in columns}
        for row, label in enumerate(dataset["label"]):
            if label != self.class_index:
                continue
            found = {
                column: None if paths[row] is None else load_image(paths[row]) > 0.5
                for column, paths in mask_files.items()
            }
            if not any(mask is not None and mask.any() for mask in found.values()):
                continue
            rows.append(row)
            for column, mask in found.items():
                self.masks[column].append(mask)
            if max_images is not None and len(rows) >= max_images:
                break
        if not rows:
            raise ValueError(
                f"no '{class_name}' image of the dataset has a lesion mask under "
                f"{lesion_mask_folder(lesion_mask_root)}"
            )
        self.count = len(rows)
        self.prepared, self.collator, _ = prepare_inputs(model, processor, dataset.select(rows))

    def score(
        self,
        model: nn.Module,
        layers: Mapping[str, str],
        method: str | type[GradCAM],
        tolerance: int = 0,
        batch_size: int = 16,
    ) -> dict[str, dict]:
        """Pointing game and energy inside the lesions of ``method`` maps at ``layers``.

        Returns:
            Per map key: ``pointing_game``, ``energy_inside``, ``lesion_area_fraction``,
            ``n_images``, ``tolerance`` (maps without any scored image are left out).
        """
        device = next(model.parameters()).device
        cam = cam_method(method)(model, layers)
        hits: dict[str, list] = {key: [] for key in cam.target_layers}
        energy: dict[str, list] = {key: [] for key in cam.target_layers}
        area: dict[str, list] = {key: [] for key in cam.target_layers}
        for start in range(0, self.count, batch_size):
            stop = min(start + batch_size, self.count)
            batch = self.collator([self.prepared[i] for i in range(start, stop)])
            batch.pop("labels")
            maps = cam({k: v.to(device) for k, v in batch.items()}, class_index=self.class_index)
            for key, batch_maps in maps.items():
                column = BRANCH_ID_COLUMNS.get(key, self.default_column)
                for offset, lesion in enumerate(self.masks[column][start:stop]):
                    if lesion is None or not lesion.any():
                        continue
                    one = batch_maps[offset : offset + 1]
                    resized = masks_like(lesion[None], one)
                    hits[key].append(pointing_game(one, resized, tolerance))
                    energy[key].append(energy_inside(one, resized))
                    area[key].append(float(resized.float().mean()))
        return {
            key: {
                "pointing_game": float(np.mean(hits[key])),
                "energy_inside": float(np.mean(energy[key])),
                "lesion_area_fraction": float(np.mean(area[key])),
                "n_images": len(hits[key]),
                "tolerance": tolerance,
            }
            for key in cam.target_layers
            if hits[key]
        }

    def sweep(
        self,
        model: nn.Module,
        stages: Mapping[str, Sequence[str]],
        methods: Sequence[str],
        tolerance: int = 0,
        batch_size: int = 16,
    ) -> list[dict]:
        """:meth:`score` at every stage of ``stages`` (branch -> layers) with every method.

        Returns:
            One row per (stage, method, map): ``map``, ``stage``, ``layer``, ``method`` and the
            scores of :meth:`score`.
        """
        rows = []
        for depth in range(max(len(layers) for layers in stages.values())):
            layers = {key: names[depth] for key, names in stages.items() if depth < len(names)}
            for method in methods:
                scores = self.score(model, layers, method, tolerance, batch_size)
                for key, score in scores.items():
                    row = {"map": key, "stage": depth, "layer": layers[key], "method": method}
                    rows.append(row | score)
        return rows


def evaluate_explanations(
    model: nn.Module,
    dataset: Dataset,
    lesion_mask_root: str | Path,
    *,
    processor: object | None = None,
    class_name: str = "COVID",
    target_layers: TargetLayers = None,
    tolerance: int = 0,
    batch_size: int = 16,
    max_images: int | None = None,
    method: str | type[GradCAM] = GradCAM,
) -> dict[str, dict]:
    """Pointing game and energy inside the lesion of CAM maps, on phantoms with lesion masks.

    Images of ``class_name`` with a non-empty lesion mask under ``lesion_mask_root`` are
    explained (the map of ``class_name``) and scored.

    Args:
        model: a trained classifier (its ``config.model_type`` picks the input columns).
        dataset: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.
        lesion_mask_root: the ``lesion_masks`` folder, or the data root that holds it.
        processor: the checkpoint's ``ChestImageProcessor`` (size, channels, normalisation).
        class_name: the explained class.
        target_layers: CAM layers (None: the model's defaults, one map per branch).
        tolerance: pixels of slack of the pointing game, at the model's input size.
        batch_size: images per CAM pass.
        max_images: score at most this many images.
        method: :class:`~hf_covid.explain.cam.GradCAM` or ``HiResCAM``, or its name in
            :data:`~hf_covid.explain.cam.CAM_METHODS`.

    Returns:
        Per map (e.g. ``"image"``, or ``"xray"`` and ``"ct"``): ``pointing_game`` (hit rate),
        ``energy_inside`` (mean fraction), ``lesion_area_fraction`` (mean, what a uniform map
        would score), ``n_images``, ``tolerance``.
    """
    layers = resolve_layers(model, target_layers)
    examples = LesionExamples(
        model, dataset, lesion_mask_root, list(layers), processor, class_name, max_images
    )
    return examples.score(model, layers, method, tolerance, batch_size)


def explanation_layer_sweep(
    model: nn.Module,
    dataset: Dataset,
    lesion_mask_root: str | Path,
    *,
    processor: object | None = None,
    class_name: str = "COVID",
    methods: Sequence[str] = tuple(CAM_METHODS),
    tolerance: int = 0,
    batch_size: int = 16,
    max_images: int | None = None,
) -> list[dict]:
    """:func:`evaluate_explanations` at every encoder stage
    (:func:`~hf_covid.explain.layers.encoder_stages`) with every method: which layer and method
    localise the lesions of this model.

    A map's resolution halves at each stage; the last stage (the Grad-CAM default) has the most
    class-specific features but the coarsest map (4x4 at 64 px input), so on small inputs an
    earlier stage often points better.

    Returns:
        One row per (stage, method, map): ``map``, ``stage`` (depth, 0 = shallowest), ``layer``,
        ``method`` and the scores of :func:`evaluate_explanations`.
    """
    stages = encoder_stages(model)
    examples = LesionExamples(
        model, dataset, lesion_mask_root, list(stages), processor, class_name, max_images
    )
    return examples.sweep(model, stages, methods, tolerance, batch_size)


def read_shortcut_markers(root: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """Marker boxes written by the phantom generator's ``shortcut=True`` option.

    Args:
        root: the generated dataset folder holding ``shortcut_markers.csv`` (columns ``file``,
            ``x0``, ``y0``, ``x1``, ``y1``; pixels of the original image).

    Returns:
        relative image path -> box.

    Raises:
        FileNotFoundError: no marker file.
        ValueError: a marker file without the expected columns.
    """
    path = Path(root) / "shortcut_markers.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no shortcut marker file at {path}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "x0", "y0", "x1", "y1"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks the columns {sorted(missing)}")
        return {
            row["file"]: tuple(int(float(row[k])) for k in ("x0", "y0", "x1", "y1"))
            for row in reader
        }


def shortcut_audit(
    model: nn.Module,
    examples: Mapping[str, torch.Tensor],
    marker_boxes: Sequence[Sequence[float]] | np.ndarray,
    target_layers: TargetLayers = None,
    class_index: int | Sequence[int] | None = None,
    threshold: float = SHORTCUT_THRESHOLD,
) -> dict:
    """Does the model look at a spurious marker instead of the lungs?

    Computes Grad-CAM for images that carry a marker (e.g. a corner text tag that correlates with
    the class) and measures the fraction of each map's energy inside the marker box. A model
    that reads the marker instead of the anatomy puts most of its evidence there; a map spread
    evenly would only score the box's area fraction. The model is flagged when the mean fraction
    exceeds ``threshold``.

    Args:
        model: the classifier.
        examples: a batch of model inputs (``pixel_values`` (B, C, H, W), ...).
        marker_boxes: one box ``(x0, y0, x1, y1)`` per image, in pixels of ``pixel_values``.
        target_layers: Grad-CAM layers (None: the model's defaults); the first map is audited.
        class_index: explained class (None: the predicted class).
        threshold: mean marker-energy fraction above which the model is flagged.

    Returns:
        ``{"marker_energy_fraction": mean, "marker_energy_per_image": [...],
        "marker_area_fraction": mean box area / image area, "threshold": threshold,
        "shortcut_suspected": bool}``.
    """
    maps = GradCAM(model, target_layers)(examples, class_index=class_index)
    if not maps:
        raise ValueError("Grad-CAM produced no map: none of the target layers ran")
    cams = next(iter(maps.values()))
    boxes = box_masks(marker_boxes, tuple(cams.shape[-2:]))
    if boxes.shape[0] != cams.shape[0]:
        raise ValueError(f"got {cams.shape[0]} images but {boxes.shape[0]} marker boxes")
    fractions = energy_inside(cams, boxes, per_image=True)
    mean_fraction = float(fractions.mean())
    return {
        "marker_energy_fraction": mean_fraction,
        "marker_energy_per_image": fractions.tolist(),
        "marker_area_fraction": float(boxes.float().mean()),
        "threshold": threshold,
        "shortcut_suspected": mean_fraction > threshold,
    }


def audit_shortcut_markers(
    model: nn.Module,
    dataset: Dataset,
    data_root: str | Path,
    *,
    processor: object | None = None,
    target_layers: TargetLayers = None,
    threshold: float = SHORTCUT_THRESHOLD,
    batch_size: int = 16,
    max_images: int | None = None,
) -> dict:
    """:func:`shortcut_audit` over the marked images of a phantom dataset made with
    ``shortcut=True`` (boxes from ``<data_root>/shortcut_markers.csv``, scaled to the input size).

    Args:
        model: the classifier to audit.
        dataset: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.
        data_root: the generated dataset folder.
        processor: the checkpoint's ``ChestImageProcessor``.
        target_layers: Grad-CAM layers (None: the model's defaults; the first map is audited).
        threshold: mean marker-energy fraction above which the model is flagged.
        batch_size: images per Grad-CAM pass.
        max_images: audit at most this many images.

    Returns:
        As :func:`shortcut_audit`, over all audited images, plus ``n_images``.

    Raises:
        ValueError: no image of the dataset carries a listed marker.
    """
    column = _default_id_column(dataset)
    boxes_by_row = match_files(list(dataset[column]), read_shortcut_markers(data_root))
    matched = [(row, box) for row, box in enumerate(boxes_by_row) if box is not None]
    matched = matched[:max_images]
    if not matched:
        raise ValueError(f"no image of the dataset carries a marker listed under {data_root}")
    image_column = "xray" if "xray" in dataset.column_names else "image"
    subset = dataset.select([row for row, _ in matched])
    prepared, collator, settings = prepare_inputs(model, processor, subset)
    size = settings["image_size"]
    boxes = []
    for (_, box), image in zip(matched, subset[image_column], strict=True):
        width, height = image.size
        x0, y0, x1, y1 = box
        boxes.append((x0 * size / width, y0 * size / height, x1 * size / width, y1 * size / height))
    device = next(model.parameters()).device
    fractions, area = [], []
    for start in range(0, len(matched), batch_size):
        batch = collator([prepared[i] for i in range(start, min(start + batch_size, len(matched)))])
        batch.pop("labels")
        inputs = {key: value.to(device) for key, value in batch.items()}
        report = shortcut_audit(
            model, inputs, boxes[start : start + len(inputs["pixel_values"])], target_layers
        )
        fractions += report["marker_energy_per_image"]
        area.append(report["marker_area_fraction"] * len(report["marker_energy_per_image"]))
    mean_fraction = float(np.mean(fractions))
    return {
        "marker_energy_fraction": mean_fraction,
        "marker_energy_per_image": fractions,
        "marker_area_fraction": float(sum(area) / len(fractions)),
        "threshold": threshold,
        "shortcut_suspected": mean_fraction > threshold,
        "n_images": len(fractions),
    }
