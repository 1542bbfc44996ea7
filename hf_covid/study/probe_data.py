"""What the study's probes share: its folders, its images at one size, lung masks, predictions.

The confound probes (:mod:`hf_covid.study.confounds`) and the explanation scores
(:mod:`hf_covid.study.explanations`) read the study folder (``<study_dir>/models/<family key>``
checkpoints, ``<study_dir>/data/<layout>`` compositions saved by :mod:`hf_covid.study.run`) through
the helpers here. Research software, not a diagnostic device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict, load_from_disk
from transformers import PreTrainedModel

from hf_covid.checkpoints import is_complete_checkpoint_folder, load_checkpoint
from hf_covid.data import preprocess_for_training
from hf_covid.evaluation.inputs import build_dataset, model_image_size, run_build_options
from hf_covid.evaluation.metrics import bootstrap_confidence_intervals, classification_metrics
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.labels import BINARY_LABELS
from hf_covid.registry import get_model_family, list_models

__all__ = [
    "COMPOSITIONS_DIR",
    "FIGURES_DIR",
    "LUNG_UNET",
    "MODELS_DIR",
    "POSITIVE_CLASS",
    "SCORED_METRICS",
    "Compositions",
    "LungMasker",
    "StudyImages",
    "load_study_images",
    "model_inputs",
    "one_torch_thread",
    "predict_probabilities",
    "scores_with_intervals",
    "study_checkpoints",
]

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
"""Sub-folder of the study folder holding one checkpoint folder per model family key."""
COMPOSITIONS_DIR = "data"
"""Sub-folder of the study folder holding the compositions the models were trained and tested
on, one per dataset kind (``radiography``, ``xray_ct``), saved with ``save_to_disk``."""
FIGURES_DIR = "figures"
"""Sub-folder of the study folder where the figures go."""
LUNG_UNET = "lung_unet"
"""Family key of the lung U-Net whose masks blank the lungs."""
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


def study_checkpoints(study_dir: str | Path) -> dict[str, Path]:
    """Family key -> checkpoint folder, for every complete one under ``<study_dir>/models``."""
    folder = Path(study_dir) / MODELS_DIR
    return {
        key: folder / key for key in list_models() if is_complete_checkpoint_folder(folder / key)
    }


class Compositions:
    """The compositions the study's checkpoints were trained on, read once per dataset kind.

    The study saves each composition under ``<study_dir>/data/<dataset kind>``; those are read
    as they are, so ``test`` is exactly the training run's test split. (The dual-channel model
    trains on ``data/radiography_unet_masks``: the same rows and splits with the U-Net's masks in
    ``mask``; the probes read ``data/radiography``, whose ``mask`` holds the human masks, and
    draw U-Net masks themselves.) Where no saved composition exists, the collections are
    composed again with the options of the checkpoint's run record
    (:func:`~hf_covid.evaluation.inputs.run_build_options`), and :attr:`recomposed` says so:
    a recomposed split can differ from the training split when the split code has changed.

    Args:
        collections_root: The public collections side by side.
        study_dir: The study folder whose ``data/`` is read; None to always compose.
    """

    def __init__(self, collections_root: str | Path, study_dir: str | Path | None = None) -> None:
        self.root = Path(collections_root)
        self.saved_dir = None if study_dir is None else Path(study_dir) / COMPOSITIONS_DIR
        self.recomposed: list[str] = []
        """Dataset kinds composed again (no saved composition), in the order first asked for."""
        self._built: dict[tuple, DatasetDict] = {}

    def for_checkpoint(self, checkpoint_dir: Path | None, dataset_kind: str) -> DatasetDict:
        """The composition in the ``dataset_kind`` layout that ``checkpoint_dir`` trained on:
        the saved one, else composed with its run record's options (the builders' defaults when
        ``checkpoint_dir`` is None or has no run record)."""
        saved = None if self.saved_dir is None else self.saved_dir / dataset_kind
        if saved is not None and saved.is_dir():
            key: tuple = (dataset_kind, "saved")
            if key not in self._built:
                self._built[key] = load_from_disk(str(saved))
            return self._built[key]
        options = run_build_options(checkpoint_dir, dataset_kind)
        key = (dataset_kind, tuple(sorted((k, str(v)) for k, v in options.items())))
        if key not in self._built:
            logger.warning("no saved %s composition under %s: composing", dataset_kind, saved)
            self._built[key] = build_dataset(self.root, dataset_kind, options)
            if dataset_kind not in self.recomposed:
                self.recomposed.append(dataset_kind)
        return self._built[key]

    def note(self) -> str | None:
        """A sentence for the result's notes when a composition was composed again, else None."""
        if not self.recomposed:
            return None
        return (
            f"No saved composition under {COMPOSITIONS_DIR}/ for {', '.join(self.recomposed)}: "
            "the collections were composed again with the checkpoints' recorded split options, "
            "which matches the training split only while the split code is unchanged."
        )


