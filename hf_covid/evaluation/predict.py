"""Run a model over a preprocessed split and summarise its predictions (metrics and intervals)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .metrics import (
    HEADLINE_METRICS,
    bootstrap_confidence_intervals,
    bootstrap_mean_interval,
    classification_metrics,
    segmentation_metrics,
    undefined_metrics,
)

__all__ = [
    "GROUP_METRICS",
    "MODALITY_VARIANTS",
    "SEGMENTATION_METRICS",
    "class_names_of",
    "evaluate_model",
    "group_metrics",
    "metrics_per_column",
    "patient_groups",
    "predict",
    "summarize_predictions",
]

SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou")
"""Per-image metrics of the lung U-Net (mean over images, with a bootstrap interval)."""

GROUP_METRICS: tuple[str, ...] = (
    "n_samples",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "covid_sensitivity",
    "covid_ppv",
    "roc_auc",
)
"""Metrics reported per source and per input combination."""

MODALITY_VARIANTS: dict[str, tuple[str, ...]] = {
    "xray+ct": (),
    "xray": ("ct_available",),
    "ct": ("xray_available",),
}
"""Dual-input evaluations: name -> availability flags switched off (that input is ignored)."""


def predict(
    model: nn.Module,
    dataset,
    collator,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    switch_off: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Run a classifier, or the lung U-Net, over a dataset under ``torch.inference_mode``.

    Args:
        model: a classifier (logits out) or a segmentation model with ``predict_mask``.
        dataset: preprocessed examples (``preprocess_for_training`` output, torch format).
        collator: turns a list of examples into model inputs plus ``labels`` (for segmentation,
            ``labels`` is the true mask), e.g. a ``hf_covid.data.ChestBatchCollator`` with the family's ``input_names``.
        batch_size: images per forward pass.
        device: where to run (default: CUDA when available, else CPU).
        switch_off: availability flags (``"xray_available"``, ``"ct_available"``) set to False,
            so the dual-input model ignores that input.
        progress: show a tqdm bar.

    Returns:
        Classification: ``labels`` (n,), ``probabilities`` (n, K) and, when the model reports
        them, ``modalities_used`` (n, 2). Segmentation: per-image ``dice`` and ``iou`` (n,).
    """

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    segmentation = hasattr(model, "predict_mask")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    collected: dict[str, list[np.ndarray]] = {}
    model.eval().to(device)
    with torch.inference_mode():
        for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
            labels = batch.pop("labels")
            inputs = {
                k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
            }
            for flag in switch_off:
                if flag not in inputs:
                    raise ValueError(f"the batch has no '{flag}' input to switch off")
                inputs[flag] = torch.zeros_like(inputs[flag], dtype=torch.bool)
            if segmentation:
                predicted = model.predict_mask(inputs["pixel_values"]).cpu().numpy()
                scores = segmentation_metrics(predicted, labels.numpy(), per_image=True)
                for name in SEGMENTATION_METRICS:
                    collected.setdefault(name, []).append(scores[name])
                continue
            outputs = model(**inputs)
            logits = outputs.logits if hasattr(outputs, "logits") else outputs[0]
            collected.setdefault("probabilities", []).append(
                logits.float().softmax(dim=-1).cpu().numpy()
            )
            collected.setdefault("labels", []).append(labels.numpy().astype(np.int64))
            used = getattr(outputs, "modalities_used", None)
            if used is not None:
                collected.setdefault("modalities_used", []).append(used.cpu().numpy())
    if not collected:
        raise ValueError("the dataset is empty: nothing to evaluate")
    return {name: np.concatenate(values) for name, values in collected.items()}


