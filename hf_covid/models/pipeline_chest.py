"""The transformers pipeline of the hf_covid classifiers: an X-ray, a CT, a lung mask, or a mix.

``ChestImageClassificationPipeline`` extends transformers' ``ImageClassificationPipeline`` (same
output: ``[{"label": ..., "score": ...}, ...]``) with the inputs of the hf_covid models:

- the dual-input model takes an X-ray, a CT (``ct=``) or both;
- the dual-channel model takes the X-ray and its lung mask (``masks=``); without a mask, the
  pipeline's ``segmenter`` (an ``image-segmentation`` pipeline of the lung U-Net, or the folder /
  Hub id of one, by default ``config.lung_segmenter``) makes it from the X-ray;
- the X-ray-only models take an X-ray, as in ``image-classification``;
- a checkpoint whose processor crops to the lungs (``lung_crop_margin``) gets every X-ray cropped
  to the box of its lung mask (given as ``masks=``, or made by the segmenter, by default the U-Net
  saved in the checkpoint's ``lung_segmenter/`` folder); ``return_lung_crop=True`` adds the box
  (top, left, bottom, right as fractions of the X-ray) and the crop's status to each answer.

The classifiers save it with their checkpoint (``custom_pipelines`` in ``config.json`` and this
file beside the modeling code), so that it loads by remote code where hf_covid is not installed::

    >>> from transformers import pipeline
    >>> classifier = pipeline(model="me/covid-dual-input", trust_remote_code=True)
    >>> classifier("xray.png", ct="ct.png")
    [{'label': 'COVID', 'score': 0.93}, {'label': 'Non-COVID', 'score': 0.07}]

This file is copied next to a checkpoint: it imports only torch, PIL, numpy, transformers,
``.labels`` and ``.image_processing_chest``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForSemanticSegmentation,
    Pipeline,
    pipeline,
)
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import load_image
from transformers.pipelines import ImageClassificationPipeline

from .image_processing_chest import LUNG_CROP_STATUSES, LUNG_SEGMENTER_FOLDER
from .labels import LUNG_MASK_LABELS

__all__ = ["CHEST_CLASSIFICATION_TASK", "ChestImageClassificationPipeline"]

CHEST_CLASSIFICATION_TASK = "chest-image-classification"
"""The pipeline task name the hf_covid classifiers register and save in ``custom_pipelines``."""

_EXAMPLE_KEYS = ("xray", "ct", "mask")
_CROP_KEYS = ("lung_crop_box", "lung_crop_status")


def _as_image(image: Any, timeout: float | None) -> Any:
    """A path, URL or PIL image as a PIL image; arrays and tensors as they are."""
    if isinstance(image, np.ndarray | torch.Tensor):
        return image
    return load_image(
        os.fspath(image) if isinstance(image, os.PathLike) else image, timeout=timeout
    )


def _image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image, a (H, W[, C]) array or a (C, H, W) tensor."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        return tuple(image.shape[-2:])
    return tuple(np.shape(image)[:2])


def _examples(inputs: Any, ct: Any, masks: Any) -> dict[str, Any] | list[dict[str, Any]]:
    """One ``{"xray", "ct", "mask"}`` dict per example, from the call's arguments."""
    if isinstance(inputs, dict):
        return _checked_example(inputs)
    if isinstance(inputs, list | tuple) and all(isinstance(item, dict) for item in inputs):
        if ct is not None or masks is not None:
            raise ValueError("examples given as dicts carry their own CT and mask")
        return [_checked_example(item) for item in inputs]
    batched = isinstance(inputs, list | tuple) or (inputs is None and isinstance(ct, list | tuple))
    if not batched:
        return _checked_example({"xray": inputs, "ct": ct, "mask": masks})
    count = len(inputs) if inputs is not None else len(ct)
    columns = {}
    for key, values in (("xray", inputs), ("ct", ct), ("mask", masks)):
        if values is None:
            values = [None] * count
        elif not isinstance(values, list | tuple) or len(values) != count:
            raise ValueError(f"got {count} examples but {key} is not a list of {count}")
        columns[key] = list(values)
    return [
        _checked_example({key: columns[key][index] for key in _EXAMPLE_KEYS})
        for index in range(count)
    ]


