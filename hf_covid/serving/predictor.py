"""Inference for the served models: load a checkpoint, predict one study, explain the prediction.

The predictor behind the Gradio app (:mod:`hf_covid.app`), usable without it::

    from hf_covid.serving import load_predictor

    predictor = load_predictor("outputs/demo/checkpoints/cnn_lstm")
    prediction = predictor.predict(xray="chest.dcm")
    prediction.label, prediction.probabilities, prediction.gradcam["xray"]

Images may be given as a file path, bytes, a PIL image or a numpy array, all read by
:func:`hf_covid.data.load_image` (PNG, JPEG, 16-bit, DICOM) under the predictor's input policy and
the input's name, so an error names the input ("X-ray"), never a file path. It reads pixel data
only, so no DICOM metadata (patient name, ids) ever reaches a :class:`Prediction`. Every image is
also scored by the input check (:mod:`hf_covid.data.input_check`): ``Prediction.input_checks``
says whether it looks like a frontal chest X-ray (or a CT slice in the CT slot). Every bad input
raises :class:`hf_covid.data.InputError` (an unreadable image its subclass ``ImageReadError``).

A checkpoint trained with a lung U-Net (``mask_model``) carries a copy of it
(`hf_covid.checkpoints.LUNG_SEGMENTER_FOLDER`), and :meth:`ChestPredictor.from_pretrained` uses
that copy for its masks, so serving makes the masks training made. A checkpoint whose processor
crops to the lungs gets every X-ray cropped to the box of that mask (or of an uploaded one);
``Prediction.lung_crop_box`` is the box in the X-ray's coordinates, and the Grad-CAM map is
placed inside it, at the X-ray's resolution.

Research software: not a diagnostic device.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel

from ..checkpoints import CheckpointSource, load_checkpoint, resolve_checkpoint
from ..data.image_reading import ImageSource, InputError, load_image
from ..data.input_check import InputCheck, InputCheckResult
from ..data.resize import resize_image
from ..data.validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError
from ..explain import cam_method, explanation_layers, feature_maps
from ..lung_masks import LungSegmenter, checkpoint_segmenter
from ..models.image_processing_chest import LUNG_CROP_STATUSES
from ..registry import get_model_family

__all__ = ["INPUT_NAMES", "ChestPredictor", "Prediction", "load_predictor"]

INPUT_NAMES: dict[str, str] = {"xray": "X-ray", "ct": "CT", "lung_mask": "lung mask"}
"""Input name -> how messages and captions call it."""

INPUT_CHECK_SLOTS: dict[str, str] = {"xray": "xray", "ct": "ct"}
"""Input name -> the :class:`InputCheck` slot it is checked against."""


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
        mask_source: "uploaded", the key of the segmentation family that made the mask
            (``"lung_unet"``), or None.
        input_checks: input name -> whether that image looks like what its slot expects (a
            frontal chest X-ray, a CT slice), from :class:`hf_covid.data.input_check.InputCheck`.
        lung_crop_box: the X-ray's lung crop (top, left, bottom, right as fractions of its
            height and width) for a model that crops to the lungs, else None.
        lung_crop_status: ``"cropped"``, or why the X-ray was left uncropped (an empty mask, one
            that covers the image); None without a crop.
    """

    probabilities: dict[str, float]
    inputs_used: tuple[str, ...]
    images: dict[str, np.ndarray]
    gradcam: dict[str, np.ndarray] = field(default_factory=dict)
    feature_maps: dict[str, np.ndarray] = field(default_factory=dict)
    lung_mask: np.ndarray | None = None
    mask_source: str | None = None
    input_checks: dict[str, InputCheckResult] = field(default_factory=dict)
    lung_crop_box: tuple[float, float, float, float] | None = None
    lung_crop_status: str | None = None

    @property
    def label(self) -> str:
        """The most probable class."""
        return max(self.probabilities, key=self.probabilities.__getitem__)


def _accepts(model: torch.nn.Module, argument: str) -> bool:
    return argument in inspect.signature(model.forward).parameters