@dataclass
class StudyImages:
    """X-rays of one split at one size, with their labels, masks and provenance.

    Attributes:
        images: (N, 1, S, S) float in [0, 1].
        human_masks: (N, 1, S, S) 0/1 human lung masks (zeros where there is none).
        has_human_mask: (N,) whether an image has a human mask.
        labels: (N,) class ids into ``class_names``.
        class_names: The split's classes.
        sources: (N,) collection of each image.
        patient_ids: (N,) patient within the collection ("" when unknown).
        image_ids: (N,) path within the collection.
    """

    images: torch.Tensor
    human_masks: torch.Tensor
    has_human_mask: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sources: np.ndarray
    patient_ids: np.ndarray
    image_ids: np.ndarray

    def select(self, rows: np.ndarray) -> StudyImages:
        """The images at ``rows`` (indices or a boolean mask)."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        index = torch.as_tensor(rows, dtype=torch.long)
        return StudyImages(
            self.images[index],
            self.human_masks[index],
            self.has_human_mask[rows],
            self.labels[rows],
            self.class_names,
            self.sources[rows],
            self.patient_ids[rows],
            self.image_ids[rows],
        )


def load_study_images(split: Dataset, image_size: int) -> StudyImages:
    """Decode and resize a Radiography-layout split (``image``, ``mask``, ``label``) once."""
    prepared = preprocess_for_training(
        DatasetDict({"study": split}), image_size=image_size, mask_column="mask"
    )["study"]
    rows = prepared[:]
    count = len(split)

    def column(name: str) -> np.ndarray:
        values = rows.get(name)
        return np.array(["" if v is None else str(v) for v in values] if values else [""] * count)

    return StudyImages(
        images=torch.stack(rows["pixel_values"]).float() / 255.0,
        human_masks=torch.stack(rows["lung_mask"]).float(),
        has_human_mask=np.array(rows["mask_available"], dtype=bool),
        labels=np.array(rows["labels"], dtype=np.int64),
        class_names=tuple(split.features["label"].names),
        sources=column("source"),
        patient_ids=column("patient_id"),
        image_ids=column("image_id"),
    )


class LungMasker:
    """Lung masks from a trained lung U-Net checkpoint, for X-rays of any size.

    Args:
        checkpoint_dir: The U-Net's checkpoint folder.
        batch_size: Images per forward pass.
    """

    def __init__(self, checkpoint_dir: str | Path, batch_size: int = 32) -> None:
        self.model, processor = load_checkpoint(checkpoint_dir)
        self.model.eval()
        side = model_image_size(self.model.config, processor)
        self.processor = processor or ChestImageProcessor(num_channels=1)
        self.size = (side, side)
        self.batch_size = batch_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) 0/1 masks of (N, 1, H, W) X-rays in [0, 1]."""
        masks = []
        with torch.inference_mode():
            for batch in images.split(self.batch_size):
                resized = F.interpolate(batch, size=self.size, mode="bilinear", align_corners=False)
                predicted = self.model.predict_mask(self.processor.to_model_input(resized))
                masks.append(F.interpolate(predicted, size=images.shape[-2:], mode="nearest"))
        return torch.cat(masks).float()


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
) -> dict:
    """``{"metrics": ..., "confidence_intervals": ...}`` for the defined metrics of ``names``.

    Intervals are 95% percentile bootstraps over the rows (``n_resamples``, seeded).
    """
    metrics = classification_metrics(labels, probabilities, class_names)
    kept = [name for name in names if metrics.get(name) is not None]
    intervals = bootstrap_confidence_intervals(
        labels, probabilities, class_names, kept, n_resamples, 0.95, seed
    )
    return {
        "metrics": {name: metrics[name] for name in kept} | {"n_samples": metrics["n_samples"]},
        "confidence_intervals": {k: list(v) if v else None for k, v in intervals.items()},
    }