def summarize_predictions(
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence | None = None,
) -> dict:
    """Metrics and bootstrap intervals of :func:`predict`'s output, JSON-friendly.

    ``groups`` (each sample's patient, None where unknown) makes the bootstrap resample
    patients instead of images.

    Returns:
        ``{"metrics": {...}, "confidence_intervals": {metric: [low, high] or None}}``:
        classification metrics of :func:`classification_metrics` with intervals for
        :data:`HEADLINE_METRICS` and, where the classes include COVID, balanced accuracy, COVID
        specificity and ROC-AUC of COVID vs the rest; or mean ``dice`` / ``iou`` (plus ``*_std``, ``n_samples``).
    """
    if "probabilities" in predictions:
        if class_names is None:
            raise ValueError("class_names are needed to summarise classification predictions")
        labels, probabilities = predictions["labels"], predictions["probabilities"]
        # With the positive class, also the numbers an external validation reports, so that a
        # model card sets internal and external results side by side, each with its interval.
        compared = (
            ("balanced_accuracy", "specificity_COVID", "roc_auc_COVID")
            if "COVID" in class_names
            else ()
        )
        intervals = bootstrap_confidence_intervals(
            labels,
            probabilities,
            class_names,
            (*HEADLINE_METRICS, *compared),
            n_resamples,
            confidence,
            seed,
            groups=groups,
        )
        return {
            "metrics": classification_metrics(labels, probabilities, class_names),
            "confidence_intervals": {k: list(v) if v else None for k, v in intervals.items()},
        }
    metrics: dict = {"n_samples": int(len(predictions["dice"]))}
    intervals = {}
    for name in SEGMENTATION_METRICS:
        values = predictions[name]
        metrics[name] = float(values.mean())
        metrics[f"{name}_std"] = float(values.std())
        intervals[name] = list(
            bootstrap_mean_interval(values, n_resamples, confidence, seed, groups)
        )
    return {"metrics": metrics, "confidence_intervals": intervals}


def evaluate_model(
    model: nn.Module,
    dataset,
    collator,
    *,
    class_names: Sequence[str] | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Predict over ``dataset`` and summarise (see :func:`predict`, :func:`summarize_predictions`).

    ``class_names`` default to ``model.config.id2label`` in id order.
    """
    predictions = predict(
        model, dataset, collator, batch_size=batch_size, device=device, progress=progress
    )
    if class_names is None and "probabilities" in predictions:
        class_names = class_names_of(model.config)
    return summarize_predictions(
        predictions, class_names, n_resamples=n_resamples, confidence=confidence, seed=seed
    )


def class_names_of(config) -> list[str]:
    """The class names of a classifier's config, in id order."""
    return [config.id2label[index] for index in sorted(config.id2label)]


def patient_groups(split: Any) -> list[tuple[str, str] | None] | None:
    """Each row's patient, ``(source, patient_id)`` (ids repeat across collections), None
    where a row has none; None when the split has no ``patient_id`` column or no id at all."""
    if "patient_id" not in split.column_names:
        return None
    table = split.select_columns(
        [name for name in ("patient_id", "source") if name in split.column_names]
    ).to_dict()
    sources = table.get("source") or [""] * len(table["patient_id"])
    groups = [
        (source or "", patient) if patient else None
        for source, patient in zip(sources, table["patient_id"], strict=True)
    ]
    return groups if any(groups) else None


def group_metrics(predictions: Mapping[str, np.ndarray], class_names: Sequence[str] | None) -> dict:
    """The short metric set (:data:`GROUP_METRICS`) of one subgroup (a source, an input set).

    A metric the subgroup's classes leave undefined (:func:`undefined_metrics`: e.g. COVID
    sensitivity of a source without COVID images, a macro average over absent classes) is None.
    """
    if "probabilities" not in predictions:
        return {"n_samples": int(len(predictions["dice"]))} | {
            name: float(predictions[name].mean()) for name in SEGMENTATION_METRICS
        }
    labels, probabilities = predictions["labels"], predictions["probabilities"]
    full = classification_metrics(labels, probabilities, class_names)
    undefined = undefined_metrics(labels, probabilities, class_names)
    return {
        name: None if name in undefined else full[name] for name in GROUP_METRICS if name in full
    }


def metrics_per_column(
    split: Any, column: str, predictions: Mapping[str, np.ndarray], class_names
) -> dict[str, dict] | None:
    """The short metric set (:func:`group_metrics`) per value of a split's ``column``
    (``source``, ``age_group``), ``"(unknown)"`` for rows without one; None when the split has no
    such column, no value in it, or not one row per prediction."""
    if column not in split.column_names or len(split) != len(next(iter(predictions.values()))):
        return None
    values = np.array([str(value or "(unknown)") for value in split[column]])
    if set(values) == {"(unknown)"}:
        return None
    return {
        value: group_metrics(
            {name: scores[values == value] for name, scores in predictions.items()}, class_names
        )
        for value in sorted(set(values))
    }
