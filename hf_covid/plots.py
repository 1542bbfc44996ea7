"""Matplotlib figures for training, evaluation and explanation scores.

Drawing only: every function is handed what it draws (curves, bins, matrices, scores) and
computes no metric. Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot
global state, so it is safe from threads such as the Gradio app), writes a PNG with
:func:`save_figure` and returns its path. CAM overlays and feature-map grids are drawn by
:mod:`hf_covid.explain.overlays`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "CURVE_METRICS",
    "load_trainer_state",
    "plot_confusion_matrix",
    "plot_explanation_sweep",
    "plot_precision_recall_curves",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_training_curves",
    "save_figure",
]

# Log entries that are bookkeeping, not a quality metric.
_NON_METRIC_KEYS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "step", "loss")

CURVE_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "covid_sensitivity",
    "roc_auc",
    "dice",
    "iou",
)
"""Evaluation metrics drawn by :func:`plot_training_curves` when the log has them."""


def save_figure(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG with the Agg canvas (parent folders made); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    return path


def load_trainer_state(trainer_state: Mapping | str | Path) -> dict:
    """A Trainer state as a dict, from a dict, a ``trainer_state.json`` file or its folder."""
    if isinstance(trainer_state, Mapping):
        return dict(trainer_state)
    path = Path(trainer_state)
    if path.is_dir():
        path = path / "trainer_state.json"
    if not path.is_file():
        raise FileNotFoundError(f"trainer state file not found: {path}")
    return json.loads(path.read_text())


def plot_training_curves(
    trainer_state: Mapping | str | Path,
    path: str | Path,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Training and evaluation loss, and evaluation metrics, against epoch (or step).

    Args:
        trainer_state: the ``transformers`` Trainer state (a dict with ``log_history``) or the path
            of ``trainer_state.json`` (or of the folder holding it).
        path: PNG file to write.
        metrics: evaluation metrics to draw (without the ``eval_`` prefix); default: those of
            :data:`CURVE_METRICS` in the log, else every logged one.

    Returns:
        ``path``.
    """
    state = load_trainer_state(trainer_state)
    history = state.get("log_history")
    if not history:
        raise ValueError("trainer state has no 'log_history' entries to plot")
    x_key = "epoch" if all("epoch" in entry for entry in history) else "step"

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(e[x_key], e[key]) for e in history if key in e and x_key in e]
        return [p[0] for p in points], [p[1] for p in points]

    logged = {
        key
        for entry in history
        for key, value in entry.items()
        if key.startswith("eval_")
        and isinstance(value, int | float)
        and not any(key.endswith(suffix) for suffix in _NON_METRIC_KEYS)
    }
    wanted = [f"eval_{name}" for name in (metrics or CURVE_METRICS)]
    metric_keys = [key for key in wanted if key in logged] or ([] if metrics else sorted(logged))
    figure = Figure(figsize=(11, 4))
    loss_axis, metric_axis = figure.subplots(1, 2)
    for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "eval loss", "o-")):
        xs, ys = series(key)
        if xs:
            loss_axis.plot(xs, ys, style, label=label)
    loss_axis.set(xlabel=x_key, ylabel="loss", title="Loss")
    for key in metric_keys:
        xs, ys = series(key)
        metric_axis.plot(xs, ys, "o-", label=key.removeprefix("eval_"), markersize=3)
    metric_axis.set(xlabel=x_key, ylabel="value", title="Evaluation metrics")
    if not metric_keys:
        metric_axis.text(0.5, 0.5, "no evaluation metrics logged", ha="center", va="center")
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    return save_figure(figure, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    normalize: bool = False,
) -> Path:
    """Confusion matrix heat map (rows = true class), counts or row-normalised fractions.

    Args:
        matrix: (K, K) counts, rows = true class, columns = predicted class.
        class_names: the K class names.
        path: PNG file to write.
        normalize: divide each row by its total (rows without samples stay 0).

    Returns:
        ``path``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    size = len(class_names)
    if matrix.shape != (size, size):
        raise ValueError(
            f"confusion matrix must be {size}x{size} for {list(class_names)}, got {matrix.shape}"
        )
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    figure = Figure(figsize=(1.3 * size + 2.5, 1.1 * size + 2))
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else max(matrix.max(), 1))
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    threshold = (1 if normalize else max(matrix.max(), 1)) / 2
    for row in range(size):
        for column in range(size):
            value = matrix[row, column]
            axis.text(
                column,
                row,
                f"{value:.2f}" if normalize else f"{int(round(value))}",
                ha="center",
                va="center",
                color="white" if value > threshold else "black",
            )
    axis.set_xticks(range(size), class_names, rotation=30, ha="right")
    axis.set_yticks(range(size), class_names)
    axis.set(xlabel="predicted", ylabel="true")
    axis.set_title("Confusion matrix" + (" (row-normalised)" if normalize else " (counts)"))
    return save_figure(figure, path)


def plot_roc_curves(curves: Mapping[str, Mapping], path: str | Path) -> Path:
    """ROC curves with their AUC.

    Args:
        curves: class name -> ``{"x": false positive rates, "y": true positive rates, "area":
            ROC-AUC}`` (``hf_covid.evaluation.one_vs_rest_curves(...)["roc"]``).
        path: the PNG to write.
    """
    figure = Figure(figsize=(5.5, 5))
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    for name, curve in curves.items():
        axis.plot(curve["x"], curve["y"], label=f"{name} (AUC {curve['area']:.3f})")
    axis.set(
        xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)"
    )
    axis.set(xlim=(0, 1), ylim=(0, 1.02), title="ROC curves")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return save_figure(figure, path)


def plot_precision_recall_curves(curves: Mapping[str, Mapping], path: str | Path) -> Path:
    """Precision-recall curves with average precision and prevalence baselines.

    Args:
        curves: class name -> ``{"x": recall, "y": precision, "area": average precision,
            "prevalence": fraction of that class}``
            (``hf_covid.evaluation.one_vs_rest_curves(...)["precision_recall"]``).
        path: the PNG to write.
    """
    figure = Figure(figsize=(5.5, 5))
    axis = figure.subplots()
    for name, curve in curves.items():
        (line,) = axis.step(
            curve["x"], curve["y"], where="pre", label=f"{name} (AP {curve['area']:.3f})"
        )
        axis.axhline(curve["prevalence"], ls=":", lw=1, color=line.get_color())
    axis.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title="Precision-recall curves (dotted: class prevalence)",
    )
    axis.set(xlim=(0, 1), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8, loc="best")
    return save_figure(figure, path)


def plot_reliability_diagram(bins: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Reliability diagram of the top-label confidence, with the ECE and a count histogram.

    Args:
        bins: ``hf_covid.evaluation.calibration_bins`` output (``edges``, ``count``,
            ``confidence``, ``accuracy``).
        path: the PNG to write.
    """
    edges, count = bins["edges"], bins["count"]
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    filled = count > 0
    ece = float(np.nansum(count * np.abs(bins["accuracy"] - bins["confidence"])) / count.sum())
    figure = Figure(figsize=(5.5, 6))
    axis, histogram = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    axis.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    axis.bar(
        centers[filled],
        bins["accuracy"][filled],
        width=width,
        edgecolor="black",
        alpha=0.8,
        label="accuracy",
    )
    axis.bar(
        centers[filled],
        (bins["confidence"] - bins["accuracy"])[filled],
        width=width,
        bottom=bins["accuracy"][filled],
        fill=False,
        edgecolor="red",
        hatch="//",
        label="gap to mean confidence",
    )
    axis.set(ylabel="accuracy", ylim=(0, 1), title=f"Reliability diagram (ECE {ece:.3f})")
    axis.legend(fontsize=8, loc="upper left")
    axis.grid(alpha=0.3)
    histogram.bar(centers, count, width=width, edgecolor="black", color="grey")
    histogram.set(xlabel="confidence (top-label probability)", ylabel="count", xlim=(0, 1))
    return save_figure(figure, path)


