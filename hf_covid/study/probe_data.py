"""What the study's probes share: its folders, its images as a configuration's models see them,
lung masks, predictions and scores.

The confound probes (:mod:`hf_covid.study.confounds`) and the explanation scores
(:mod:`hf_covid.study.explanations`) read the study folder through the helpers here:
``<study_dir>/models/lung_unet`` (the U-Net), ``<study_dir>/models/<configuration>/<family key>``
(the classifiers) and ``<study_dir>/data/<composition>`` (each composition the classifiers were
trained and tested on, saved with ``save_to_disk`` by :mod:`hf_covid.study.run`).
Research software, not a diagnostic device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from torchvision.transforms.v2 import functional as tvF
from transformers import PreTrainedModel

from hf_covid.checkpoints import is_complete_checkpoint_folder
from hf_covid.data import load_image, preprocess_for_training
from hf_covid.evaluation.metrics import bootstrap_confidence_intervals, classification_metrics
from hf_covid.lung_masks import (
    HUMAN_MASK_COLUMN,
    UNET_MASK_CACHE,
    LungSegmenter,
    add_unet_masks,
    mask_paths,
)
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.labels import BINARY_LABELS
from hf_covid.registry import get_model_family

from .configurations import ABLATION_MODELS, StudyConfiguration

__all__ = [
    "COMPOSITIONS_DIR",
    "FIGURES_DIR",
    "LUNG_UNET",
    "MODELS_DIR",
    "POSITIVE_CLASS",
    "SCORED_METRICS",
    "StudyImages",
    "composition_dir",
    "configuration_checkpoints",
    "load_composition",
    "load_study_images",
    "model_inputs",
    "one_torch_thread",
    "predict_probabilities",
    "scores_with_intervals",
    "unet_dir",
]

MODELS_DIR = "models"
"""Sub-folder of the study folder: ``lung_unet/`` and ``<configuration>/<family key>/``."""
COMPOSITIONS_DIR = "data"
"""Sub-folder of the study folder holding each composition the models were trained and tested
on (``<composition name>/``, ``xray_ct/``), saved with ``save_to_disk``."""
FIGURES_DIR = "figures"
"""Sub-folder of the study folder where the figures go."""
LUNG_UNET = "lung_unet"
"""Family key of the lung U-Net whose masks crop and blank the lungs."""
POSITIVE_CLASS = BINARY_LABELS[1]
"""COVID: the positive class of every sensitivity and ROC-AUC here."""
SCORED_METRICS = ("accuracy", "balanced_accuracy", "covid_sensitivity", "roc_auc")
"""Metrics (``classification_metrics`` keys) given with intervals throughout."""


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored afterwards).

    The probes' tensors are small; on a busy shared CPU, intra-op threads spin-wait for each
    other and one epoch took 6x longer with two threads than with one (measured).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def unet_dir(study_dir: str | Path) -> Path:
    """The study's lung U-Net checkpoint folder."""
    return Path(study_dir) / MODELS_DIR / LUNG_UNET


def configuration_checkpoints(
    study_dir: str | Path, configuration: StudyConfiguration
) -> dict[str, Path]:
    """Family key -> checkpoint folder of every complete ablation model of ``configuration``."""
    folder = Path(study_dir) / MODELS_DIR / configuration.key
    return {
        key: folder / key for key in ABLATION_MODELS if is_complete_checkpoint_folder(folder / key)
    }


def composition_dir(study_dir: str | Path, name: str) -> Path:
    """Where the study saved the composition ``name``."""
    return Path(study_dir) / COMPOSITIONS_DIR / name


def load_composition(study_dir: str | Path, name: str) -> DatasetDict:
    """The composition ``name`` as the study saved it (the models' own splits).

    Raises:
        FileNotFoundError: the study has not saved it (run the study's training first).
    """
    folder = composition_dir(study_dir, name)
    if not folder.is_dir():
        raise FileNotFoundError(f"no saved composition '{name}' under {folder.parent}")
    return load_from_disk(str(folder))


