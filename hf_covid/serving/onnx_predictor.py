"""A classifier exported by :func:`hf_covid.export.export_onnx`, run by onnxruntime with the same
preprocessing as :class:`~hf_covid.serving.predictor.ChestPredictor`.

The exported folder holds the graph, ``config.json`` and ``preprocessor_config.json``; a model
whose processor crops to the lungs (or that reads a lung mask) also holds its lung U-Net, exported
in ``lung_segmenter/``. :class:`OnnxPredictor` reads an image with `hf_covid.data.load_image`,
makes its lung mask with that U-Net (its graph inside a :class:`~hf_covid.lung_masks.LungSegmenter`,
so the mask is made as in training and serving), crops and standardises it with the saved
processor and runs the classifier's graph::

    >>> predictor = OnnxPredictor("exports/resnet")
    >>> predictor.predict("chest.png")
    {'COVID': 0.07, 'Lung_Opacity': 0.21, 'Normal': 0.66, 'Viral Pneumonia': 0.06}

Research software: not a diagnostic device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig

from ..checkpoints import LUNG_SEGMENTER_FOLDER, load_image_processor
from ..data.image_reading import ImageSource, load_image
from ..export import ONNX_FILE_NAME, onnx_inputs, onnx_session
from ..lung_masks import LungSegmenter
from ..models.image_processing_chest import ChestImageProcessor
from ..registry import get_model_family

__all__ = ["OnnxPredictor"]


class _OnnxGraph:
    """An exported graph called like the model it came from: ``graph(**inputs)["logits"]``."""

    def __init__(self, folder: Path) -> None:
        self.session = onnx_session(folder / ONNX_FILE_NAME)
        self.config = AutoConfig.from_pretrained(folder)

    def eval(self) -> _OnnxGraph:
        return self

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        names = [node.name for node in self.session.get_outputs()]
        outputs = self.session.run(names, onnx_inputs(inputs, self.session))
        return {name: torch.from_numpy(value) for name, value in zip(names, outputs, strict=True)}


class OnnxPredictor:
    """An exported X-ray classifier with its processor and, where it needs one, its lung U-Net.

    Args:
        folder: A folder written by :func:`hf_covid.export.export_onnx`.

    Raises:
        FileNotFoundError: no graph in the folder, or a lung-cropping (or mask-reading) model
            whose ``lung_segmenter/`` is missing.
        ValueError: a model that takes a CT (the dual-input model).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        if not (folder / ONNX_FILE_NAME).is_file():
            raise FileNotFoundError(f"'{folder}' holds no {ONNX_FILE_NAME}: export one first")
        self.graph = _OnnxGraph(folder)
        self.family = get_model_family(self.graph.config.model_type)
        if "ct_pixel_values" in self.family.input_names:
            raise ValueError(
                f"'{folder}': OnnxPredictor runs X-ray classifiers; run the {self.family.display_name}"
                "'s graph with hf_covid.export.onnx_inputs and onnx_session"
            )
        self.processor = load_image_processor(folder) or ChestImageProcessor()
        self.takes_lung_mask = "lung_mask" in self.family.input_names
        self.segmenter = None
        if self.takes_lung_mask or self.processor.crops_lungs:
            unet = folder / LUNG_SEGMENTER_FOLDER
            if not (unet / ONNX_FILE_NAME).is_file():
                raise FileNotFoundError(
                    f"'{folder}': the model needs lung masks (a lung crop or a mask input), but "
                    f"{LUNG_SEGMENTER_FOLDER}/{ONNX_FILE_NAME} is missing; export the checkpoint "
                    "with its lung_segmenter/ folder"
                )
            self.segmenter = LungSegmenter(_OnnxGraph(unet), load_image_processor(unet))
        self.labels = tuple(
            self.graph.config.id2label[index] for index in range(self.graph.config.num_labels)
        )

    def predict(self, xray: ImageSource) -> dict[str, float]:
        """Class probabilities of one X-ray (a path, bytes, PIL image or array)."""
        return self.predict_with_crop(xray)[0]

    def predict_with_crop(self, xray: ImageSource) -> tuple[dict[str, float], Any]:
        """Class probabilities and the lung crop box (fractions of the image, or None)."""
        image = load_image(xray, name="X-ray")
        masks = None if self.segmenter is None else [self.segmenter.segment(image)]
        processed = self.processor(
            images=[image],
            masks=None if masks is None else [mask.astype(np.float32) for mask in masks],
            return_tensors="pt",
        )
        inputs = {"pixel_values": processed["pixel_values"]}
        if self.takes_lung_mask:
            inputs["lung_mask"] = processed["lung_mask"]
        logits = self.graph(**inputs)["logits"][0].float()
        probabilities = logits.softmax(-1).tolist()
        box = (
            tuple(float(v) for v in processed["lung_crop_box"][0])
            if "lung_crop_box" in processed
            else None
        )
        return dict(zip(self.labels, probabilities, strict=True)), box