class ChestPredictor:
    """One classifier with its image processor: probabilities, Grad-CAM and feature maps.

    Works for every hf_covid classifier: X-ray only (CNN+LSTM, ResNet), X-ray + lung mask
    (dual-channel; the mask is made by ``lung_segmenter`` when not given) and X-ray + CT
    (dual-input; either image may be missing). Thread-safe: Grad-CAM and feature maps hook the
    model, so they run under a per-model lock; the classification forward runs unlocked, and
    the CAM hooks keep only the activations of the thread that placed them, so a concurrent
    forward pass cannot leak into another request's map.

    Args:
        model: the classifier (``config.id2label`` names the classes).
        image_processor: its :class:`ChestImageProcessor`.
        lung_segmenter: makes the lung mask when none is given (needed by the dual-channel
            model and by a processor that crops to the lungs, shown as an overlay for the
            others).
        policy: input limits (pixels, smallest side, file size, mask shape), by default
            :data:`hf_covid.data.validation.DEFAULT_INPUT_POLICY`.
        input_check: scores whether each image looks like what its slot expects (default: the
            check packaged with hf_covid, :meth:`InputCheck.load`).
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
        policy: InputPolicy = DEFAULT_INPUT_POLICY,
        input_check: InputCheck | None = None,
        feature_map_channels: int = 8,
        explanation: str = "gradcam",
        explanation_stage: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.image_processor = image_processor
        self.lung_segmenter = lung_segmenter
        self.policy = policy
        self.input_check = input_check or InputCheck.load()
        self.feature_map_channels = feature_map_channels
        self.labels = tuple(
            model.config.id2label[index] for index in range(model.config.num_labels)
        )
        self.accepts_ct = _accepts(model, "ct_pixel_values")
        self.takes_lung_mask = _accepts(model, "lung_mask")
        self.crops_lungs = bool(getattr(image_processor, "crops_lungs", False))
        self.requires_lung_mask = self.takes_lung_mask or self.crops_lungs
        self._gradcam = cam_method(explanation)(model, explanation_layers(model, explanation_stage))
        self._hook_lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, path_or_repo: str | os.PathLike | CheckpointSource, **kwargs: Any
    ) -> ChestPredictor:
        """Load the classifier and its processor (Auto classes) from a folder or Hub id
        (``"org/name@revision"`` pins a revision; see :func:`hf_covid.checkpoints.resolve_checkpoint`).

        The lung U-Net saved with the checkpoint, where it has one, makes its masks (a
        ``lung_segmenter`` given here serves checkpoints without their own). Keyword arguments
        go to the constructor (``lung_segmenter``, ``policy``, ...).

        Raises:
            FileNotFoundError: the checkpoint crops to the lungs but its U-Net is missing.
        """
        folder = resolve_checkpoint(path_or_repo)
        model, processor = load_checkpoint(folder)
        own = checkpoint_segmenter(folder, processor)
        if own is not None:
            kwargs["lung_segmenter"] = own
        return cls(model, processor, **kwargs)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The images this model takes: ("xray",) or ("xray", "ct")."""
        return ("xray", "ct") if self.accepts_ct else ("xray",)

    def predict(
        self,
        xray: ImageSource | None = None,
        ct: ImageSource | None = None,
        lung_mask: ImageSource | None = None,
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
            InputError: an image is missing, unreadable (``ImageReadError``), too large, or the
                mask does not fit.
        """
        images = self._read_inputs(xray, ct)
        mask, mask_source = None, None
        if lung_mask is not None:
            if "xray" not in images:
                raise InputError("a lung mask was given without an X-ray")
            mask = self._fit_mask(self._read(lung_mask, "lung_mask"), images["xray"])
            mask_source = "uploaded"
        elif (
            "xray" in images
            and self.lung_segmenter is not None
            and (segment_lungs or self.requires_lung_mask)
        ):
            mask = self.lung_segmenter.segment(images["xray"])
            mask_source = get_model_family(self.lung_segmenter.model.config.model_type).key
        if self.requires_lung_mask and mask is None:
            raise InputError(
                "this model needs a lung mask: upload one (no lung segmentation model is loaded)"
            )

        inputs, crop = self._model_inputs(images, mask)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        probabilities = outputs.logits.float().softmax(-1)[0]
        inputs_used = self._inputs_used(outputs, images)
        gradcam, maps = {}, {}
        if explain:
            gradcam, maps = self._explain(
                inputs, int(probabilities.argmax()), images, inputs_used, crop
            )
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
            input_checks={
                name: self.input_check.score(image, INPUT_CHECK_SLOTS[name])
                for name, image in images.items()
            },
            lung_crop_box=None if crop is None else crop[0],
            lung_crop_status=None if crop is None else LUNG_CROP_STATUSES[crop[1]],
        )

    def _read(self, image: ImageSource, name: str) -> np.ndarray:
        return load_image(image, name=INPUT_NAMES[name], policy=self.policy)

    def _read_inputs(
        self, xray: ImageSource | None, ct: ImageSource | None
    ) -> dict[str, np.ndarray]:
        if ct is not None and not self.accepts_ct:
            raise InputError("this model takes an X-ray only, but a CT was given")
        given = {name: image for name, image in (("xray", xray), ("ct", ct)) if image is not None}
        if not given:
            needed = " and/or a CT" if self.accepts_ct else ""
            raise InputError(f"no image given: upload an X-ray{needed}")
        if "xray" not in given and not self.accepts_ct:
            raise InputError("no X-ray given")
        return {name: self._read(image, name) for name, image in given.items()}

    def _fit_mask(self, mask: np.ndarray, image: np.ndarray) -> np.ndarray:
        """The mask resized to the X-ray, under the policy's mask rule (the size may differ,
        the field of view may not)."""
        try:
            self.policy.check_mask_shape(mask.shape, image.shape)
        except InputPolicyError as error:
            raise InputError(f"the lung mask does not fit the X-ray: {error}") from None
        return resize_image(mask, image.shape, nearest=True) > 0.5

    def _model_inputs(
        self, images: Mapping[str, np.ndarray], mask: np.ndarray | None
    ) -> tuple[dict[str, torch.Tensor], tuple[tuple[float, ...], int] | None]:
        """Model keyword inputs (a missing modality is left out: the dual-input model then
        marks it unavailable) and the X-ray's lung crop (box, status), or None without one."""
        inputs, crop = {}, None
        if "xray" in images:
            masks = [mask.astype(np.float32)] if self.requires_lung_mask else None
            processed = self.image_processor(
                images=[images["xray"]], masks=masks, return_tensors="pt"
            )
            inputs["pixel_values"] = processed["pixel_values"]
            if self.takes_lung_mask:
                inputs["lung_mask"] = processed["lung_mask"]
            if self.crops_lungs:
                box = tuple(float(v) for v in processed["lung_crop_box"][0])
                crop = (box, int(processed["lung_crop_status"][0]))
        if "ct" in images:
            inputs["ct_pixel_values"] = self.image_processor(
                images=[images["ct"]], return_tensors="pt"
            )["pixel_values"]
        return inputs, crop

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
        crop: tuple[tuple[float, ...], int] | None,
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
                box = crop[0] if crop is not None and name == "xray" else None
                gradcam[name] = _map_on_image(cam[0].numpy(), images[name].shape, box)
        maps = {
            _branch_input(key): value[0].numpy()
            for key, value in activations.items()
            if _branch_input(key) in inputs_used
        }
        return gradcam, maps