@dataclass
class StudyImages:
    """X-rays of one split as a configuration's models see them, with masks and provenance.

    Attributes:
        images: (N, 1, S, S) float in [0, 1], after the configuration's lung crop and intensity
            standardisation.
        unet_masks: (N, 1, S, S) 0/1 lung masks of the study's U-Net, in the same view.
        human_masks: (N, 1, S, S) 0/1 human lung masks in the same view (zeros where none).
        has_human_mask: (N,) whether an image has a human mask.
        labels: (N,) class ids into ``class_names``.
        class_names: The split's classes.
        sources: (N,) collection of each image.
        sites: (N,) hospital or web site of each image ("" when unknown).
        patient_ids: (N,) patient within the collection ("" when unknown).
        image_ids: (N,) path within the collection.
        age_groups: (N,) age group ("" when unknown).
    """

    images: torch.Tensor
    unet_masks: torch.Tensor
    human_masks: torch.Tensor
    has_human_mask: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sources: np.ndarray
    sites: np.ndarray
    patient_ids: np.ndarray
    image_ids: np.ndarray
    age_groups: np.ndarray

    def select(self, rows: np.ndarray) -> StudyImages:
        """The images at ``rows`` (indices or a boolean mask)."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        index = torch.as_tensor(rows, dtype=torch.long)
        return StudyImages(
            self.images[index],
            self.unet_masks[index],
            self.human_masks[index],
            self.has_human_mask[rows],
            self.labels[rows],
            self.class_names,
            self.sources[rows],
            self.sites[rows],
            self.patient_ids[rows],
            self.image_ids[rows],
            self.age_groups[rows],
        )

    def concatenate(self, other: StudyImages) -> StudyImages:
        """These images followed by ``other``'s (of the same classes)."""
        if other.class_names != self.class_names:
            raise ValueError(f"classes differ: {self.class_names} and {other.class_names}")
        tensors = ("images", "unet_masks", "human_masks")
        return StudyImages(
            **{
                name: torch.cat([getattr(self, name), getattr(other, name)])
                if name in tensors
                else self.class_names
                if name == "class_names"
                else np.concatenate([getattr(self, name), getattr(other, name)])
                for name in self.__dataclass_fields__
            }
        )

    @property
    def groups(self) -> list[tuple[str, str] | None]:
        """Each image's patient, ``(source, patient id)``, for patient-level bootstraps."""
        return [
            (source, patient) if patient else None
            for source, patient in zip(self.sources, self.patient_ids, strict=True)
        ]


def _human_mask_in_view(path: str, box: Sequence[float] | None, size: int) -> torch.Tensor:
    """A human lung mask file cropped to ``box`` (fractions, or None) and resized to the view."""
    mask = torch.from_numpy(np.asarray(load_image(path)) > 0.5).float()[None]
    if box is not None:
        height, width = mask.shape[-2:]
        top, left, bottom, right = box
        mask = mask[
            :,
            round(top * height) : max(round(bottom * height), round(top * height) + 1),
            round(left * width) : max(round(right * width), round(left * width) + 1),
        ]
    return tvF.resize(mask, [size, size], tvF.InterpolationMode.NEAREST_EXACT)


