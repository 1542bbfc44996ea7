"""hf_covid: Hugging Face-native COVID-19 chest imaging (X-ray and CT) toolkit.

Importing the package registers every model, configuration and the image processor with the
transformers Auto classes. Training, evaluation, explanations, Hub publishing and inference live in
their submodules (``hf_covid.training``, ``hf_covid.evaluation``, ``hf_covid.explain``,
``hf_covid.hub``, ``hf_covid.inference``) so that ``import hf_covid`` stays light.
"""

from .data import build_radiography_dataset, build_xray_ct_dataset, load_image
from .models import (
    BINARY_LABELS,
    RADIOGRAPHY_LABELS,
    ChestImageProcessor,
    CNNLSTMConfig,
    CNNLSTMForImageClassification,
    DualChannelCNNConfig,
    DualChannelCNNForImageClassification,
    DualInputCNNConfig,
    DualInputCNNForImageClassification,
    LungUNetConfig,
    LungUNetForSegmentation,
    build_resnet_classifier,
)

__version__ = "0.1.0"

__all__ = [
    "BINARY_LABELS",
    "RADIOGRAPHY_LABELS",
    "CNNLSTMConfig",
    "CNNLSTMForImageClassification",
    "ChestImageProcessor",
    "DualChannelCNNConfig",
    "DualChannelCNNForImageClassification",
    "DualInputCNNConfig",
    "DualInputCNNForImageClassification",
    "LungUNetConfig",
    "LungUNetForSegmentation",
    "build_radiography_dataset",
    "build_resnet_classifier",
    "build_xray_ct_dataset",
    "load_image",
]
