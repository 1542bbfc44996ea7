"""Serving the models: the predictor, and what the app and any other front end build on.

- :mod:`~hf_covid.serving.predictor`: :class:`ChestPredictor` (probabilities, Grad-CAM, feature
  maps, the input check) and :func:`load_predictor` (a classifier's predictor, or the lung
  U-Net's :class:`~hf_covid.lung_masks.LungSegmenter`).
- :mod:`~hf_covid.serving.served`: the served models (:func:`load_served_models`), one per
  registered family, and what each was trained on (:class:`ModelProvenance`).
- :mod:`~hf_covid.serving.overlays`: heat-map and mask overlays, feature-map grids.

Inputs are read by :func:`hf_covid.data.load_image`; a bad one raises
:class:`hf_covid.data.InputError`. Research software, not a diagnostic device::

    from hf_covid.serving import load_predictor

    predictor = load_predictor("outputs/demo/checkpoints/cnn_lstm")
    prediction = predictor.predict(xray="chest.dcm")
"""

from .predictor import INPUT_NAMES, ChestPredictor, Prediction, load_predictor
from .served import (
    ModelProvenance,
    ServedModels,
    load_served_models,
    read_model_card,
    read_provenance,
)

__all__ = [
    "INPUT_NAMES",
    "ChestPredictor",
    "ModelProvenance",
    "Prediction",
    "ServedModels",
    "load_predictor",
    "load_served_models",
    "read_model_card",
    "read_provenance",
]
