"""Classification and segmentation metrics in plain numpy, with bootstrap confidence intervals.

Every metric is computed from per-sample weights, so one code path serves both the point estimate
(all weights 1) and the bootstrap (weights = how often each sample was drawn into a resample).
The classification metrics are also an ``evaluate`` module (:data:`EVALUATE_MODULE_PATH`,
:func:`load_classification_metric`) that calls :func:`classification_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import evaluate
import numpy as np
import torch

__all__ = [
    "ECE_BINS",
    "EVALUATE_MODULE_PATH",
    "HEADLINE_METRICS",
    "bootstrap_confidence_intervals",
    "bootstrap_mean_interval",
    "bootstrap_units",
    "calibration_bins",
    "classification_metrics",
    "load_classification_metric",
    "one_vs_rest_curves",
    "precision_recall_points",
    "roc_points",
    "segmentation_metrics",
    "undefined_metrics",
]

ECE_BINS = 15
"""Number of equal-width confidence bins of the expected calibration error."""

HEADLINE_METRICS: tuple[str, ...] = ("accuracy", "f1_macro", "covid_sensitivity", "roc_auc")
"""Metrics that reports give with a bootstrap confidence interval."""

EVALUATE_MODULE_PATH = Path(__file__).resolve().parent / "chest_classification"
"""Folder of the ``evaluate`` module ``chest_classification``: ``evaluate.load(str(path))``."""

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


def undefined_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    positive_class: str = "COVID",
) -> set[str]:
    """Keys of :func:`classification_metrics` that the data leave undefined.

    :func:`classification_metrics` reports a ratio with a zero denominator as 0 and a macro
    average over every class of the model; on a subgroup (one source, an external folder)
    holding only some classes those numbers describe no image. Undefined are: the recall,
    ROC-AUC and PR-AUC of a class absent from ``labels``, and its precision and F1 when it is
    never predicted either; the precision of a class never predicted; the specificity and
    ROC-AUC of a class that is every label; every macro average (and ``roc_auc``, ``pr_auc``)
    once a class is absent; ``covid_sensitivity`` without ``positive_class`` images and
    ``covid_ppv`` when ``positive_class`` is never predicted.

    Args:
        labels: (n,) integer class ids.
        probabilities: (n, n_classes) class probabilities; the prediction is their argmax.
        class_names: names of the classes, in id order.
        positive_class: the class reported as ``covid_*``.
    """
    labels, probabilities = _check_inputs(labels, probabilities, class_names)
    present = set(np.unique(labels).tolist())
    predicted = set(np.unique(probabilities.argmax(axis=1)).tolist())
    undefined: set[str] = set()
    for index, name in enumerate(class_names):
        if index not in predicted:
            undefined.add(f"precision_{name}")
        if index not in present:
            undefined |= {f"recall_{name}", f"roc_auc_{name}", f"pr_auc_{name}"}
            if index not in predicted:
                undefined.add(f"f1_{name}")
        if present == {index}:
            undefined |= {f"specificity_{name}", f"roc_auc_{name}"}
    if len(present) < len(class_names):
        undefined |= {f"{name}_macro" for name in ("precision", "recall", "specificity", "f1")}
        undefined |= {"roc_auc", "pr_auc"}
    positive = _positive_index(class_names, positive_class)
    if positive is not None:
        if positive not in present:
            undefined.add("covid_sensitivity")
        if positive not in predicted:
            undefined.add("covid_ppv")
    return undefined


def load_classification_metric(**load_kwargs) -> evaluate.EvaluationModule:
    """The classification metrics as an ``evaluate`` module, from the installed package (offline).

    Its ``compute(predictions=probabilities, references=labels, class_names=[...])`` returns what
    :func:`classification_metrics` returns; ``add_batch`` accumulates batches first.

    Args:
        **load_kwargs: further arguments of ``evaluate.load`` (e.g. ``experiment_id``); results
            are kept in memory unless ``keep_in_memory=False`` is given.
    """
    load_kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(EVALUATE_MODULE_PATH), **load_kwargs)


def bootstrap_units(groups: Sequence | None, n: int) -> np.ndarray:
    """The resampling unit of each of ``n`` samples: its group (a patient), or itself.

    A sample whose group is None or "" is a unit of its own.
    """
    if groups is None:
        return np.arange(n)
    if len(groups) != n:
        raise ValueError(f"got {len(groups)} groups for {n} samples")
    keys = [
        group if group not in (None, "") else ("sample", index)
        for index, group in enumerate(groups)
    ]
    index_of: dict = {}
    return np.array([index_of.setdefault(key, len(index_of)) for key in keys])


def _bootstrap_weights(
    labels: np.ndarray,
    n_resamples: int,
    stratified: bool,
    rng: np.random.Generator,
    units: np.ndarray | None = None,
) -> np.ndarray:
    """(n_resamples, n) how many times each sample is drawn into each resample.

    With ``units`` (`bootstrap_units`), whole units (patients) are drawn, every sample of a drawn
    unit with it; stratified by each unit's most frequent label.
    """
    n = labels.size
    units = np.arange(n) if units is None else units
    n_units = int(units.max()) + 1 if n else 0
    unit_labels = np.zeros(n_units, dtype=np.int64)
    for unit in range(n_units):
        values, counts = np.unique(labels[units == unit], return_counts=True)
        unit_labels[unit] = values[counts.argmax()]
    strata = (
        [np.flatnonzero(unit_labels == c) for c in np.unique(unit_labels)]
        if stratified
        else [np.arange(n_units)]
    )
    unit_counts = np.zeros((n_resamples, n_units))
    rows = np.arange(n_resamples)[:, None]
    for members in strata:
        drawn = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
        np.add.at(unit_counts, (np.broadcast_to(rows, drawn.shape), drawn), 1.0)
    return unit_counts[:, units]


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
    groups: Sequence | None = None,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap confidence intervals for metrics of :func:`classification_metrics`.

    Resamples the test set with replacement (within each true class when ``stratified``, so
    every class keeps its count and ROC-AUC stays defined; whole patients when ``groups`` names
    each sample's patient, since images of one patient are not independent) and takes the
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
        groups: the patient (or other cluster) of each sample, None or "" where unknown; then
            patients are resampled, not images.

    Returns:
        ``{metric: (low, high)}``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    labels, probabilities = _check_inputs(labels, probabilities, class_names)
    rng = np.random.default_rng(seed)
    units = bootstrap_units(groups, labels.size) if groups is not None else None
    weights = _bootstrap_weights(labels, n_resamples, stratified, rng, units)
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
    values: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image values (e.g. Dice), resampling
    whole patients when ``groups`` names each image's patient."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    if groups is None:
        means = values[rng.integers(0, values.size, (n_resamples, values.size))].mean(axis=1)
    else:
        weights = _bootstrap_weights(
            np.zeros(values.size, np.int64),
            n_resamples,
            False,
            rng,
            bootstrap_units(groups, values.size),
        )
        means = (weights @ values) / weights.sum(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def one_vs_rest_curves(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    positive_class: str = "COVID",
) -> dict[str, dict[str, dict]]:
    """The ROC and precision-recall curves that the evaluation figures draw.

    One curve per class (one-vs-rest), or the positive class only for binary tasks; a class whose
    curve is undefined (absent, or every label) is left out.

    Returns:
        ``{"roc": {class: {"x": fpr, "y": tpr, "area": roc_auc}}, "precision_recall": {class:
        {"x": recall, "y": precision, "area": average precision, "prevalence": float}}}``.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    metrics = classification_metrics(labels, probabilities, class_names, positive_class)
    if len(class_names) == 2:
        drawn = [list(class_names).index(positive_class) if positive_class in class_names else 1]
    else:
        drawn = list(range(len(class_names)))
    curves: dict[str, dict[str, dict]] = {"roc": {}, "precision_recall": {}}
    for index in drawn:
        name, positive = class_names[index], labels == index
        if metrics[f"roc_auc_{name}"] is not None:
            x, y = roc_points(probabilities[:, index], positive)
            curves["roc"][name] = {"x": x, "y": y, "area": metrics[f"roc_auc_{name}"]}
        if metrics[f"pr_auc_{name}"] is not None:
            x, y = precision_recall_points(probabilities[:, index], positive)
            curves["precision_recall"][name] = {
                "x": x,
                "y": y,
                "area": metrics[f"pr_auc_{name}"],
                "prevalence": float(np.mean(positive)),
            }
    return curves
