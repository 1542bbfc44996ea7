"""The figures of an evaluation: confusion matrices, ROC and precision-recall curves, the
reliability diagram and the training curves (drawn by :mod:`hf_covid.plots`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hf_covid import plots
from hf_covid.checkpoints import FIGURES_DIR, TRAINER_STATE_FILE

from .metrics import ECE_BINS, calibration_bins, classification_metrics, one_vs_rest_curves

__all__ = ["draw_evaluation_figures"]


def draw_evaluation_figures(
    checkpoint_dir: Path | None,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str] | None,
    output_dir: Path,
) -> dict[str, str]:
    """Write the evaluation figures (training curves from ``checkpoint_dir`` unless None);
    returns name -> path relative to ``output_dir``."""
    folder = output_dir / FIGURES_DIR
    drawn: dict[str, Path] = {}
    if "probabilities" in predictions:
        labels, probabilities = predictions["labels"], predictions["probabilities"]
        matrix = classification_metrics(labels, probabilities, class_names)["confusion_matrix"]
        curves = one_vs_rest_curves(labels, probabilities, class_names)
        drawn["confusion_matrix"] = plots.plot_confusion_matrix(
            matrix, class_names, folder / "confusion_matrix.png"
        )
        drawn["confusion_matrix_normalized"] = plots.plot_confusion_matrix(
            matrix, class_names, folder / "confusion_matrix_normalized.png", normalize=True
        )
        # A curve needs positives and negatives: none is defined on a one-class folder.
        if curves["roc"]:
            drawn["roc_curves"] = plots.plot_roc_curves(curves["roc"], folder / "roc_curves.png")
        if curves["precision_recall"]:
            drawn["precision_recall_curves"] = plots.plot_precision_recall_curves(
                curves["precision_recall"], folder / "precision_recall_curves.png"
            )
        drawn["reliability_diagram"] = plots.plot_reliability_diagram(
            calibration_bins(labels, probabilities, ECE_BINS),
            folder / "reliability_diagram.png",
        )
    trainer_state = None if checkpoint_dir is None else checkpoint_dir / TRAINER_STATE_FILE
    if trainer_state is not None and trainer_state.is_file():
        state = plots.load_trainer_state(trainer_state)
        if state.get("log_history"):
            drawn["training_curves"] = plots.plot_training_curves(
                state, folder / "training_curves.png"
            )
    return {name: path.relative_to(output_dir).as_posix() for name, path in drawn.items()}