def _checked_example(example: dict[str, Any]) -> dict[str, Any]:
    unknown = set(example) - set(_EXAMPLE_KEYS)
    if unknown:
        raise ValueError(
            f"unknown input(s) {sorted(unknown)}; an example is a dict with keys {_EXAMPLE_KEYS}"
        )
    if example.get("xray") is None and example.get("ct") is None:
        raise ValueError("each example needs an X-ray, a CT (ct=...) or both")
    if example.get("mask") is not None and example.get("xray") is None:
        raise ValueError("a lung mask was given without its X-ray")
    return {key: example.get(key) for key in _EXAMPLE_KEYS}


class ChestImageClassificationPipeline(ImageClassificationPipeline):
    """Classify chest images with any hf_covid classifier (see the module docstring).

    Args:
        segmenter: For models that need a lung mask (a mask input or a lung crop): an
            ``image-segmentation`` pipeline of the lung U-Net, or its folder / Hub id (loaded as
            such a pipeline, with remote code when this classifier itself was loaded by remote
            code). Defaults to the model's ``config.lung_segmenter``, else the checkpoint's own
            ``lung_segmenter/`` copy; None leaves masks to the caller (``masks=``).
        *args, **kwargs: As for ``ImageClassificationPipeline``.

    Call it with ``pipe(xray)``, ``pipe(xray, ct=ct)``, ``pipe(ct=ct)``, ``pipe(xray, masks=mask)``,
    lists of each for a batch, or dicts with the keys ``xray``, ``ct`` and ``mask``.
    """

    task_name: ClassVar[str] = CHEST_CLASSIFICATION_TASK
    """The task it is registered and saved under."""

    def __init__(self, *args: Any, segmenter: Pipeline | str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        parameters = inspect.signature(self.model.forward).parameters
        self.accepts_ct = "ct_pixel_values" in parameters
        self.needs_mask = "lung_mask" in parameters
        self.crops_lungs = getattr(self.image_processor, "lung_crop_margin", None) is not None
        segmenter = segmenter or getattr(self.model.config, "lung_segmenter", None)
        remote = type(self.model).__module__.startswith("transformers_modules")
        if isinstance(segmenter, str):
            segmenter = pipeline(
                "image-segmentation", model=segmenter, trust_remote_code=remote, device=self.device
            )
        if segmenter is None and (self.needs_mask or self.crops_lungs):
            segmenter = self._checkpoint_segmenter(remote)
        self.segmenter = segmenter

    def _checkpoint_segmenter(self, remote: bool) -> Pipeline | None:
        """The lung U-Net saved in the checkpoint's `LUNG_SEGMENTER_FOLDER`, or None."""
        source = self.model.name_or_path
        local = Path(source)
        if local.is_dir() and not (local / LUNG_SEGMENTER_FOLDER).is_dir():
            return None
        try:
            model = AutoModelForSemanticSegmentation.from_pretrained(
                source, subfolder=LUNG_SEGMENTER_FOLDER, trust_remote_code=remote
            )
            processor = AutoImageProcessor.from_pretrained(
                source, subfolder=LUNG_SEGMENTER_FOLDER, trust_remote_code=remote
            )
        except (OSError, ValueError):  # no such folder on the Hub: masks come from the caller
            return None
        return pipeline(
            "image-segmentation", model=model, image_processor=processor, device=self.device
        )

    def __call__(
        self, inputs: Any = None, *, ct: Any = None, masks: Any = None, **kwargs: Any
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Classify one example or a list of them.

        Args:
            inputs: X-ray(s): paths, URLs, PIL images, arrays or tensors; or dicts with the keys
                ``xray``, ``ct``, ``mask``. None with ``ct`` for CT-only examples.
            ct: CT slice(s) for the dual-input model, matching ``inputs`` one to one.
            masks: Lung mask(s) for the dual-channel model and the lung crop (made by the
                segmenter when omitted).
            **kwargs: ``top_k``, ``function_to_apply``, ``timeout``, ``batch_size``,
                ``return_lung_crop``...

        Returns:
            Per example, the classes with their scores, best first; with
            ``return_lung_crop=True`` (a lung-cropping checkpoint) a dict of those ``scores``,
            the ``lung_crop_box`` and the ``lung_crop_status``.
        """
        return super().__call__(_examples(inputs, ct, masks), **kwargs)

    def _sanitize_parameters(self, return_lung_crop: bool | None = None, **kwargs: Any):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if return_lung_crop is not None:
            postprocess["return_lung_crop"] = return_lung_crop
        return preprocess, forward, postprocess

    def preprocess(self, example: dict[str, Any], timeout: float | None = None) -> BatchFeature:
        """Model inputs of one example: ``pixel_values``, ``ct_pixel_values``, ``lung_mask``
        (and the lung crop's box and status, which :meth:`_forward` sets aside)."""
        data: dict[str, torch.Tensor] = {}
        if example["xray"] is not None:
            xray = _as_image(example["xray"], timeout)
            mask = example["mask"]
            if self.needs_mask or self.crops_lungs:
                mask = self._lung_mask(xray) if mask is None else _as_image(mask, timeout)
                processed = self.image_processor(images=xray, masks=mask, return_tensors="pt")
                keep = ("pixel_values", *(("lung_mask",) if self.needs_mask else ()), *_CROP_KEYS)
                data.update({key: processed[key] for key in keep if key in processed})
            else:
                data.update(self.image_processor(images=xray, return_tensors="pt"))
        elif self.needs_mask or not self.accepts_ct:
            raise ValueError(f"{type(self.model).__name__} needs an X-ray")
        if example["ct"] is not None:
            if not self.accepts_ct:
                raise ValueError(f"{type(self.model).__name__} takes no CT (ct=...)")
            ct = _as_image(example["ct"], timeout)
            data["ct_pixel_values"] = self.image_processor(images=ct, return_tensors="pt")[
                "pixel_values"
            ]
        return BatchFeature(data=data).to(self.dtype)

    def _forward(self, model_inputs: dict[str, Any]) -> Any:
        crop = {key: model_inputs.pop(key) for key in _CROP_KEYS if key in model_inputs}
        outputs = super()._forward(model_inputs)
        for key, value in crop.items():
            outputs[key] = value
        return outputs

    def postprocess(
        self, model_outputs: Any, return_lung_crop: bool = False, **kwargs: Any
    ) -> list[dict[str, Any]] | dict[str, Any]:
        scores = super().postprocess(model_outputs, **kwargs)
        if not return_lung_crop:
            return scores
        if "lung_crop_box" not in model_outputs:
            raise ValueError("return_lung_crop=True: this checkpoint does not crop to the lungs")
        return {
            "scores": scores,
            "lung_crop_box": [float(v) for v in model_outputs["lung_crop_box"][0]],
            "lung_crop_status": LUNG_CROP_STATUSES[int(model_outputs["lung_crop_status"][0])],
        }

    def _lung_mask(self, xray: Any) -> np.ndarray:
        """The 0/1 lung mask of an X-ray at its own size, made by the segmenter's U-Net."""
        if self.segmenter is None:
            raise ValueError(
                f"{type(self.model).__name__} needs a lung mask (a mask input or its lung crop): "
                "pass masks=..., or give the pipeline a lung U-Net (segmenter=<image-segmentation "
                f"pipeline, folder or Hub id>); the checkpoint has no {LUNG_SEGMENTER_FOLDER}/"
            )
        processor, model = self.segmenter.image_processor, self.segmenter.model
        inputs = processor(images=xray, return_tensors="pt").to(model.device, model.dtype)
        with torch.no_grad():
            outputs = model(**inputs)
        label_map = processor.post_process_semantic_segmentation(
            outputs, target_sizes=[_image_size(xray)]
        )[0]
        lung = model.config.label2id[LUNG_MASK_LABELS[1]]
        return (label_map == lung).to(torch.uint8).cpu().numpy()
