"""hf_covid: Hugging Face-native COVID-19 chest imaging (X-ray and CT) toolkit.

Research software, not a diagnostic device.

Importing the package registers every model family of :mod:`hf_covid.registry` with the
transformers Auto classes (so ``AutoModelForImageClassification.from_pretrained(folder)`` works);
everything else below is loaded on first use, so ``import hf_covid`` costs little more than
``import torch, transformers``::

    import hf_covid

    hf_covid.list_models()           # ['dual_input', 'cnn_lstm', ...]
    image = hf_covid.load_image("chest.dcm")
    predictor = hf_covid.ChestPredictor.from_pretrained("outputs/demo/checkpoints/cnn_lstm")
"""

from __future__ import annotations

import importlib
from typing import Any

from .registry import list_models

__version__ = "0.1.0"

_LAZY_EXPORTS: dict[str, str] = {
    # name -> module that defines it
    "BINARY_LABELS": "hf_covid.models",
    "RADIOGRAPHY_LABELS": "hf_covid.models",
    "LUNG_MASK_LABELS": "hf_covid.models",
    "CNNLSTMConfig": "hf_covid.models",
    "CNNLSTMForImageClassification": "hf_covid.models",
    "ChestImageProcessor": "hf_covid.models",
    "DualChannelCNNConfig": "hf_covid.models",
    "DualChannelCNNForImageClassification": "hf_covid.models",
    "DualInputCNNConfig": "hf_covid.models",
    "DualInputCNNForImageClassification": "hf_covid.models",
    "LungUNetConfig": "hf_covid.models",
    "LungUNetForSegmentation": "hf_covid.models",
    "build_resnet_classifier": "hf_covid.models",
    "get_model_family": "hf_covid.registry",
    "build_radiography_dataset": "hf_covid.data",
    "build_xray_ct_dataset": "hf_covid.data",
    "load_image": "hf_covid.data",
    "train": "hf_covid.training",
    "evaluate_checkpoint": "hf_covid.evaluation",
    "ChestPredictor": "hf_covid.inference",
    "GradCAM": "hf_covid.explain",
    "push_checkpoint": "hf_covid.hub",
}

__all__ = ["__version__", "list_models", *sorted(_LAZY_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first access and cache the attribute."""
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_covid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
