"""hf_covid models: configurations, modeling files, the image processor and the ResNet builder.

The package reads like transformers: one ``configuration_*.py`` + ``modeling_*.py`` pair per model,
shared blocks in ``layers.py``, the classifiers' pipeline in ``pipeline_chest.py``. What the rest of the toolkit knows about each model (its name,
task, inputs, dataset, Auto class) is its record in :mod:`hf_covid.registry`, which also registers
every model with the transformers Auto classes and for remote code; importing ``hf_covid`` (or any
of its submodules, this one included) runs it.
"""

from .configuration_cnn_lstm import CNNLSTMConfig
from .configuration_dual_channel import DualChannelCNNConfig
from .configuration_dual_input import DualInputCNNConfig
from .configuration_lung_unet import LungUNetConfig
from .image_processing_chest import ChestImageProcessor
from .labels import BINARY_LABELS, LUNG_MASK_LABELS, RADIOGRAPHY_LABELS, label_maps
from .modeling_cnn_lstm import CNNLSTMForImageClassification, CNNLSTMModel
from .modeling_dual_channel import DualChannelCNNForImageClassification, DualChannelCNNModel
from .modeling_dual_input import (
    DualInputCNNForImageClassification,
    DualInputCNNModel,
    DualInputImageClassifierOutput,
    DualInputModelOutput,
)
from .modeling_lung_unet import LungUNetForSegmentation
from .pipeline_chest import CHEST_CLASSIFICATION_TASK, ChestImageClassificationPipeline
from .resnet import build_resnet_classifier, set_backbone_trainable

__all__ = [
    "BINARY_LABELS",
    "CHEST_CLASSIFICATION_TASK",
    "LUNG_MASK_LABELS",
    "RADIOGRAPHY_LABELS",
    "CNNLSTMConfig",
    "ChestImageClassificationPipeline",
    "ChestImageProcessor",
    "CNNLSTMForImageClassification",
    "CNNLSTMModel",
    "DualChannelCNNConfig",
    "DualChannelCNNForImageClassification",
    "DualChannelCNNModel",
    "DualInputCNNConfig",
    "DualInputCNNForImageClassification",
    "DualInputCNNModel",
    "DualInputImageClassifierOutput",
    "DualInputModelOutput",
    "LungUNetConfig",
    "LungUNetForSegmentation",
    "build_resnet_classifier",
    "label_maps",
    "set_backbone_trainable",
]
