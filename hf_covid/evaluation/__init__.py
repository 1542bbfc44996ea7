"""Evaluation: metrics in plain numpy, evaluating a checkpoint, external validation, reports.

Modules: :mod:`.metrics` (classification and segmentation metrics, bootstrap intervals, curves),
:mod:`.predict` (run a model over a split, summarise), :mod:`.inputs` (the split a checkpoint is
evaluated on and the model's inputs), :mod:`.checkpoint` (evaluate a checkpoint folder or Hub id
on a data split), :mod:`.external` (external validation on a folder holding some of the classes),
:mod:`.figures` and :mod:`.report` (figures, Markdown report, console summary). The checkpoint
resolver and loader live in :mod:`hf_covid.checkpoints` and are re-exported here.
"""

from hf_covid.checkpoints import default_output_dir, load_checkpoint, resolve_checkpoint

from .checkpoint import evaluate_checkpoint
from .external import evaluate_external, external_metrics, folder_classes
from .figures import draw_evaluation_figures
from .inputs import (
    build_dataset,
    load_evaluation_split,
    model_image_size,
    prepare_inputs,
    run_build_options,
)
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
    undefined_metrics,
)
from .predict import (
    GROUP_METRICS,
    MODALITY_VARIANTS,
    SEGMENTATION_METRICS,
    class_names_of,
    evaluate_model,
    predict,
    summarize_predictions,
)
from .report import (
    EXTERNAL_METRICS,
    EXTERNAL_SPLIT,
    format_summary,
    markdown_table,
    missing_classes,
    write_report,
)

__all__ = [
    "ECE_BINS",
    "EXTERNAL_METRICS",
    "EXTERNAL_SPLIT",
    "GROUP_METRICS",
    "HEADLINE_METRICS",
    "MODALITY_VARIANTS",
    "SEGMENTATION_METRICS",
    "bootstrap_confidence_intervals",
    "bootstrap_mean_interval",
    "build_dataset",
    "calibration_bins",
    "class_names_of",
    "classification_metrics",
    "default_output_dir",
    "draw_evaluation_figures",
    "evaluate_checkpoint",
    "evaluate_external",
    "evaluate_model",
    "external_metrics",
    "folder_classes",
    "format_summary",
    "load_checkpoint",
    "load_evaluation_split",
    "markdown_table",
    "missing_classes",
    "model_image_size",
    "one_vs_rest_curves",
    "precision_recall_points",
    "predict",
    "prepare_inputs",
    "resolve_checkpoint",
    "roc_points",
    "run_build_options",
    "segmentation_metrics",
    "summarize_predictions",
    "undefined_metrics",
    "write_report",
]