def _map_on_image(
    cam: np.ndarray, shape: tuple[int, ...], box: Sequence[float] | None
) -> np.ndarray:
    """A map of the model's input placed on the image: resized to it, or into the crop box
    (fractions of the image) and zero outside it."""
    if box is None:
        return resize_image(cam, shape)
    height, width = shape[:2]
    top, left = round(box[0] * height), round(box[1] * width)
    bottom, right = max(round(box[2] * height), top + 1), max(round(box[3] * width), left + 1)
    placed = np.zeros((height, width), dtype=np.float32)
    placed[top:bottom, left:right] = resize_image(cam, (bottom - top, right - left))
    return placed


def _branch_input(key: str) -> str:
    """Grad-CAM branch key -> input name ("image" is the X-ray of single-input models)."""
    return "xray" if key == "image" else key


def load_predictor(
    path_or_repo: str | os.PathLike | CheckpointSource, **kwargs: Any
) -> ChestPredictor | LungSegmenter:
    """Load a served model from a checkpoint folder or Hub id: a :class:`ChestPredictor` for a
    classifier, a :class:`LungSegmenter` for a segmentation model (by its registered family).

    Keyword arguments go to :meth:`ChestPredictor.from_pretrained`.
    """
    folder = resolve_checkpoint(path_or_repo)
    family = get_model_family(AutoConfig.from_pretrained(folder).model_type)
    if family.task == "segmentation":
        return LungSegmenter.from_pretrained(folder)
    return ChestPredictor.from_pretrained(folder, **kwargs)
