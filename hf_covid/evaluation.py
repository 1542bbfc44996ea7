"""Classification metrics with bootstrap confidence intervals, and checkpoint evaluation.

Every metric is computed from per-sample weights, so one code path serves both the point estimate
(all weights 1) and the bootstrap (weights = how often each sample was drawn into a resample).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    PreTrainedModel,
)

from .models.labels import RADIOGRAPHY_LABELS

ECE_BINS = 15
"""Number of equal-width confidence bins of the expected calibration error."""

HEADLINE_METRICS: tuple[str, ...] = ("accuracy", "f1_macro", "covid_sensitivity", "roc_auc")
"""Metrics that reports give with a bootstrap confidence interval."""

_PER_CLASS = ("precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")


def _check_inputs(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = len(class_names)
    if num_classes < 2:
        raise ValueError(f"class_names needs at least 2 classes, got {list(class_names)}")
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if probabilities.shape != (labels.size, num_classes):
        raise ValueError(
            f"probabilities must have shape (n_samples, n_classes) = ({labels.size}, "
            f"{num_classes}), got {probabilities.shape}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] for classes {list(class_names)}, "
            f"got values {sorted(set(labels.tolist()))}"
        )
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities contain NaN or infinity")
    return labels.astype(np.int64), probabilities


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _ranking_curves(
    scores: np.ndarray, positive: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives per distinct score, highest score first.

    Returns two arrays of shape (B, n_distinct_scores); tied scores share one threshold.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    sorted_weights = weights[:, order]
    is_positive = positive[order]
    positives = np.add.reduceat(sorted_weights * is_positive, starts, axis=1)
    negatives = np.add.reduceat(sorted_weights * ~is_positive, starts, axis=1)
    return positives, negatives


def _weighted_roc_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC per weight row (Mann-Whitney, ties count one half); NaN where undefined."""
    positives, negatives = _ranking_curves(scores, positive, weights)
    negatives_below = negatives.sum(axis=1, keepdims=True) - np.cumsum(negatives, axis=1)
    pairs_won = (positives * (negatives_below + 0.5 * negatives)).sum(axis=1)
    total = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, pairs_won / total, np.nan)


