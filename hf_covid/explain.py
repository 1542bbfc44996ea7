"""Grad-CAM, feature maps, and measured explanation quality (pointing game, shortcut audit).

Everything here works on any ``torch.nn.Module`` whose forward takes keyword tensors
(``pixel_values``, ``ct_pixel_values``, ``lung_mask``, ...) and returns logits (a tensor or an
output with ``.logits``); layers are chosen by their dotted module name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_KEYS: dict[str, str] = {
    "image": "pixel_values",
    "xray": "pixel_values",
    "ct": "ct_pixel_values",
}
"""Which model input a branch name of ``gradcam_target_layers`` refers to."""

SHORTCUT_THRESHOLD = 0.3
"""Mean marker-energy fraction above which :func:`shortcut_audit` flags a model."""

TargetLayers = str | Sequence[str] | Mapping[str, str] | None


def default_target_layers(model: nn.Module) -> dict[str, str]:
    """The default Grad-CAM layer of each input branch of ``model``.

    Our classifiers name them in the class attribute ``gradcam_target_layers`` (input name ->
    module name, the last convolutional block of each branch); for ``transformers``' ResNet it is
    the last encoder stage.

    Raises:
        ValueError: when the model has no default; pass ``target_layers`` by name instead.
    """
    layers = getattr(model, "gradcam_target_layers", None)
    if layers:
        return dict(layers)
    stages = getattr(getattr(getattr(model, "resnet", None), "encoder", None), "stages", None)
    if stages is not None and len(stages) > 0:
        return {"image": f"resnet.encoder.stages.{len(stages) - 1}"}
    raise ValueError(
        f"{type(model).__name__} has no default Grad-CAM layer (no 'gradcam_target_layers'); "
        "pass target_layers=<dotted module name>, e.g. one of: "
        + ", ".join(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    )


def _resolve_layers(model: nn.Module, target_layers: TargetLayers) -> dict[str, str]:
    """Normalise ``target_layers`` to {output key: module name} and check the modules exist."""
    if target_layers is None:
        layers = default_target_layers(model)
    elif isinstance(target_layers, str):
        layers = {target_layers: target_layers}
    elif isinstance(target_layers, Mapping):
        layers = dict(target_layers)
    else:
        layers = {name: name for name in target_layers}
    module_names = dict(model.named_modules())
    for name in layers.values():
        if name not in module_names:
            raise ValueError(f"{type(model).__name__} has no module named '{name}'")
    return layers


def _first_tensor(output: object) -> torch.Tensor:
    """The activation tensor of a module output (tensor, tuple or ``ModelOutput``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = tuple(output.values())
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot take an activation map from a module output of type {type(output)}")


def _logits(outputs: object) -> torch.Tensor:
    logits = getattr(outputs, "logits", None)
    return logits if logits is not None else _first_tensor(outputs)


def _normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (H, W) map of a (B, H, W) batch to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def _output_size(key: str, inputs: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(H, W) of the input a map is drawn over: its branch's input, else ``pixel_values``."""
    tensor = inputs.get(INPUT_KEYS.get(key, "pixel_values"))
    if tensor is None:
        tensor = next(t for t in inputs.values() if isinstance(t, torch.Tensor) and t.ndim == 4)
    return int(tensor.shape[-2]), int(tensor.shape[-1])


class _ActivationRecorder:
    """Forward hooks that keep the output of named modules while in a ``with`` block."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.activations: dict[str, torch.Tensor] = {}
        self._handles = [
            model.get_submodule(name).register_forward_hook(self._hook(name)) for name in names
        ]

    def _hook(self, name: str):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            self.activations[name] = _first_tensor(output)

        return record

    def __enter__(self) -> _ActivationRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()


class GradCAM:
    """Gradient-weighted class activation maps (Selvaraju et al., "Grad-CAM: Visual Explanations
    from Deep Networks via Gradient-based Localization", ICCV 2017).

    For a target layer with activations ``A_k`` and the logit ``y_c`` of class ``c``, the map is
    ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``d y_c / d A_k``, upsampled
    (bilinear) to the input size and scaled to [0, 1] per image. Hooks are placed on modules by
    dotted name, so any model works; multi-input models get one map per branch.

    Args:
        model: the classifier; called as ``model(**inputs)``.
        target_layers: None for the model's defaults (:func:`default_target_layers`, keys are the
            input names, e.g. ``{"xray": ..., "ct": ...}``), a module name or a list of them
            (keys are the names), or a mapping key -> module name.

    After a call, ``last_logits`` holds the model's logits for the batch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Net(nn.Module):
        ...     gradcam_target_layers = {"image": "features"}
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        ...         self.head = nn.Linear(4, 2)
        ...     def forward(self, pixel_values):
        ...         return self.head(self.features(pixel_values).mean(dim=(2, 3)))
        >>> maps = GradCAM(Net())({"pixel_values": torch.rand(2, 1, 16, 16)}, class_index=1)
        >>> maps["image"].shape
        torch.Size([2, 16, 16])
    """

    def __init__(self, model: nn.Module, target_layers: TargetLayers = None) -> None:
        self.model = model
        self.target_layers = _resolve_layers(model, target_layers)
        self.last_logits: torch.Tensor | None = None

    def __call__(
        self,
        inputs: Mapping[str, torch.Tensor],
        class_index: int | Sequence[int] | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Grad-CAM maps for a batch.

        Args:
            inputs: keyword inputs of the model, e.g. ``{"pixel_values": (B, C, H, W)}``.
            class_index: the explained class: None for each image's predicted class, an int for
                all images, or one per image.

        Returns:
            key -> (B, H, W) float maps in [0, 1] on the CPU, at the size of the branch's input
            (``pixel_values`` for layers not tied to an input). A branch that did not run (e.g.
            a missing modality) is left out.
        """
        self.last_logits, maps = self._maps(inputs, class_index)
        return maps

    def _maps(
        self, inputs: Mapping[str, torch.Tensor], class_index: object
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        was_training = self.model.training
        self.model.eval()
        try:
            # Gradients are needed even when called under no_grad or inference_mode (an app).
            with (
                torch.inference_mode(False),
                torch.enable_grad(),
                _ActivationRecorder(self.model, list(self.target_layers.values())) as recorder,
            ):
                # Inputs that require grad put every activation in the graph, even in a frozen
                # backbone whose parameters do not.
                model_inputs = {
                    key: value.clone().requires_grad_(True)
                    if isinstance(value, torch.Tensor) and value.is_floating_point()
                    else value
                    for key, value in inputs.items()
                }
                logits = _logits(self.model(**model_inputs))
                if class_index is None:
                    targets = logits.argmax(dim=1)
                else:
                    targets = torch.as_tensor(class_index, device=logits.device).long()
                    targets = targets.expand(logits.shape[0]) if targets.ndim == 0 else targets
                score = logits.gather(1, targets[:, None]).sum()
                recorded = {
                    name: activation
                    for name, activation in recorder.activations.items()
                    if activation.requires_grad
                }
                # autograd.grad, not backward(): parameter .grad stays untouched.
                gradients = (
                    dict(
                        zip(
                            recorded,
                            torch.autograd.grad(score, list(recorded.values()), allow_unused=True),
                            strict=True,
                        )
                    )
                    if recorded
                    else {}
                )
        finally:
            self.model.train(was_training)
        maps = {}
        for key, name in self.target_layers.items():
            activation = recorder.activations.get(name)
            if activation is None:
                continue
            if activation.ndim != 4:
                raise ValueError(
                    f"Grad-CAM needs a (B, C, H, W) activation, but layer '{name}' gives "
                    f"{tuple(activation.shape)}; choose a convolutional layer"
                )
            gradient = gradients.get(name)
            if gradient is None:  # the layer does not influence the explained logit
                gradient = torch.zeros_like(activation)
            cam = F.relu(self._combine(activation, gradient)).detach().float()
            cam = F.interpolate(cam, size=_output_size(key, inputs), mode="bilinear")
            maps[key] = _normalise_maps(cam[:, 0]).cpu()
        return logits.detach(), maps

    @staticmethod
    def _combine(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) map before ReLU: channels weighted by their mean gradient."""
        return (gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True)


class HiResCAM(GradCAM):
    """HiResCAM (Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations
    of convolutional neural networks", 2020): ``ReLU(sum_k dy_c/dA_k * A_k)``, the gradient
    multiplied element-wise instead of averaged over space.

    Equal to Grad-CAM for a global-average-pooling + linear head; faithful to the evidence for
    heads that are not, such as the CNN-LSTM's row sequence. Same interface as :class:`GradCAM`.
    """

    @staticmethod
    def _combine(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return (gradient * activation).sum(dim=1, keepdim=True)


def feature_maps(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    layers: TargetLayers = None,
    max_channels: int = 16,
) -> dict[str, torch.Tensor]:
    """Activations of named layers (the first ``max_channels`` channels), for feature-map grids.

    Args:
        model: any model called as ``model(**inputs)``.
        inputs: keyword inputs of the model.
        layers: as ``target_layers`` of :class:`GradCAM` (None: the Grad-CAM defaults).
        max_channels: channels kept per layer.

    Returns:
        key -> (B, min(C, max_channels), h, w) CPU tensor, for the layers that ran.
    """
    resolved = _resolve_layers(model, layers)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            _ActivationRecorder(model, list(resolved.values())) as rec,
        ):
            model(**inputs)
    finally:
        model.train(was_training)
    return {
        key: rec.activations[name][:, :max_channels].float().cpu()
        for key, name in resolved.items()
        if name in rec.activations
    }


def _as_batch(maps: torch.Tensor | np.ndarray | Sequence) -> torch.Tensor:
    """(N, H, W) float tensor from maps given as a tensor, an array or a list of 2-D maps."""
    if isinstance(maps, torch.Tensor):
        batch = maps.detach().float().cpu()
    elif isinstance(maps, np.ndarray):
        batch = torch.from_numpy(maps.astype(np.float32))
    else:
        batch = torch.stack([_as_batch(np.asarray(m))[0] for m in maps])
    if batch.ndim == 4 and batch.shape[1] == 1:
        batch = batch[:, 0]
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"expected maps of shape (N, H, W), got {tuple(batch.shape)}")
    return batch


def _masks_like(masks: object, cams: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Binary masks resized (nearest) to the maps' size and dilated by ``tolerance`` pixels."""
    batch = (_as_batch(masks) > 0).float()
    if batch.shape[0] != cams.shape[0]:
        raise ValueError(f"got {cams.shape[0]} maps but {batch.shape[0]} masks")
    if batch.shape[-2:] != cams.shape[-2:]:
        batch = F.interpolate(batch[:, None], size=cams.shape[-2:], mode="nearest")[:, 0]
    if tolerance > 0:
        batch = F.max_pool2d(batch[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    return batch > 0


def pointing_game(
    cams: torch.Tensor | np.ndarray | Sequence,
    lesion_masks: torch.Tensor | np.ndarray | Sequence,
    tolerance: int = 0,
    per_image: bool = False,
) -> float | np.ndarray:
    """Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016).

    A hit is a map whose maximum lies inside the lesion (dilated by ``tolerance`` pixels).
    Images whose mask is empty have nothing to point at and are left out.

    Args:
        cams: (N, H, W) maps.
        lesion_masks: (N, H', W') binary masks (resized to the maps with nearest neighbour).
        tolerance: pixels of slack around the lesion.
        per_image: return the per-image hits (NaN for empty masks) instead of the rate.

    Returns:
        The hit rate over images with a lesion (NaN if none has), or the per-image array.
    """
    maps = _as_batch(cams)
    masks = _masks_like(lesion_masks, maps, tolerance)
    peaks = maps.flatten(1).argmax(dim=1)
    hits = masks.flatten(1).gather(1, peaks[:, None])[:, 0].numpy().astype(np.float64)
    hits[~masks.flatten(1).any(dim=1).numpy()] = np.nan
    if per_image:
        return hits
    return float(np.nanmean(hits)) if not np.isnan(hits).all() else float("nan")


def energy_inside(
    cams: torch.Tensor | np.ndarray | Sequence,
    masks: torch.Tensor | np.ndarray | Sequence,
    per_image: bool = False,
) -> float | np.ndarray:
    """Fraction of each map's total energy (sum of values) inside a mask, as in Score-CAM's
    energy-based pointing game (Wang et al., CVPR-W 2020); a zero map counts as 0.

    Args:
        cams: (N, H, W) non-negative maps.
        masks: (N, H', W') binary masks (resized to the maps with nearest neighbour).
        per_image: return the per-image fractions instead of their mean.

    Returns:
        The mean fraction, or the per-image array.
    """
    maps = _as_batch(cams).clamp_min(0)
    inside = _masks_like(masks, maps)
    total = maps.flatten(1).sum(dim=1)
    within = (maps * inside).flatten(1).sum(dim=1)
    fractions = torch.where(total > 0, within / total.clamp_min(1e-12), torch.zeros_like(total))
    fractions = fractions.numpy().astype(np.float64)
    return fractions if per_image else float(fractions.mean())


def box_masks(boxes: Sequence[Sequence[float]] | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) boolean masks of boxes ``(x0, y0, x1, y1)`` in pixels (x1, y1 exclusive)."""
    height, width = size
    rows = torch.arange(height)[None, :, None]
    columns = torch.arange(width)[None, None, :]
    box = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    x0, y0, x1, y1 = (box[:, i, None, None] for i in range(4))
    return (columns >= x0) & (columns < x1) & (rows >= y0) & (rows < y1)


def read_shortcut_markers(root: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """Marker boxes written by the phantom generator's ``shortcut=True`` option.

    Args:
        root: the generated dataset folder holding ``shortcut_markers.csv`` (columns ``file``,
            ``x0``, ``y0``, ``x1``, ``y1``; pixels of the original image).

    Returns:
        relative image path -> box.
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


BRANCH_ID_COLUMNS: dict[str, str] = {"image": "image_id", "xray": "xray_id", "ct": "ct_id"}
"""Dataset column naming the file a branch's image came from (to find its lesion mask)."""


def _match_files(image_ids: Sequence[str | None], files: Mapping[str, object]) -> list:
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


CAM_METHODS: dict[str, type[GradCAM]] = {"gradcam": GradCAM, "hirescam": HiResCAM}
"""Explanation methods by the name that scripts and reports use."""


def cam_method(method: str | type[GradCAM]) -> type[GradCAM]:
    """The CAM class named ``method`` in :data:`CAM_METHODS` (a class is returned as it is)."""
    if isinstance(method, str):
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method '{method}'; choose one of {sorted(CAM_METHODS)}")
        return CAM_METHODS[method]
    return method


def encoder_stages(model: nn.Module) -> dict[str, list[str]]:
    """For each branch, the stages of the encoder that holds its default Grad-CAM layer, shallow
    to deep (``...encoder.blocks.0``, ...; ResNet's ``resnet.encoder.stages.0``, ...). A branch
    whose encoder has no such list keeps just its default layer.
    """
    modules = dict(model.named_modules())
    stages = {}
    for key, name in default_target_layers(model).items():
        parent = name.rsplit(".", 1)[0]
        container = parent if isinstance(modules.get(parent), nn.ModuleList) else f"{parent}.blocks"
        if isinstance(modules.get(container), nn.ModuleList):
            stages[key] = [
                f"{container}.{child}" for child, _ in modules[container].named_children()
            ]
        else:
            stages[key] = [name]
    return stages


def explanation_layers(model: nn.Module, stage: int | None = None) -> dict[str, str]:
    """The layers to explain: each branch's default layer, or its encoder stage ``stage``
    (0 = shallowest; negative counts from the deepest, as in Python indexing).

    Raises:
        ValueError: a stage that some branch does not have.
    """
    if stage is None:
        return default_target_layers(model)
    layers = {}
    for key, names in encoder_stages(model).items():
        if not -len(names) <= stage < len(names):
            raise ValueError(
                f"explanation stage {stage} does not exist: the {key} encoder has stages "
                f"0..{len(names) - 1} ({', '.join(names)})"
            )
        layers[key] = names[stage]
    return layers


class _LesionExamples:
    """Images of one class that have phantom lesion masks, ready for CAM passes."""

    def __init__(
        self, model, dataset, lesion_mask_root, branches, processor, class_name, max_images
    ):
        from .data import load_image
        from .evaluation import prepare_inputs

        root = Path(lesion_mask_root)
        if (root / "lesion_masks").is_dir():
            root = root / "lesion_masks"
        if not root.is_dir():
            raise FileNotFoundError(f"lesion mask folder '{root}' does not exist")
        names = list(dataset.features["label"].names)
        if class_name not in names:
            raise ValueError(f"class '{class_name}' is not one of the dataset's classes {names}")
        self.class_index = names.index(class_name)
        self.default_column = "xray_id" if "xray_id" in dataset.column_names else "image_id"
        columns = {BRANCH_ID_COLUMNS.get(key, self.default_column) for key in branches}
        files = {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*.png"))}
        mask_files = {column: _match_files(list(dataset[column]), files) for column in columns}
        rows, self.masks = [], {column: [] for column in columns}
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
                f"no '{class_name}' image of the dataset has a lesion mask under {root}"
            )
        self.count = len(rows)
        self.prepared, self.collator, _ = prepare_inputs(model, processor, dataset.select(rows))

    def sweep(self, model, stages, methods, tolerance, batch_size) -> list[dict]:
        """:meth:`score` at every stage of ``stages`` (branch -> layers) with every method."""
        rows = []
        for depth in range(max(len(layers) for layers in stages.values())):
            layers = {key: names[depth] for key, names in stages.items() if depth < len(names)}
            for method in methods:
                scores = self.score(model, layers, method, tolerance, batch_size)
                for key, score in scores.items():
                    row = {"map": key, "stage": depth, "layer": layers[key], "method": method}
                    rows.append(row | score)
        return rows

    def score(self, model, layers, method, tolerance, batch_size) -> dict[str, dict]:
        """Pointing game and energy inside the lesions of ``method`` maps at ``layers``."""
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
                    resized = _masks_like(lesion[None], one)
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


def evaluate_explanations(
    model: nn.Module,
    dataset,
    lesion_mask_root: str | Path,
    *,
    processor=None,
    class_name: str = "COVID",
    target_layers: TargetLayers = None,
    tolerance: int = 0,
    batch_size: int = 16,
    max_images: int | None = None,
    method: str | type[GradCAM] = GradCAM,
) -> dict[str, dict]:
    """Pointing game and energy inside the lesion of Grad-CAM maps, on phantoms with lesion masks.

    The synthetic phantom generator writes the ground truth of every image under
    ``<root>/lesion_masks/<relative image path>.png``; images of ``class_name`` with a non-empty
    lesion mask are explained (the map of ``class_name``) and scored.

    Args:
        model: a trained classifier (its ``config.model_type`` picks the input columns).
        dataset: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.
        lesion_mask_root: the ``lesion_masks`` folder, or the data root that holds it.
        processor: the checkpoint's ``ChestImageProcessor`` (size, channels, normalisation).
        class_name: the explained class.
        target_layers: Grad-CAM layers (None: the model's defaults, one map per branch).
        tolerance: pixels of slack of the pointing game, at the model's input size.
        batch_size: images per Grad-CAM pass.
        max_images: score at most this many images.
        method: :class:`GradCAM` or :class:`HiResCAM`, or its name in :data:`CAM_METHODS`.

    Returns:
        Per map (e.g. ``"image"``, or ``"xray"`` and ``"ct"``): ``pointing_game`` (hit rate),
        ``energy_inside`` (mean fraction), ``lesion_area_fraction`` (mean, what a uniform map
        would score), ``n_images``.
    """
    layers = _resolve_layers(model, target_layers)
    examples = _LesionExamples(
        model, dataset, lesion_mask_root, layers, processor, class_name, max_images
    )
    return examples.score(model, layers, method, tolerance, batch_size)


def explanation_layer_sweep(
    model: nn.Module,
    dataset,
    lesion_mask_root: str | Path,
    *,
    processor=None,
    class_name: str = "COVID",
    methods: Sequence[str] = tuple(CAM_METHODS),
    tolerance: int = 0,
    batch_size: int = 16,
    max_images: int | None = None,
) -> list[dict]:
    """:func:`evaluate_explanations` at every encoder stage (:func:`encoder_stages`) with every
    method: which layer and method localise the lesions of this model.

    A map's resolution halves at each stage; the last stage (the Grad-CAM default) has the most
    class-specific features but the coarsest map (4x4 at 64 px input), so on small inputs an
    earlier stage often points better.

    Returns:
        One row per (stage, method, map): ``map``, ``stage`` (depth, 0 = shallowest), ``layer``,
        ``method`` and the scores of :func:`evaluate_explanations`.
    """
    stages = encoder_stages(model)
    examples = _LesionExamples(
        model, dataset, lesion_mask_root, stages, processor, class_name, max_images
    )
    return examples.sweep(model, stages, methods, tolerance, batch_size)


def audit_shortcut_markers(
    model: nn.Module,
    dataset,
    data_root: str | Path,
    *,
    processor=None,
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
    """
    from .evaluation import prepare_inputs

    column = "xray_id" if "xray_id" in dataset.column_names else "image_id"
    boxes_by_row = _match_files(list(dataset[column]), read_shortcut_markers(data_root))
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


def visualize_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    dataset=None,
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
    """Grad-CAM overlays and feature-map grids of a checkpoint, plus measured explanation quality.

    Writes to ``output_dir`` (default ``<checkpoint>/explanations_<split>`` for a folder):
    ``gradcam_<map>.png`` (inputs above their Grad-CAM overlays, lesion outlines where the data
    has phantom lesion masks), ``feature_maps.png`` (the first image's channels per layer) and
    ``explanations.json``. When the phantom folder (``phantom_root``, default ``data_dir``) holds
    ``lesion_masks/`` the pointing game and the energy inside lesions are measured
    (:func:`evaluate_explanations`), at the chosen layers and at every encoder stage with every
    method (:func:`explanation_layer_sweep`, figure ``explanation_layers.png``); when it holds
    ``shortcut_markers.csv``, the shortcut audit (:func:`audit_shortcut_markers`).

    Args:
        checkpoint: checkpoint folder or Hub id.
        data_dir: dataset root (or saved dataset).
        dataset: a built dataset instead of ``data_dir``.
        split: the split whose images are shown.
        output_dir: where the figures go.
        num_images: images shown.
        class_name: show images of this class (None or absent from the model: the first images).
        target_layers: Grad-CAM layers (None: the model's defaults).
        feature_layers: layers whose feature maps are drawn (None: the Grad-CAM layers).
        max_channels: channels per feature-map grid.
        build_options: keyword arguments of the dataset builder.
        phantom_root: folder of the phantom ground truth (default: ``data_dir``).
        method: ``"gradcam"`` or ``"hirescam"`` (:data:`CAM_METHODS`), for the overlays and
            the measured quality.

    Returns:
        The contents of ``explanations.json``: figure paths and any measured scores.
    """
    from . import plots
    from .data import load_image
    from .evaluation import (
        _build_options,
        _class_names,
        _spec_name,
        default_output_dir,
        load_checkpoint,
        load_evaluation_split,
        prepare_inputs,
        resolve_checkpoint,
    )

    path = resolve_checkpoint(checkpoint)
    model, processor = load_checkpoint(path)
    if not hasattr(model.config, "id2label") or hasattr(model, "predict_mask"):
        raise ValueError(f"Grad-CAM explains classifiers; {model.config.model_type} is not one")
    spec_name = _spec_name(model.config.model_type)
    class_names = _class_names(model.config)
    raw = load_evaluation_split(
        spec_name,
        class_names,
        split,
        data_dir=data_dir,
        dataset=dataset,
        build_options=_build_options(path, spec_name) | dict(build_options or {}),
    )
    labels = list(raw["label"])
    rows = [r for r, label in enumerate(labels) if class_names[label] == class_name]
    rows = (rows or list(range(len(raw))))[:num_images]
    shown = raw.select(rows)
    prepared, collator, _ = prepare_inputs(model, processor, shown)
    batch = collator([prepared[i] for i in range(len(shown))])
    true_labels = batch.pop("labels")
    maps = cam_method(method)(model, target_layers)
    cams = maps(batch)
    probabilities = maps.last_logits.float().softmax(dim=-1)

    output_dir = default_output_dir(checkpoint, f"explanations_{split}", output_dir)
    root = phantom_root or data_dir
    root = Path(root) if root is not None else None
    lesion_root = root / "lesion_masks" if root is not None else None
    has_lesions = lesion_root is not None and lesion_root.is_dir()
    results: dict = {
        "checkpoint": str(checkpoint),
        "split": split,
        "method": method,
        "figures": {},
    }
    for key, batch_maps in cams.items():
        input_key = INPUT_KEYS.get(key, "pixel_values")
        contours = None
        if has_lesions:
            column = BRANCH_ID_COLUMNS.get(
                key, "xray_id" if "xray_id" in shown.column_names else "image_id"
            )
            files = {p.relative_to(lesion_root).as_posix(): p for p in lesion_root.rglob("*.png")}
            contours = [
                None
                if mask_path is None
                else _masks_like(load_image(mask_path)[None] > 0.5, batch_maps[:1])[0].numpy()
                for mask_path in _match_files(list(shown[column]), files)
            ]
        titles = [
            f"true {class_names[int(t)]}\npred {class_names[int(p.argmax())]} {float(p.max()):.2f}"
            for t, p in zip(true_labels, probabilities, strict=True)
        ]
        figure = plots.plot_gradcam_overlays(
            list(batch[input_key][:, 0].numpy()),
            list(batch_maps.numpy()),
            output_dir / f"gradcam_{key.replace('.', '_')}.png",
            titles=titles,
            contours=contours,
            label=type(maps).__name__,
        )
        results["figures"][f"gradcam_{key}"] = figure.relative_to(output_dir).as_posix()
    activations = feature_maps(model, batch, feature_layers or target_layers, max_channels)
    figure = plots.plot_feature_maps(
        {key: value[0].numpy() for key, value in activations.items()},
        output_dir / "feature_maps.png",
        max_channels,
    )
    results["figures"]["feature_maps"] = figure.relative_to(output_dir).as_posix()
    if has_lesions and class_name in class_names:
        try:
            # One read of the lesion masks and images for both the chosen layers and the sweep.
            stages = encoder_stages(model)
            examples = _LesionExamples(
                model,
                raw,
                lesion_root,
                {**maps.target_layers, **stages},
                processor,
                class_name,
                None,
            )
            results["explanation_quality"] = examples.score(
                model, maps.target_layers, method, tolerance=0, batch_size=16
            )
            sweep = examples.sweep(model, stages, tuple(CAM_METHODS), tolerance=0, batch_size=16)
        except ValueError as error:  # e.g. no lesion in this split: say so, keep the figures
            results["explanation_quality"] = {"error": str(error)}
        else:
            results["explanation_layer_sweep"] = sweep
            figure = plots.plot_explanation_sweep(sweep, output_dir / "explanation_layers.png")
            results["figures"]["explanation_layers"] = figure.relative_to(output_dir).as_posix()
    if root is not None and (root / "shortcut_markers.csv").is_file():
        audit = audit_shortcut_markers(
            model, raw, root, processor=processor, target_layers=target_layers
        )
        audit.pop("marker_energy_per_image")
        results["shortcut_audit"] = audit
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "explanations.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
