"""Explanations of the classifiers: CAM methods, their measured quality, figures, visualize.

- :mod:`~hf_covid.explain.layers`: which layers to explain (defaults, encoder stages).
- :mod:`~hf_covid.explain.cam`: :class:`GradCAM`, :class:`HiResCAM`, :func:`feature_maps`.
- :mod:`~hf_covid.explain.metrics`: pointing game and energy inside a mask.
- :mod:`~hf_covid.explain.quality`: scores on phantoms with lesion masks and the shortcut audit.
- :mod:`~hf_covid.explain.overlays`: heat-map overlays and feature-map grids.
- :mod:`~hf_covid.explain.visualize`: all of the above for a checkpoint (``scripts/visualize.py``).

Research software: a map shows what a model used, not where disease is; it is no diagnosis.
"""

from .cam import CAM_METHODS, GradCAM, HiResCAM, cam_method, feature_maps
from .layers import (
    INPUT_KEYS,
    TargetLayers,
    default_target_layers,
    encoder_stages,
    explanation_layers,
    resolve_layers,
)
from .metrics import box_masks, energy_inside, masks_like, pointing_game
from .overlays import plot_feature_maps, plot_gradcam_overlays
from .quality import (
    BRANCH_ID_COLUMNS,
    SHORTCUT_THRESHOLD,
    LesionExamples,
    audit_shortcut_markers,
    evaluate_explanations,
    explanation_layer_sweep,
    read_shortcut_markers,
    shortcut_audit,
)
from .visualize import visualize_checkpoint

__all__ = [
    "BRANCH_ID_COLUMNS",
    "CAM_METHODS",
    "INPUT_KEYS",
    "SHORTCUT_THRESHOLD",
    "GradCAM",
    "HiResCAM",
    "LesionExamples",
    "TargetLayers",
    "audit_shortcut_markers",
    "box_masks",
    "cam_method",
    "default_target_layers",
    "encoder_stages",
    "energy_inside",
    "evaluate_explanations",
    "explanation_layer_sweep",
    "explanation_layers",
    "feature_maps",
    "masks_like",
    "plot_feature_maps",
    "plot_gradcam_overlays",
    "pointing_game",
    "read_shortcut_markers",
    "resolve_layers",
    "shortcut_audit",
    "visualize_checkpoint",
]