def plot_explanation_sweep(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Pointing game and energy inside lesions per encoder stage and CAM method (one panel per map).

    Args:
        rows: :func:`hf_covid.explain.explanation_layer_sweep` output.
        path: PNG file to write.

    Returns:
        ``path``.
    """
    if not rows:
        raise ValueError("no explanation scores to plot")
    maps = list(dict.fromkeys(row["map"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    figure = Figure(figsize=(4.6 * len(maps), 3.6))
    axes = np.asarray(figure.subplots(1, len(maps), squeeze=False))[0]
    colors = dict(zip(methods, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))
    for axis, key in zip(axes, maps, strict=True):
        chosen = [row for row in rows if row["map"] == key]
        stages = sorted({row["stage"] for row in chosen})
        for method in methods:
            scored = sorted((r for r in chosen if r["method"] == method), key=lambda r: r["stage"])
            depth = [r["stage"] for r in scored]
            axis.plot(
                depth,
                [r["pointing_game"] for r in scored],
                "o-",
                color=colors[method],
                label=f"{method}: pointing game",
            )
            axis.plot(
                depth,
                [r["energy_inside"] for r in scored],
                "s--",
                color=colors[method],
                label=f"{method}: energy inside",
            )
        area = float(np.mean([row["lesion_area_fraction"] for row in chosen]))
        axis.axhline(area, color="gray", linestyle=":", label="lesion area (uniform map)")
        axis.set_xticks(stages)
        axis.set_xticklabels([str(stage) for stage in stages])
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("encoder stage (0 = shallowest, finest map)")
        axis.set_title(f"{key} ({chosen[0]['n_images']} images)")
    axes[0].set_ylabel("score")
    axes[-1].legend(fontsize=7, loc="best")
    return save_figure(figure, path)