def _weighted_average_precision(
    scores: np.ndarray, positive: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Average precision (area under the precision-recall curve, scikit-learn's step definition)."""
    positives, negatives = _ranking_curves(scores, positive, weights)
    true_positives = np.cumsum(positives, axis=1)
    predicted = true_positives + np.cumsum(negatives, axis=1)
    precision = _ratio(true_positives, predicted)
    total_positives = true_positives[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall_step = positives / total_positives
        return np.where(total_positives[:, 0] > 0, (recall_step * precision).sum(axis=1), np.nan)


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve ``(false positive rate, true positive rate)`` from (0, 0), one point per
    distinct score (one-vs-rest: ``positive`` marks the class's samples)."""
    positives, negatives = _ranking_curves(
        np.asarray(scores, dtype=np.float64),
        np.asarray(positive, dtype=bool),
        np.ones((1, len(scores))),
    )
    true_positive_rate = np.r_[0.0, np.cumsum(positives[0]) / max(positives.sum(), 1e-12)]
    false_positive_rate = np.r_[0.0, np.cumsum(negatives[0]) / max(negatives.sum(), 1e-12)]
    return false_positive_rate, true_positive_rate


def precision_recall_points(
    scores: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall curve ``(recall, precision)``, highest threshold first, starting at
    recall 0 and precision 1 as scikit-learn's; its step area is the average precision."""
    positives, negatives = _ranking_curves(
        np.asarray(scores, dtype=np.float64),
        np.asarray(positive, dtype=bool),
        np.ones((1, len(scores))),
    )
    true_positives = np.cumsum(positives[0])
    precision = _ratio(true_positives, true_positives + np.cumsum(negatives[0]))
    recall = true_positives / max(true_positives[-1], 1e-12)
    return np.r_[0.0, recall], np.r_[1.0, precision]


def _calibration_bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence in ``n_bins`` equal-width bins ``(lo, hi]`` (0 goes to the first)."""
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def calibration_bins(
    labels: np.ndarray, probabilities: np.ndarray, n_bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Top-label reliability data: per confidence bin, the count, mean confidence and accuracy.

    Args:
        labels: (n,) true class ids.
        probabilities: (n, n_classes) predicted probabilities.
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        ``{"edges": (n_bins+1,), "count": (n_bins,), "confidence": (n_bins,), "accuracy":
        (n_bins,)}``; confidence and accuracy are NaN in empty bins.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    bins = _calibration_bin_index(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, correct, minlength=n_bins) / count
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1),
        "count": count,
        "confidence": mean_confidence,
        "accuracy": accuracy,
    }


def _positive_index(class_names: Sequence[str], positive_class: str) -> int | None:
    """Index of the positive class, or None when it is not one of ``class_names``."""
    return list(class_names).index(positive_class) if positive_class in class_names else None


def _weighted_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    positive_class: str,
    weights: np.ndarray,
) -> dict[str, np.ndarray]:
    """All scalar metrics for each row of ``weights`` (B, n): name -> (B,) float array."""
    num_classes = len(class_names)
    predictions = probabilities.argmax(axis=1)
    pair = np.zeros((labels.size, num_classes * num_classes))
    pair[np.arange(labels.size), labels * num_classes + predictions] = 1.0
    confusion = (weights @ pair).reshape(-1, num_classes, num_classes)  # (B, true, predicted)

    total = confusion.sum(axis=(1, 2))
    true_positives = np.diagonal(confusion, axis1=1, axis2=2)
    support = confusion.sum(axis=2)
    predicted = confusion.sum(axis=1)
    false_positives = predicted - true_positives
    negatives = total[:, None] - support

    per_class = {
        "precision": _ratio(true_positives, predicted),
        "recall": _ratio(true_positives, support),
        "specificity": _ratio(negatives - false_positives, negatives),
    }
    per_class["f1"] = _ratio(2 * true_positives, support + predicted)
    present = support > 0
    results: dict[str, np.ndarray] = {
        "accuracy": true_positives.sum(axis=1) / total,
        "balanced_accuracy": (per_class["recall"] * present).sum(axis=1) / present.sum(axis=1),
    }

    positive_index = _positive_index(class_names, positive_class)
    if num_classes == 2:
        ranked_classes = [1 if positive_index is None else positive_index]
    else:
        ranked_classes = list(range(num_classes))
    roc_auc = np.full((weights.shape[0], num_classes), np.nan)
    pr_auc = np.full((weights.shape[0], num_classes), np.nan)
    for index in range(num_classes):
        positive = labels == index
        roc_auc[:, index] = _weighted_roc_auc(probabilities[:, index], positive, weights)
        pr_auc[:, index] = _weighted_average_precision(probabilities[:, index], positive, weights)
    per_class["roc_auc"] = roc_auc
    per_class["pr_auc"] = pr_auc

    for name in _PER_CLASS:
        for index, class_name in enumerate(class_names):
            results[f"{name}_{class_name}"] = per_class[name][:, index]
    for name in ("precision", "recall", "specificity", "f1"):
        results[f"{name}_macro"] = per_class[name].mean(axis=1)
    # Undefined for any class => undefined macro (NaN propagates through the mean).
    results["roc_auc"] = roc_auc[:, ranked_classes].mean(axis=1)
    results["pr_auc"] = pr_auc[:, ranked_classes].mean(axis=1)
    if positive_index is not None:
        results["covid_sensitivity"] = per_class["recall"][:, positive_index]
        results["covid_ppv"] = per_class["precision"][:, positive_index]

    confidence = probabilities.max(axis=1)
    bins = np.zeros((labels.size, ECE_BINS))
    bins[np.arange(labels.size), _calibration_bin_index(confidence, ECE_BINS)] = 1.0
    bin_weight = weights @ bins
    bin_confidence = (weights * confidence) @ bins
    bin_correct = (weights * (predictions == labels)) @ bins
    results["ece"] = np.abs(bin_correct - bin_confidence).sum(axis=1) / bin_weight.sum(axis=1)
    results["_confusion"] = confusion
    return results


def _to_json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def segmentation_metrics(
    predictions: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    per_image: bool = False,
) -> dict[str, float] | dict[str, np.ndarray]:
    """Mean per-image Dice and IoU of binary masks.

    Args:
        predictions: (N, ...) predicted masks, 0/1 (or probabilities, thresholded at 0.5).
        targets: (N, ...) true masks of the same shape, 0/1.
        per_image: return the (N,) per-image scores instead of their means.

    Returns:
        ``{"dice": ..., "iou": ...}``; an image where both masks are empty counts as 1.
    """
    predicted = np.asarray(predictions).reshape(len(predictions), -1) > 0.5
    true = np.asarray(targets).reshape(len(targets), -1) > 0.5
    if predicted.shape != true.shape:
        raise ValueError(
            f"predictions {predicted.shape} and targets {true.shape} must have the same shape"
        )
    intersection = (predicted & true).sum(axis=1)
    total = predicted.sum(axis=1) + true.sum(axis=1)
    union = total - intersection
    dice = np.where(total > 0, 2 * intersection / np.maximum(total, 1), 1.0)
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    if per_image:
        return {"dice": dice.astype(np.float64), "iou": iou.astype(np.float64)}
    return {"dice": float(dice.mean()), "iou": float(iou.mean())}


def classification_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    positive_class: str = "COVID",
) -> dict:
    """Classification metrics as a flat, JSON-friendly dict.

    Keys (``<class>`` is the class name verbatim, e.g. ``f1_Viral Pneumonia``):

    - ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in ``labels``).
    - ``precision_<class>``, ``recall_<class>`` (sensitivity), ``specificity_<class>``,
      ``f1_<class>`` and their unweighted means ``precision_macro``, ``recall_macro``,
      ``specificity_macro``, ``f1_macro``. A ratio with a zero denominator is 0
      (scikit-learn's ``zero_division=0``).
    - ``covid_sensitivity``, ``covid_ppv``: recall and precision of ``positive_class``; only
      when it is one of ``class_names``.
    - ``roc_auc_<class>``, ``pr_auc_<class>`` (one-vs-rest; PR-AUC is average precision), and
      ``roc_auc``, ``pr_auc``: for 2 classes those of the positive class (``positive_class``, else
      the second class), otherwise the one-vs-rest macro mean. None where undefined, i.e. when a
      class is absent from ``labels`` (or is every label).
    - ``ece``: expected calibration error, 15 equal-width bins of the top-label confidence.
    - ``confusion_matrix``: nested list of counts, rows = true class, columns = predicted.
    - ``n_samples``.

    Args:
        labels: (n,) integer class ids.
        probabilities: (n, n_classes) class probabilities; the prediction is their argmax.
        class_names: names of the classes, in id order.
        positive_class: class reported as ``covid_*`` and used for binary ROC/PR.

    Returns:
        The metrics dict.

    Example:
        >>> m = classification_metrics([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]],
        ...                            ["Non-COVID", "COVID"])
        >>> m["accuracy"], m["covid_sensitivity"], m["roc_auc"]
        (0.6666666666666666, 0.5, 1.0)
    """
    labels, probabilities = _check_inputs(labels, probabilities, class_names)
    weights = np.ones((1, labels.size))
    raw = _weighted_metrics(labels, probabilities, class_names, positive_class, weights)
    confusion = raw.pop("_confusion")[0]
    metrics: dict = {name: _to_json_number(values[0]) for name, values in raw.items()}
    metrics["confusion_matrix"] = confusion.round().astype(int).tolist()
    metrics["n_samples"] = int(labels.size)
    return metrics


def _bootstrap_weights(
    labels: np.ndarray, n_resamples: int, stratified: bool, rng: np.random.Generator
) -> np.ndarray:
    """(n_resamples, n) how many times each sample is drawn into each resample."""
    n = labels.size
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratified else [None]
    counts = np.zeros((n_resamples, n))
    rows = np.arange(n_resamples)[:, None]
    for members in groups:
        size = n if members is None else members.size
        drawn = rng.integers(0, size, size=(n_resamples, size))
        if members is not None:
            drawn = members[drawn]
        np.add.at(counts, (np.broadcast_to(rows, drawn.shape), drawn), 1.0)
    return counts


def bootstrap_confidence_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    metrics: Sequence[str] = HEADLINE_METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    positive_class: str = "COVID",
    stratified: bool = True,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap confidence intervals for metrics of :func:`classification_metrics`.

    Resamples the test set with replacement (within each true class when ``stratified``, so
    every class keeps its count and ROC-AUC stays defined) and takes the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of each metric. Resamples
    where a metric is undefined are left out; a metric that is never defined (or unknown, e.g.
    ``covid_sensitivity`` without a COVID class) maps to None.

    Args:
        labels: (n,) integer class ids.
        probabilities: (n, n_classes) class probabilities.
        class_names: names of the classes, in id order.
        metrics: scalar keys of :func:`classification_metrics`.
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval, e.g. 0.95.
        seed: seed of the resampling.
        positive_class: as in :func:`classification_metrics`.
        stratified: resample within each true class.

    Returns:
        ``{metric: (low, high)}``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    labels, probabilities = _check_inputs(labels, probabilities, class_names)
    rng = np.random.default_rng(seed)
    weights = _bootstrap_weights(labels, n_resamples, stratified, rng)
    # Chunks keep the (resamples, samples) matrices to a few tens of MB on large test sets.
    chunk = max(1, 2_000_000 // labels.size)
    values: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_resamples, chunk):
        rows = weights[start : start + chunk]
        computed = _weighted_metrics(labels, probabilities, class_names, positive_class, rows)
        for name in metrics:
            if name in computed:
                values.setdefault(name, []).append(computed[name])
    tail = 100.0 * (1.0 - confidence) / 2.0
    intervals: dict[str, tuple[float, float] | None] = {}
    for name in metrics:
        samples = np.concatenate(values[name]) if name in values else np.array([np.nan])
        samples = samples[~np.isnan(samples)]
        if samples.size == 0:
            intervals[name] = None
        else:
            low, high = np.percentile(samples, [tail, 100.0 - tail])
            intervals[name] = (float(low), float(high))
    return intervals


def bootstrap_mean_interval(
    values: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image values (e.g. Dice)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n_resamples, values.size))].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# Predictions and their summary
# --------------------------------------------------------------------------------------------

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
            ``labels`` is the true mask), e.g. ``hf_covid.training.ModelInputCollator``.
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
) -> dict:
    """Metrics and bootstrap intervals of :func:`predict`'s output, JSON-friendly.

    Returns:
        ``{"metrics": {...}, "confidence_intervals": {metric: [low, high] or None}}``:
        classification metrics of :func:`classification_metrics` with intervals for
        :data:`HEADLINE_METRICS`, or mean ``dice`` / ``iou`` (plus ``*_std``, ``n_samples``).
    """
    if "probabilities" in predictions:
        if class_names is None:
            raise ValueError("class_names are needed to summarise classification predictions")
        labels, probabilities = predictions["labels"], predictions["probabilities"]
        intervals = bootstrap_confidence_intervals(
            labels, probabilities, class_names, HEADLINE_METRICS, n_resamples, confidence, seed
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
        intervals[name] = list(bootstrap_mean_interval(values, n_resamples, confidence, seed))
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
        class_names = _class_names(model.config)
    return summarize_predictions(
        predictions, class_names, n_resamples=n_resamples, confidence=confidence, seed=seed
    )


def _class_names(config) -> list[str]:
    return [config.id2label[index] for index in sorted(config.id2label)]


def _group_metrics(
    predictions: Mapping[str, np.ndarray], class_names: Sequence[str] | None
) -> dict:
    """The short metric set of one subgroup (a source, an input combination)."""
    if "probabilities" not in predictions:
        return {"n_samples": int(len(predictions["dice"]))} | {
            name: float(predictions[name].mean()) for name in SEGMENTATION_METRICS
        }
    full = classification_metrics(predictions["labels"], predictions["probabilities"], class_names)
    return {name: full[name] for name in GROUP_METRICS if name in full}


# --------------------------------------------------------------------------------------------
# Checkpoints and data
# --------------------------------------------------------------------------------------------

SEGMENTATION_MODEL_TYPES: tuple[str, ...] = ("covid_lung_unet",)
"""``config.model_type`` values loaded as segmentation models (Dice and IoU, not accuracy)."""

WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json")
"""Weight files a checkpoint folder may hold (safetensors only: nothing is unpickled)."""


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A local checkpoint folder: ``checkpoint`` itself, or a Hub repository downloaded.

    Raises:
        FileNotFoundError: the folder lacks ``config.json`` or safetensors weights, or the path
            is neither a folder nor a Hub repository id.
    """
    path = Path(checkpoint).expanduser()
    if not path.exists():
        if str(checkpoint).count("/") != 1 or str(checkpoint).startswith((".", "/", "~")):
            raise FileNotFoundError(f"checkpoint '{checkpoint}' is neither a folder nor a Hub id")
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(str(checkpoint)))
        except Exception as error:  # offline, unknown repository, no access
            raise FileNotFoundError(
                f"could not download checkpoint '{checkpoint}' from the Hub: {error}"
            ) from error
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint '{path}' is not a folder")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json (the model configuration)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"{' or '.join(WEIGHT_FILES)} (the weights)")
    if missing:
        raise FileNotFoundError(f"checkpoint folder '{path}' lacks {' and '.join(missing)}")
    return path


def default_output_dir(
    checkpoint: str | Path, folder: str, output_dir: str | Path | None = None
) -> Path:
    """``output_dir`` if given, else ``<checkpoint>/<folder>`` for a local checkpoint, else
    ``./<folder>_<repository name>`` (never inside the Hub cache)."""
    if output_dir is not None:
        return Path(output_dir)
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        return local / folder
    return Path.cwd() / f"{folder}_{str(checkpoint).rsplit('/', 1)[-1]}"


def load_checkpoint(checkpoint: str | Path) -> tuple[PreTrainedModel, object | None]:
    """The model (Auto classes; ``hf_covid`` models are registered) and its image processor.

    Returns:
        ``(model, processor)``; the processor is None when the folder has no
        ``preprocessor_config.json``.
    """
    import hf_covid.models  # noqa: F401  (registers the hf_covid model types)

    path = resolve_checkpoint(checkpoint)
    config = AutoConfig.from_pretrained(path)
    auto_class = (
        AutoModelForSemanticSegmentation
        if config.model_type in SEGMENTATION_MODEL_TYPES
        else AutoModelForImageClassification
    )
    model = auto_class.from_pretrained(path, use_safetensors=True)
    processor = None
    processor_file = path / "preprocessor_config.json"
    if processor_file.is_file():
        from .models.image_processing_chest import ChestImageProcessor

        # Our own processor class is used directly: no remote code is run for it.
        kind = json.loads(processor_file.read_text()).get("image_processor_type")
        loader = ChestImageProcessor if kind == ChestImageProcessor.__name__ else AutoImageProcessor
        processor = loader.from_pretrained(path)
    return model, processor


def _spec_name(model_type: str) -> str:
    """The ``hf_covid.training.MODEL_SPECS`` key of a ``config.model_type``."""
    from .training import MODEL_SPECS

    name = model_type.removeprefix("covid_")
    if name not in MODEL_SPECS:
        raise ValueError(
            f"no evaluation recipe for model type '{model_type}'; expected one of "
            f"{sorted(MODEL_SPECS)}"
        )
    return name


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _select_split(data, split: str, where: str):
    from datasets import DatasetDict

    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"{where} has no split '{split}'; available: {sorted(data)}")
        return data[split]
    return data


def load_evaluation_split(
    spec_name: str,
    class_names: Sequence[str],
    split: str,
    *,
    data_dir: str | Path | None = None,
    dataset=None,
    build_options: Mapping | None = None,
):
    """The raw split (image columns + ``label``) a model is evaluated on.

    ``dataset`` (a ``DatasetDict``, a ``Dataset``, or the folder of one saved with
    ``save_to_disk``) is used as is; otherwise ``data_dir`` is a saved dataset or a dataset root,
    built with ``build_xray_ct_dataset`` (dual-input model) or ``build_radiography_dataset``
    with ``build_options`` (e.g. the split seed and ratios used in training).

    Raises:
        ValueError: no data given, no such split, no labels, or classes that differ from the
            model's.
    """
    from datasets import Image, load_from_disk

    from .training import MODEL_SPECS

    spec = MODEL_SPECS[spec_name]
    if dataset is None and data_dir is None:
        raise ValueError("pass data_dir (a dataset folder) or dataset (a built dataset)")
    source = dataset if dataset is not None else Path(data_dir)
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data folder '{path}' does not exist")
        if _is_saved_dataset(path):
            source = load_from_disk(str(path))
        else:
            from .data import build_radiography_dataset, build_xray_ct_dataset

            options = dict(build_options or {})
            if spec.dataset == "xray_ct":
                source = build_xray_ct_dataset(path, **options)
            else:
                if class_names and set(class_names) < set(RADIOGRAPHY_LABELS):
                    options.setdefault("classes", list(class_names))
                source = build_radiography_dataset(path, **options)
    where = f"data '{data_dir}'" if dataset is None else "the dataset"
    data = _select_split(source, split, where)
    if "label" not in data.column_names:
        raise ValueError(
            f"split '{split}' of {where} has no 'label' column (columns: {data.column_names}); "
            "evaluation needs labelled data"
        )
    image_column = "xray" if spec.dataset == "xray_ct" else "image"
    if image_column not in data.column_names:
        raise ValueError(
            f"split '{split}' of {where} has no '{image_column}' column (columns: "
            f"{data.column_names}); the {spec_name} model needs the "
            f"{'X-ray + CT' if spec.dataset == 'xray_ct' else 'Radiography'} dataset"
        )
    if spec.task == "segmentation":
        if "mask" not in data.column_names:
            raise ValueError(f"split '{split}' of {where} has no 'mask' column for the lung U-Net")
        masks = data.select_columns(["mask"]).cast_column("mask", Image(decode=False))["mask"]
        data = data.select([index for index, mask in enumerate(masks) if mask is not None])
        if len(data) == 0:
            raise ValueError(f"split '{split}' of {where} has no lung masks to evaluate Dice on")
        return data
    feature = data.features["label"]
    data_classes = list(getattr(feature, "names", None) or [])
    if not data_classes:
        raise ValueError(f"split '{split}' of {where}: 'label' is not a ClassLabel with names")
    if data_classes != list(class_names):
        raise ValueError(
            f"label mismatch: the model predicts {list(class_names)} but split '{split}' of "
            f"{where} has the classes {data_classes}"
        )
    if len(data) == 0:
        raise ValueError(f"split '{split}' of {where} is empty")
    if min(data["label"]) < 0:
        raise ValueError(f"split '{split}' of {where} has unlabelled examples (label -1)")
    return data


def _build_options(checkpoint_dir: Path, spec_name: str) -> dict:
    """Dataset-builder options that reproduce the training split (from training_config.json)."""
    from .training import MODEL_SPECS

    path = checkpoint_dir / "training_config.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text()).get("data", {})
    options = {
        "split_ratios": data.get("split_ratios"),
        "seed": data.get("split_seed"),
        "deduplicate": data.get("deduplicate"),
    }
    if MODEL_SPECS[spec_name].dataset == "xray_ct":
        options |= {
            "pairing": data.get("pairing"),
            "keep_unpaired": data.get("keep_unpaired"),
            "metadata_file": data.get("metadata_file"),
        }
    else:
        options |= {"group_by": data.get("group_by"), "classes": data.get("classes")}
    return {key: value for key, value in options.items() if value is not None}


def _input_settings(config, processor) -> dict:
    """Image size and collator normalisation from the saved processor (or the config)."""
    if processor is None:
        return {
            "image_size": int(getattr(config, "image_size", 224)),
            "num_channels": int(config.num_channels),
            "mean": None,
            "std": None,
        }
    size = processor.size
    height = size["height"] if isinstance(size, Mapping) else size.height
    normalize = bool(getattr(processor, "do_normalize", False))
    return {
        "image_size": int(height),
        "num_channels": int(getattr(processor, "num_channels", config.num_channels)),
        "mean": list(processor.image_mean) if normalize else None,
        "std": list(processor.image_std) if normalize else None,
    }


def prepare_inputs(model: PreTrainedModel, processor, raw) -> tuple[object, object, dict]:
    """Preprocess a raw split for ``model`` and build its collator (no augmentation).

    Args:
        model: a loaded hf_covid model or ResNet (its ``config.model_type`` picks the columns).
        processor: its ``ChestImageProcessor`` (image size, channels, normalisation), or None.
        raw: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.

    Returns:
        ``(prepared dataset, collator, settings)``; the collator yields the model's inputs plus
        ``labels``, settings holds ``image_size``, ``num_channels``, ``mean`` and ``std``.
    """
    from datasets import DatasetDict

    from .data import ChestBatchCollator, preprocess_for_training
    from .training import MODEL_SPECS, ModelInputCollator

    spec = MODEL_SPECS[_spec_name(model.config.model_type)]
    settings = _input_settings(model.config, processor)
    if spec.dataset == "xray_ct":
        columns = {"image_column": "xray", "mask_column": None, "ct_column": "ct"}
    else:
        columns = {"image_column": "image", "mask_column": "mask" if spec.uses_mask else None}
    prepared = preprocess_for_training(
        DatasetDict({"evaluation": raw}), image_size=settings["image_size"], **columns
    )["evaluation"]
    collator = ModelInputCollator(
        ChestBatchCollator(
            num_channels=settings["num_channels"], mean=settings["mean"], std=settings["std"]
        ),
        spec.input_names,
        spec.label_key,
    )
    return prepared, collator, settings


def _subset(predictions: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[keep] for name, values in predictions.items()}


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    dataset=None,
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 32,
    *,
    device: str | torch.device | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    build_options: Mapping | None = None,
    figures: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate a checkpoint folder (or Hub id) on a data split and write a report.

    The model is loaded with the Auto classes; its ``config.model_type`` picks the dataset
    builder and columns (``covid_dual_input``: X-ray + CT data; the others: Radiography data,
    with lung masks for the dual-channel CNN and the U-Net), and the saved
    ``preprocessor_config.json`` the image size, channels and normalisation. Unless given in
    ``build_options``, the split ratios, seed and pairing come from the checkpoint's
    ``training_config.json``, so ``split="test"`` is the training run's test split.

    Writes to ``output_dir`` (default: ``<checkpoint>/evaluation_<split>`` for a folder, see
    :func:`default_output_dir`): ``eval_results.json``, ``report.md`` and ``figures/*.png``
    (confusion matrix in counts and row-normalised, ROC and precision-recall curves, reliability
    diagram, training curves when the checkpoint has ``trainer_state.json``).

    Args:
        checkpoint: checkpoint folder or Hub repository id.
        data_dir: dataset root, or a dataset saved with ``save_to_disk``.
        dataset: a built ``DatasetDict`` / ``Dataset`` instead of ``data_dir``.
        split: the split to evaluate.
        output_dir: where the results go.
        batch_size: images per forward pass.
        device: where to run (default: CUDA when available).
        n_resamples: bootstrap resamples of the confidence intervals.
        confidence: coverage of the intervals.
        seed: bootstrap seed.
        build_options: keyword arguments of the dataset builder.
        figures: draw the figures.
        progress: show progress bars.

    Returns:
        The contents of ``eval_results.json``: ``metrics``, ``confidence_intervals``,
        ``per_source`` (when the data names sources), ``modalities`` and ``pairing`` (dual-input
        model), ``figures``, and what was evaluated.
    """
    from .training import LABEL_PAIRING_NOTE, MODEL_SPECS

    path = resolve_checkpoint(checkpoint)
    model, processor = load_checkpoint(path)
    spec_name = _spec_name(model.config.model_type)
    spec = MODEL_SPECS[spec_name]
    segmentation = spec.task == "segmentation"
    class_names = None if segmentation else _class_names(model.config)
    raw = load_evaluation_split(
        spec_name,
        class_names or [],
        split,
        data_dir=data_dir,
        dataset=dataset,
        build_options=_build_options(path, spec_name) | dict(build_options or {}),
    )
    prepared, collator, settings = prepare_inputs(model, processor, raw)
    run = {"batch_size": batch_size, "device": device, "progress": progress}
    summary = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    predictions = predict(model, prepared, collator, **run)

    output_dir = default_output_dir(checkpoint, f"evaluation_{split}", output_dir)
    results: dict = {
        "checkpoint": str(checkpoint),
        "model_type": model.config.model_type,
        "task": "image-segmentation" if segmentation else "image-classification",
        "split": split,
        "data": str(data_dir) if data_dir is not None else "dataset object",
        "image_size": settings["image_size"],
        "class_names": class_names,
        **summarize_predictions(predictions, class_names, **summary),
        "confidence": confidence,
        "n_resamples": n_resamples,
    }

    if "source" in raw.column_names and len(raw) == len(next(iter(predictions.values()))):
        sources = np.array([str(source or "(unknown)") for source in raw["source"]])
        if set(sources) != {"(unknown)"}:
            results["per_source"] = {
                source: _group_metrics(_subset(predictions, sources == source), class_names)
                for source in sorted(set(sources))
            }

    if spec.dataset == "xray_ct":
        pairings = sorted({pairing for pairing in raw["pairing"] if pairing})
        results["pairing"] = ", ".join(pairings) or "unknown"
        if "label" in pairings:
            results["pairing_note"] = LABEL_PAIRING_NOTE
        available = {
            name: np.array([bool(flag) for flag in prepared[name]])
            for name in ("xray_available", "ct_available")
        }
        results["modalities"] = {}
        for variant, switched_off in MODALITY_VARIANTS.items():
            kept = [name for name in available if name not in switched_off]
            rows = np.flatnonzero(np.any([available[name] for name in kept], axis=0))
            if rows.size == 0:
                continue
            variant_predictions = (
                predictions
                if not switched_off
                else predict(model, prepared.select(rows), collator, switch_off=switched_off, **run)
            )
            variant_summary = summarize_predictions(variant_predictions, class_names, **summary)
            used = variant_predictions.get("modalities_used")
            results["modalities"][variant] = {
                "metrics": _group_metrics(variant_predictions, class_names),
                "confidence_intervals": variant_summary["confidence_intervals"],
                "inputs_used": None
                if used is None
                else {"xray": float(used[:, 0].mean()), "ct": float(used[:, 1].mean())},
            }

    if figures:
        results["figures"] = _draw_figures(path, predictions, class_names, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, output_dir / "report.md")
    return results


def _draw_figures(
    checkpoint_dir: Path,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str] | None,
    output_dir: Path,
) -> dict[str, str]:
    """Write the evaluation figures; returns name -> path relative to ``output_dir``."""
    from . import plots

    folder = output_dir / "figures"
    drawn: dict[str, Path] = {}
    if "probabilities" in predictions:
        labels, probabilities = predictions["labels"], predictions["probabilities"]
        matrix = classification_metrics(labels, probabilities, class_names)["confusion_matrix"]
        drawn["confusion_matrix"] = plots.plot_confusion_matrix(
            matrix, class_names, folder / "confusion_matrix.png"
        )
        drawn["confusion_matrix_normalized"] = plots.plot_confusion_matrix(
            matrix, class_names, folder / "confusion_matrix_normalized.png", normalize=True
        )
        drawn["roc_curves"] = plots.plot_roc_curves(
            labels, probabilities, class_names, folder / "roc_curves.png"
        )
        drawn["precision_recall_curves"] = plots.plot_precision_recall_curves(
            labels, probabilities, class_names, folder / "precision_recall_curves.png"
        )
        drawn["reliability_diagram"] = plots.plot_reliability_diagram(
            labels, probabilities, folder / "reliability_diagram.png"
        )
    trainer_state = checkpoint_dir / "trainer_state.json"
    if trainer_state.is_file():
        state = plots.load_trainer_state(trainer_state)
        if state.get("log_history"):
            drawn["training_curves"] = plots.plot_training_curves(
                state, folder / "training_curves.png"
            )
    return {name: path.relative_to(output_dir).as_posix() for name, path in drawn.items()}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

_METRIC_TITLES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1_macro": "F1 (macro)",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Sensitivity / recall (macro)",
    "specificity_macro": "Specificity (macro)",
    "covid_sensitivity": "COVID sensitivity",
    "covid_ppv": "COVID positive predictive value",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC (average precision)",
    "ece": "Expected calibration error (15 bins)",
    "dice": "Dice",
    "iou": "IoU",
    "n_samples": "n",
}


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def _interval(interval) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _group_table(groups: Mapping[str, Mapping], first: str) -> list[str]:
    names = [name for name in GROUP_METRICS if any(name in g for g in groups.values())]
    if any("dice" in g for g in groups.values()):
        names = ["n_samples", *SEGMENTATION_METRICS]
    rows = [[group, *(_number(values.get(n)) for n in names)] for group, values in groups.items()]
    return _table([first, *(_METRIC_TITLES[n] for n in names)], rows)


def write_report(results: Mapping, path: str | Path) -> Path:
    """A Markdown report of :func:`evaluate_checkpoint`'s results (tables and figure links)."""
    metrics = results["metrics"]
    intervals = results.get("confidence_intervals") or {}
    percent = round(100 * results.get("confidence", 0.95))
    lines = [
        f"# Evaluation of `{results['model_type']}` on the {results['split']} split",
        "",
        f"- Checkpoint: `{results['checkpoint']}`",
        f"- Data: `{results['data']}` ({metrics['n_samples']} images, {results['image_size']} px)",
    ]
    if results.get("pairing"):
        lines.append(
            f"- X-ray/CT pairing: **{results['pairing']}**. {results.get('pairing_note', '')}"
        )
    lines += [
        f"- Intervals: {percent}% percentile bootstrap over {results.get('n_resamples')} "
        "resamples of the test images (stratified by class for classification).",
        "- Research software, evaluated on the data above; not a medical device.",
        "",
        "## Headline metrics",
        "",
    ]
    headline = (
        SEGMENTATION_METRICS
        if "dice" in metrics
        else (
            *HEADLINE_METRICS[:2],
            "balanced_accuracy",
            *HEADLINE_METRICS[2:],
            "covid_ppv",
            "pr_auc",
            "ece",
        )
    )
    rows = [
        [_METRIC_TITLES[name], _number(metrics.get(name)), _interval(intervals.get(name))]
        for name in headline
        if name in metrics
    ]
    lines += _table(["Metric", "Value", f"{percent}% CI"], rows)
    class_names = results.get("class_names")
    if class_names:
        matrix = metrics["confusion_matrix"]
        lines += ["", "## Per class", ""]
        rows = [
            [
                name,
                *(
                    _number(metrics.get(f"{m}_{name}"))
                    for m in ("precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")
                ),
                str(sum(matrix[index])),
            ]
            for index, name in enumerate(class_names)
        ]
        header = ["Class", "Precision", "Sensitivity", "Specificity", "F1", "ROC-AUC", "PR-AUC"]
        lines += _table([*header, "Support"], rows)
        lines += ["", "## Confusion matrix (rows: true class, columns: predicted)", ""]
        lines += _table(
            ["true \\ predicted", *class_names],
            [[name, *map(str, row)] for name, row in zip(class_names, matrix, strict=True)],
        )
    if results.get("modalities"):
        lines += ["", "## Inputs used by the dual-input model", ""]
        lines += _group_table(
            {name: value["metrics"] for name, value in results["modalities"].items()}, "Inputs"
        )
    if results.get("per_source"):
        lines += ["", "## Per source", ""]
        lines += _group_table(results["per_source"], "Source")
    if results.get("figures"):
        lines += ["", "## Figures", ""]
        lines += [
            f"![{name.replace('_', ' ')}]({relative})"
            for name, relative in results["figures"].items()
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def format_summary(results: Mapping) -> str:
    """A short console table of the headline metrics (and of the input combinations)."""
    metrics = results["metrics"]
    intervals = results.get("confidence_intervals") or {}
    names = SEGMENTATION_METRICS if "dice" in metrics else (*HEADLINE_METRICS, "ece")
    lines = [
        f"{results['model_type']} on {results['split']} ({metrics['n_samples']} images)",
        *(
            f"  {name:<18} {_number(metrics.get(name)):>6}  {_interval(intervals.get(name))}"
            for name in names
            if name in metrics
        ),
    ]
    for variant, value in (results.get("modalities") or {}).items():
        lines.append(
            f"  inputs {variant:<8} n={value['metrics']['n_samples']:<5} "
            + "  ".join(f"{n} {_number(value['metrics'].get(n))}" for n in GROUP_METRICS[1:4])
        )
    return "\n".join(lines)
