"""Evaluation: metrics in plain numpy, evaluating a checkpoint, reports.

Modules: :mod:`.metrics` (classification and segmentation metrics, bootstrap intervals, curves),
:mod:`.predict` (run a model over a split, summarise), :mod:`.checkpoint` (evaluate a checkpoint
folder or Hub id on a data split), :mod:`.report` (Markdown report, console summary). The
checkpoint resolver and loader live in :mod:`hf_covid.checkpoints` and are re-exported here.
"""

from hf_covid.checkpoints import default_output_dir, load_checkpoint, resolve_checkpoint

from .checkpoint import evaluate_checkpoint, load_evaluation_split, prepare_inputs
from .metrics import (
    ECE_BINS,
    HEADLINE_METRICS,
    bootstrap_confidence_intervals,
    bootstrap_mean_interval,
    calibration_bins,
    classification_metrics,
    one_vs_rest_curves,
    precision_recall_points,
    roc_points,
    segmentation_metrics,
)
from .predict import (
    GROUP_METRICS,
    MODALITY_VARIANTS,
    SEGMENTATION_METRICS,
    evaluate_model,
    predict,
    summarize_predictions,
)
from .report import format_summary, write_report

__all__ = [
    "ECE_BINS",
    "GROUP_METRICS",
    "HEADLINE_METRICS",
    "MODALITY_VARIANTS",
    "SEGMENTATION_METRICS",
    "bootstrap_confidence_intervals",
    "bootstrap_mean_interval",
    "calibration_bins",
    "classification_metrics",
    "default_output_dir",
    "evaluate_checkpoint",
    "evaluate_model",
    "format_summary",
    "load_checkpoint",
    "load_evaluation_split",
    "one_vs_rest_curves",
    "precision_recall_points",
    "predict",
    "prepare_inputs",
    "resolve_checkpoint",
    "roc_points",
    "segmentation_metrics",
    "summarize_predictions",
    "write_report",
]
