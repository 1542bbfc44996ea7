"""Inference for the served models: load a checkpoint, predict one study, explain the prediction.

This is the logic behind the Gradio app (``spaces_app/app.py``), usable without it::

    from hf_covid.inference import load_predictor

    predictor = load_predictor("outputs/demo/checkpoints/cnn_lstm")
    prediction = predictor.predict(xray="chest.dcm")
    prediction.label, prediction.probabilities, prediction.gradcam["xray"]

Images may be given as a file path, bytes, a PIL image or a numpy array; files and bytes are read
with :func:`hf_covid.data.load_image` (PNG, JPEG, 16-bit, DICOM), which reads pixel data only, so
no DICOM metadata (patient name, ids) ever reaches a :class:`Prediction`.

Research software: not a diagnostic device.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage
from transformers import AutoConfig, PreTrainedModel

from .checkpoints import is_hub_id, load_checkpoint
from .data import ImageReadError, load_image
from .explain import cam_method, explanation_layers, feature_maps
from .registry import ModelFamily, get_model_family, model_families

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray
"""An image as a file path, encoded file bytes, a PIL image or a numpy array."""

INPUT_NAMES: dict[str, str] = {"xray": "X-ray", "ct": "CT", "lung_mask": "lung mask"}
"""Input name -> how messages and captions call it."""

DEFAULT_MAX_PIXELS = 36_000_000
"""Largest image (pixels) accepted for prediction: above any chest radiograph (~4k x 4k)."""


class InputError(ValueError):
    """A bad input image or mask. The message names the input, never a file path, and is safe to
    show to a user."""


@dataclass(frozen=True)
class Prediction:
    """The result of :meth:`ChestPredictor.predict` for one study.

    Attributes:
        probabilities: class name -> probability, in the model's label order.
        inputs_used: the inputs the model used ("xray", "ct"), as the model reports them.
        images: input name -> the (H, W) float image in [0, 1] as read (before resizing).
        gradcam: input name -> (H, W) class activation map in [0, 1] for the predicted class
            (Grad-CAM, or the predictor's ``explanation`` method), at the resolution of that
            input image; empty when explanations were not requested.
        feature_maps: input name -> (C, h, w) activations (the first channels) of the explained
            layer of that input's branch (by default the last convolutional block).
        lung_mask: (H, W) bool lung mask at the X-ray's resolution, or None.
        mask_source: "uploaded", "lung_unet" or None.
    """

    probabilities: dict[str, float]
    inputs_used: tuple[str, ...]
    images: dict[str, np.ndarray]
    gradcam: dict[str, np.ndarray] = field(default_factory=dict)
    feature_maps: dict[str, np.ndarray] = field(default_factory=dict)
    lung_mask: np.ndarray | None = None
    mask_source: str | None = None

    @property
    def label(self) -> str:
        """The most probable class."""
        return max(self.probabilities, key=self.probabilities.__getitem__)


def read_image(
    source: ImageInput, *, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read one image as a 2-D float32 array in [0, 1] with :func:`load_image` semantics.

    Args:
        source: file path, encoded file bytes (PNG, JPEG, DICOM, ...), PIL image or numpy array
            (integer arrays are scaled by their bit depth, float arrays must lie in [0, 1]).
        name: what the image is ("xray", "ct", "lung_mask"), used in error messages.
        max_pixels: reject larger images.

    Raises:
        InputError: the image cannot be read or is too large; the message names ``name`` and the
            problem but not the file path.
    """
    what = INPUT_NAMES.get(name, name)
    if isinstance(source, np.ndarray) and source.dtype.kind == "f":
        image = _float_array_image(source, what)
    else:
        data = _encoded(source, what)
        try:
            image = load_image(data, max_pixels=max_pixels)
        except ImageReadError as error:  # its message names the source: keep the reason only
            raise InputError(f"cannot read the {what}: {error.reason}") from None
    if image.size > max_pixels:
        raise InputError(
            f"{what} is {image.shape[1]}x{image.shape[0]} pixels; at most {max_pixels:,} pixels "
            "are accepted"
        )
    if min(image.shape) < 8:
        raise InputError(f"{what} is {image.shape[1]}x{image.shape[0]} pixels; need at least 8x8")
    return image


def _encoded(source: ImageInput, what: str) -> bytes:
    """File bytes for load_image: paths are read here so that no error message names the file."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError as error:
            raise InputError(f"cannot read the {what}: {error.strerror}") from None
    if isinstance(source, np.ndarray):
        if source.dtype.kind not in "ub":
            raise InputError(f"{what}: unsupported array dtype {source.dtype}")
        if source.dtype == np.bool_:
            source = source.astype(np.uint8) * 255
        try:
            source = Image.fromarray(np.ascontiguousarray(source))
        except TypeError as error:
            raise InputError(f"{what}: array of shape {source.shape} is not an image") from error
    if isinstance(source, Image.Image):
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")  # lossless, keeps 16-bit; load_image does the rest
        return buffer.getvalue()
    raise InputError(
        f"{what}: expected a file path, bytes, PIL image or numpy array, got {type(source).__name__}"
    )


def _float_array_image(array: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(array, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"{what}: expected an (H, W) or (H, W, 3) array, got {array.shape}")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError(f"{what}: a float array must hold finite values in [0, 1]")
    return image


def _resize(array: np.ndarray, shape: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize a 2-D float array to ``shape`` (H, W)."""
    if array.shape == shape:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    mode = "nearest" if nearest else "bilinear"
    kwargs = {} if nearest else {"align_corners": False}
    return F.interpolate(tensor, size=shape, mode=mode, **kwargs)[0, 0].numpy()


def _accepts(model: torch.nn.Module, argument: str) -> bool:
    return argument in inspect.signature(model.forward).parameters


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
    def from_pretrained(cls, path_or_repo: str | os.PathLike) -> LungSegmenter:
        """Load the U-Net and its processor from a checkpoint folder or Hub id."""
        return cls(*load_checkpoint(path_or_repo))

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The (H, W) bool lung mask of a 2-D image in [0, 1], at the image's resolution."""
        pixel_values = self.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            mask = self.model.predict_mask(pixel_values)[0, 0].float().numpy()
        return _resize(mask, image.shape, nearest=True) > 0.5


class ChestPredictor:
    """One classifier with its image processor: probabilities, Grad-CAM and feature maps.

    Works for every hf_covid classifier: X-ray only (CNN+LSTM, ResNet), X-ray + lung mask
    (dual-channel; the mask is made by ``lung_segmenter`` when not given) and X-ray + CT
    (dual-input; either image may be missing). Thread-safe: Grad-CAM and feature maps hook the
    model, so they run under a per-model lock; the classification forward needs no lock.

    Args:
        model: the classifier (``config.id2label`` names the classes).
        image_processor: its :class:`ChestImageProcessor`.
        lung_segmenter: makes the lung mask when none is given (needed by the dual-channel
            model, shown as an overlay for the others).
        max_pixels: largest input image accepted.
        feature_map_channels: channels kept per layer in :attr:`Prediction.feature_maps`.
        explanation: ``"gradcam"`` or ``"hirescam"`` (:data:`hf_covid.explain.CAM_METHODS`).
        explanation_stage: explain this encoder stage instead of the default last one (see
            :func:`hf_covid.explain.explanation_layers`; finer maps on small inputs).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        image_processor: Any,
        *,
        lung_segmenter: LungSegmenter | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        feature_map_channels: int = 8,
        explanation: str = "gradcam",
        explanation_stage: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.image_processor = image_processor
        self.lung_segmenter = lung_segmenter
        self.max_pixels = max_pixels
        self.feature_map_channels = feature_map_channels
        self.labels = tuple(
            model.config.id2label[index] for index in range(model.config.num_labels)
        )
        self.accepts_ct = _accepts(model, "ct_pixel_values")
        self.requires_lung_mask = _accepts(model, "lung_mask")
        self._gradcam = cam_method(explanation)(model, explanation_layers(model, explanation_stage))
        self._hook_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike, **kwargs: Any) -> ChestPredictor:
        """Load the classifier and its processor (Auto classes) from a folder or Hub id.

        Keyword arguments go to the constructor (``lung_segmenter``, ``max_pixels``, ...).
        """
        model, processor = load_checkpoint(path_or_repo)
        return cls(model, processor, **kwargs)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The images this model takes: ("xray",) or ("xray", "ct")."""
        return ("xray", "ct") if self.accepts_ct else ("xray",)

    def predict(
        self,
        xray: ImageInput | None = None,
        ct: ImageInput | None = None,
        lung_mask: ImageInput | None = None,
        *,
        explain: bool = True,
        segment_lungs: bool = True,
    ) -> Prediction:
        """Classify one study.

        Args:
            xray: the chest X-ray (required unless the model takes a CT).
            ct: the CT slice (dual-input model only).
            lung_mask: a lung mask for the X-ray (any size with the X-ray's aspect ratio; > 0.5
                is lung). Made by the lung U-Net when not given and a segmenter is attached.
            explain: compute Grad-CAM maps and feature maps.
            segment_lungs: make a lung mask with the segmenter when none is given.

        Raises:
            InputError: an image is missing, unreadable, too large, or the mask does not fit.
        """
        images = self._read_inputs(xray, ct)
        mask, mask_source = None, None
        if lung_mask is not None:
            if "xray" not in images:
                raise InputError("a lung mask was given without an X-ray")
            mask = _fit_mask(
                read_image(lung_mask, name="lung_mask", max_pixels=self.max_pixels), images["xray"]
            )
            mask_source = "uploaded"
        elif (
            "xray" in images
            and self.lung_segmenter is not None
            and (segment_lungs or self.requires_lung_mask)
        ):
            mask, mask_source = self.lung_segmenter.segment(images["xray"]), "lung_unet"
        if self.requires_lung_mask and mask is None:
            raise InputError(
                "this model needs a lung mask: upload one (no lung segmentation model is loaded)"
            )

        inputs = self._model_inputs(images, mask)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        probabilities = outputs.logits.float().softmax(-1)[0]
        inputs_used = self._inputs_used(outputs, images)
        gradcam, maps = {}, {}
        if explain:
            gradcam, maps = self._explain(inputs, int(probabilities.argmax()), images, inputs_used)
        return Prediction(
            probabilities={
                name: float(probability)
                for name, probability in zip(self.labels, probabilities, strict=True)
            },
            inputs_used=inputs_used,
            images=images,
            gradcam=gradcam,
            feature_maps=maps,
            lung_mask=mask,
            mask_source=mask_source,
        )

    def _read_inputs(self, xray: ImageInput | None, ct: ImageInput | None) -> dict[str, np.ndarray]:
        if ct is not None and not self.accepts_ct:
            raise InputError("this model takes an X-ray only, but a CT was given")
        given = {name: image for name, image in (("xray", xray), ("ct", ct)) if image is not None}
        if not given:
            needed = " and/or a CT" if self.accepts_ct else ""
            raise InputError(f"no image given: upload an X-ray{needed}")
        if "xray" not in given and not self.accepts_ct:
            raise InputError("no X-ray given")
        return {
            name: read_image(image, name=name, max_pixels=self.max_pixels)
            for name, image in given.items()
        }

    def _model_inputs(
        self, images: Mapping[str, np.ndarray], mask: np.ndarray | None
    ) -> dict[str, torch.Tensor]:
        """Model keyword inputs; a missing modality is left out (the dual-input model then
        marks it unavailable)."""
        inputs = {}
        if "xray" in images:
            masks = [mask.astype(np.float32)] if self.requires_lung_mask else None
            processed = self.image_processor(
                images=[images["xray"]], masks=masks, return_tensors="pt"
            )
            inputs["pixel_values"] = processed["pixel_values"]
            if self.requires_lung_mask:
                inputs["lung_mask"] = processed["lung_mask"]
        if "ct" in images:
            inputs["ct_pixel_values"] = self.image_processor(
                images=[images["ct"]], return_tensors="pt"
            )["pixel_values"]
        return inputs

    def _inputs_used(self, outputs: Any, images: Mapping[str, np.ndarray]) -> tuple[str, ...]:
        used = getattr(outputs, "modalities_used", None)
        if used is None:
            return tuple(images)
        return tuple(
            name for name, flag in zip(("xray", "ct"), used[0].tolist(), strict=True) if flag
        )

    def _explain(
        self,
        inputs: Mapping[str, torch.Tensor],
        class_index: int,
        images: Mapping[str, np.ndarray],
        inputs_used: Sequence[str],
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        # Both place hooks on the shared model: one request at a time per model.
        with self._hook_lock:
            cams = self._gradcam(inputs, class_index=class_index)
            activations = feature_maps(
                self.model,
                inputs,
                self._gradcam.target_layers,
                max_channels=self.feature_map_channels,
            )
        gradcam = {}
        for key, cam in cams.items():
            name = _branch_input(key)
            if name in inputs_used:
                gradcam[name] = _resize(cam[0].numpy(), images[name].shape)
        maps = {
            _branch_input(key): value[0].numpy()
            for key, value in activations.items()
            if _branch_input(key) in inputs_used
        }
        return gradcam, maps


def _branch_input(key: str) -> str:
    """Grad-CAM branch key -> input name ("image" is the X-ray of single-input models)."""
    return "xray" if key == "image" else key


def _fit_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The mask resized to the image; only the size may differ, not the field of view."""
    mask_ratio, image_ratio = mask.shape[1] / mask.shape[0], image.shape[1] / image.shape[0]
    if abs(mask_ratio / image_ratio - 1) > 0.02:
        raise InputError(
            f"lung mask is {mask.shape[1]}x{mask.shape[0]} but the X-ray is "
            f"{image.shape[1]}x{image.shape[0]}: the mask must have the X-ray's size or at least "
            "its aspect ratio"
        )
    return _resize(mask, image.shape, nearest=True) > 0.5


def load_predictor(
    path_or_repo: str | os.PathLike, **kwargs: Any
) -> ChestPredictor | LungSegmenter:
    """Load a served model from a checkpoint folder or Hub id: a :class:`ChestPredictor` for a
    classifier, a :class:`LungSegmenter` for a segmentation model (by its registered family).

    Keyword arguments go to :meth:`ChestPredictor.from_pretrained`.
    """
    family = get_model_family(AutoConfig.from_pretrained(path_or_repo).model_type)
    if family.task == "segmentation":
        return LungSegmenter.from_pretrained(path_or_repo)
    return ChestPredictor.from_pretrained(path_or_repo, **kwargs)


@dataclass
class ServedModels:
    """The models an app serves, loaded from checkpoint folders or Hub ids.

    Attributes:
        classifiers: model key (a registry key) -> predictor, for those loaded.
        lung_segmenter: the lung U-Net, or None.
        unavailable: model key -> why it is not served (shown in the app).
        model_cards: model key -> the checkpoint's model card (README.md) text, where it has one.
    """

    classifiers: dict[str, ChestPredictor]
    lung_segmenter: LungSegmenter | None
    unavailable: dict[str, str]
    model_cards: dict[str, str]


def load_served_models(
    checkpoints: Mapping[str, str | os.PathLike | None],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    explanation: str = "gradcam",
    explanation_stage: int | None = None,
) -> ServedModels:
    """Load a checkpoint per registered family; one that is missing or fails is reported, not raised.

    Every classifier family gets a :class:`ChestPredictor`; the segmentation family (the lung
    U-Net) a :class:`LungSegmenter` that makes the classifiers' lung masks.

    Args:
        checkpoints: model key (``hf_covid.registry.list_models()``) -> folder or Hub id (None:
            not configured).
        max_pixels: largest input image the predictors accept.
        explanation: CAM method of every classifier (see :class:`ChestPredictor`).
        explanation_stage: encoder stage explained (None: each model's default layer).

    Raises:
        KeyError: an unknown model key.
        RuntimeError: no classifier could be loaded (the message lists why for each).
    """
    families = {family.key: family for family in model_families()}
    unknown = set(checkpoints) - set(families)
    if unknown:
        raise KeyError(f"unknown model keys {sorted(unknown)}; expected {list(families)}")
    unavailable: dict[str, str] = {}
    cards: dict[str, str] = {}

    def load(family: ModelFamily, loader: Any) -> Any:
        key = family.key
        try:
            location = _checkpoint_location(checkpoints.get(key))
            model_type = AutoConfig.from_pretrained(location).model_type
            if model_type != family.model_type:
                raise ValueError(
                    f"expected a {family.model_type} checkpoint, found model_type {model_type!r}"
                )
            loaded = loader(location)
        except _NotConfigured as missing:
            unavailable[key] = str(missing)
        except Exception as error:  # a broken checkpoint must not take the app down
            unavailable[key] = (
                f"could not be loaded from {location} ({type(error).__name__}: {error})"
            )
        else:
            logger.info("serving %s from %s", key, location)
            card = read_model_card(location)
            if card:
                cards[key] = card
            return loaded
        logger.warning("not serving %s: %s", key, unavailable[key])
        return None

    segmenter = None
    for family in families.values():
        if family.task == "segmentation" and segmenter is None:
            segmenter = load(family, LungSegmenter.from_pretrained)
    classifiers = {}
    for key, family in families.items():
        if family.task == "segmentation":
            continue
        predictor = load(
            family,
            lambda location: ChestPredictor.from_pretrained(
                location,
                lung_segmenter=segmenter,
                max_pixels=max_pixels,
                explanation=explanation,
                explanation_stage=explanation_stage,
            ),
        )
        if predictor is not None:
            classifiers[key] = predictor
    if not classifiers:
        reasons = "; ".join(f"{key}: {reason}" for key, reason in unavailable.items())
        raise RuntimeError(f"no classifier checkpoint could be loaded ({reasons})")
    return ServedModels(classifiers, segmenter, unavailable, cards)


class _NotConfigured(Exception):
    """A served model without a checkpoint (not an error: its choice is turned off)."""


def _checkpoint_location(location: str | os.PathLike | None) -> str:
    if location is None:
        raise _NotConfigured("no checkpoint configured")
    location = str(location)
    if not Path(location).is_dir() and not is_hub_id(location):
        raise _NotConfigured(f"no checkpoint folder at {location}")
    return location


def read_model_card(path_or_repo: str | os.PathLike) -> str | None:
    """The model card (README.md) of a checkpoint folder or Hub repo without its YAML header, or
    None when it has none."""
    from huggingface_hub import ModelCard

    folder = Path(path_or_repo)
    source = folder / "README.md" if folder.is_dir() else path_or_repo
    try:
        return ModelCard.load(source).text.strip() or None
    except Exception:  # no card, or offline: the app shows the rest
        return None


def heatmap_overlay(
    image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, side: int = 384
) -> np.ndarray:
    """A heat map (e.g. Grad-CAM, [0, 1]) over a grayscale image, as (h, w, 3) uint8 RGB whose
    longer side is ``side`` pixels (display size: large images shrink, small ones grow)."""
    base = _display_size(image, side)
    heat = np.clip(_resize(heatmap, base.shape), 0, 1)
    colored = colormaps["jet"](heat)[..., :3]
    return _to_uint8((1 - alpha) * base[..., None] + alpha * colored)


def mask_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color: tuple[float, float, float] = (0.1, 0.9, 0.2),
    alpha: float = 0.3,
    side: int = 384,
) -> np.ndarray:
    """A binary mask tinted over a grayscale image with its outline, as (h, w, 3) uint8 RGB whose
    longer side is ``side`` pixels."""
    base = _display_size(image, side)
    inside = _resize(np.asarray(mask, dtype=np.float32), base.shape, nearest=True) > 0.5
    outline = inside & ~ndimage.binary_erosion(inside, iterations=max(1, max(base.shape) // 256))
    rgb = np.repeat(base[..., None], 3, axis=-1)
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * np.asarray(color)
    rgb[outline] = color
    return _to_uint8(rgb)


def feature_map_grid(
    activations: np.ndarray, *, columns: int = 4, tile_size: int = 64, gap: int = 2
) -> np.ndarray:
    """The channels of one layer's (C, h, w) activations side by side, each scaled to its own
    range and coloured with viridis, as one (H, W, 3) uint8 image (white gaps between tiles)."""
    activations = np.asarray(activations, dtype=np.float32)
    if activations.ndim != 3 or not len(activations):
        raise ValueError(f"expected (C, h, w) activations, got shape {activations.shape}")
    rows = -(-len(activations) // columns)
    columns = min(columns, len(activations))
    step = tile_size + gap
    grid = np.ones((rows * step - gap, columns * step - gap, 3), dtype=np.float32)
    for index, activation in enumerate(activations):
        low, high = float(activation.min()), float(activation.max())
        scaled = (activation - low) / (high - low) if high > low else np.zeros_like(activation)
        tile = colormaps["viridis"](_resize(scaled, (tile_size, tile_size), nearest=True))[..., :3]
        row, column = divmod(index, columns)
        grid[row * step : row * step + tile_size, column * step : column * step + tile_size] = tile
    return _to_uint8(grid)


def _display_size(image: np.ndarray, side: int) -> np.ndarray:
    """The image resized (up or down) so that its longer side is ``side`` pixels."""
    scale = side / max(image.shape)
    shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return np.clip(_resize(image, shape), 0, 1)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class LatencyReport:
    """End-to-end request latencies against a running app (seconds)."""

    n_requests: int
    concurrency: int
    latencies_s: tuple[float, ...]
    errors: tuple[str, ...]
    wall_s: float

    @property
    def p50_s(self) -> float:
        """Median latency."""
        return _percentile(self.latencies_s, 50)

    @property
    def p95_s(self) -> float:
        """95th percentile latency."""
        return _percentile(self.latencies_s, 95)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        latencies = self.latencies_s or (float("nan"),)
        return {
            "n_requests": self.n_requests,
            "concurrency": self.concurrency,
            "n_errors": len(self.errors),
            "errors": list(self.errors),
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "mean_s": statistics.fmean(latencies),
            "max_s": max(latencies),
            "throughput_per_s": len(self.latencies_s) / self.wall_s if self.wall_s else 0.0,
        }


def _percentile(values: Sequence[float], percent: float) -> float:
    return float(np.percentile(values, percent)) if values else float("nan")


def measure_app_latency(
    url: str,
    api_name: str,
    arguments: Sequence[Any],
    *,
    n_requests: int = 32,
    concurrency: int = 8,
    download_outputs: bool = True,
) -> LatencyReport:
    """Send ``n_requests`` predictions to a running app from ``concurrency`` clients at once and
    time each one end to end (upload, queue, model, Grad-CAM, download of the outputs).

    Args:
        url: the app's URL.
        api_name: the endpoint, e.g. "/predict_chest_xray".
        arguments: the endpoint's inputs; files as ``gradio_client.handle_file(path)``.
        n_requests: requests in total, shared among the clients.
        concurrency: clients sending at the same time, each from its own thread.
        download_outputs: also download the output images, as a browser does (False: time the
            server's answer only).

    Returns:
        The latencies of the successful requests and the messages of the failed ones.
    """
    from gradio_client import Client

    shares = [
        n_requests // concurrency + (index < n_requests % concurrency)
        for index in range(concurrency)
    ]

    def run_client(count: int) -> tuple[list[float], list[str]]:
        options = {} if download_outputs else {"download_files": False}
        client = Client(url, verbose=False, analytics_enabled=False, **options)
        latencies, errors = [], []
        try:
            for _ in range(count):
                start = time.perf_counter()
                try:
                    client.predict(*arguments, api_name=api_name)
                except Exception as error:  # count and report every failure, keep measuring
                    errors.append(f"{type(error).__name__}: {error}")
                else:
                    latencies.append(time.perf_counter() - start)
        finally:
            client.close()
        return latencies, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(run_client, [share for share in shares if share]))
    wall = time.perf_counter() - start
    return LatencyReport(
        n_requests=n_requests,
        concurrency=concurrency,
        latencies_s=tuple(latency for latencies, _ in results for latency in latencies),
        errors=tuple(error for _, errors in results for error in errors),
        wall_s=wall,
    )