def load_study_images(
    split: Dataset,
    processor: ChestImageProcessor,
    segmenter: LungSegmenter,
    mask_cache: str | Path,
) -> StudyImages:
    """A Radiography-layout split decoded once, as a model with ``processor`` sees it.

    Every image gets the U-Net's mask (cached in ``mask_cache``); the processor's steps up to the
    resize (lung crop from that mask, intensity standardisation) make the view, and the human
    masks (the split's ``mask`` column) are cropped to the same box.
    """
    masked = add_unet_masks(
        DatasetDict({"study": split}),
        segmenter,
        Path(mask_cache) / UNET_MASK_CACHE,
        progress=False,
    )["study"]
    size = int(processor.size["height"])
    prepared = preprocess_for_training(
        DatasetDict({"study": masked}),
        image_size=size,
        processor=processor,
        mask_column="mask",
        cache_dir=mask_cache,
    )["study"]
    rows = prepared[:]
    count = len(split)
    boxes = rows.get("lung_crop_box") or [None] * count
    human_paths = mask_paths(masked, HUMAN_MASK_COLUMN)
    human = torch.zeros(count, 1, size, size)
    for row, path in enumerate(human_paths):
        if path is not None:
            human[row] = _human_mask_in_view(path, boxes[row], size)

    def column(name: str) -> np.ndarray:
        values = rows.get(name)
        return np.array(["" if v is None else str(v) for v in values] if values else [""] * count)

    return StudyImages(
        images=torch.stack(rows["pixel_values"]).float() / 255.0,
        unet_masks=torch.stack(rows["lung_mask"]).float(),
        human_masks=human,
        has_human_mask=np.array([path is not None for path in human_paths], dtype=bool),
        labels=np.array(rows["labels"], dtype=np.int64),
        class_names=tuple(split.features["label"].names),
        sources=column("source"),
        sites=column("site"),
        patient_ids=column("patient_id"),
        image_ids=column("image_id"),
        age_groups=column("age_group"),
    )


def model_inputs(
    model: PreTrainedModel,
    processor: ChestImageProcessor | None,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The keyword inputs of a classifier for (N, 1, S, S) X-rays in [0, 1], X-ray only.

    ``masks`` is the lung-mask input of models that take one (the dual-channel CNN); the
    dual-input model gets its X-ray with the CT marked missing.

    Raises:
        ValueError: a model that needs masks called without them.
    """
    family = get_model_family(model.config.model_type)
    processor = processor or ChestImageProcessor(num_channels=1)
    pixel_values = processor.to_model_input(images)
    inputs = {"pixel_values": pixel_values}
    if "lung_mask" in family.input_names:
        if masks is None:
            raise ValueError(f"the {family.display_name} needs lung masks as input")
        inputs["lung_mask"] = masks
    if "ct_pixel_values" in family.input_names:
        inputs["ct_pixel_values"] = torch.zeros_like(pixel_values)
        inputs["xray_available"] = torch.ones(len(images), dtype=torch.bool)
        inputs["ct_available"] = torch.zeros(len(images), dtype=torch.bool)
    return inputs


def predict_probabilities(
    model: PreTrainedModel,
    processor: ChestImageProcessor | None,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """(N, K) class probabilities of a classifier for X-rays (inputs as :func:`model_inputs`)."""
    model.eval()
    probabilities = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            inputs = model_inputs(
                model, processor, images[batch], None if masks is None else masks[batch]
            )
            probabilities.append(model(**inputs).logits.float().softmax(dim=-1).numpy())
    return np.concatenate(probabilities)


def scores_with_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    n_resamples: int,
    seed: int,
    names: Sequence[str] = SCORED_METRICS,
    groups: Sequence | None = None,
) -> dict:
    """``{"metrics": ..., "confidence_intervals": ...}`` for the defined metrics of ``names``.

    Intervals are 95% percentile bootstraps (``n_resamples``, seeded) over patients where
    ``groups`` names them, else over the rows.
    """
    metrics = classification_metrics(labels, probabilities, class_names)
    kept = [name for name in names if metrics.get(name) is not None]
    intervals = bootstrap_confidence_intervals(
        labels, probabilities, class_names, kept, n_resamples, 0.95, seed, groups=groups
    )
    return {
        "metrics": {name: metrics[name] for name in kept} | {"n_samples": metrics["n_samples"]},
        "confidence_intervals": {k: list(v) if v else None for k, v in intervals.items()},
    }
