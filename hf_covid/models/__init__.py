"""hf_covid models: configurations, modeling files, the ResNet builder and their Auto registration.

Importing this package registers every model with the transformers Auto classes (`AutoConfig`,
`AutoModel`, `AutoModelForImageClassification`, `AutoModelForSemanticSegmentation`, and
`AutoImageProcessor` -> `ChestImageProcessor`) and marks each class for `register_for_auto_class`,
so `save_pretrained` writes the remote-code files and `auto_map` that let a saved folder load with
`trust_remote_code=True` where hf_covid is not installed.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

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
from .resnet import build_resnet_classifier, set_backbone_trainable
from .stats import example_inputs, model_complexity, training_step_time

# (config, {auto class: model class}) for every model type defined here.
MODEL_CLASSES = (
    (
        DualInputCNNConfig,
        {
            AutoModel: DualInputCNNModel,
            AutoModelForImageClassification: DualInputCNNForImageClassification,
        },
    ),
    (
        CNNLSTMConfig,
        {AutoModel: CNNLSTMModel, AutoModelForImageClassification: CNNLSTMForImageClassification},
    ),
    (
        DualChannelCNNConfig,
        {
            AutoModel: DualChannelCNNModel,
            AutoModelForImageClassification: DualChannelCNNForImageClassification,
        },
    ),
    (
        LungUNetConfig,
        {
            AutoModel: LungUNetForSegmentation,
            AutoModelForSemanticSegmentation: LungUNetForSegmentation,
        },
    ),
)

for _config_class, _auto_models in MODEL_CLASSES:
    AutoConfig.register(_config_class.model_type, _config_class)
    _config_class.register_for_auto_class()
    AutoImageProcessor.register(
        _config_class, image_processor_classes={"torchvision": ChestImageProcessor}
    )
    for _auto_class, _model_class in _auto_models.items():
        _auto_class.register(_config_class, _model_class)
        # A class registered twice (the U-Net) keeps its last, task auto class in `auto_map`.
        _model_class.register_for_auto_class(_auto_class)

__all__ = [
    "BINARY_LABELS",
    "LUNG_MASK_LABELS",
    "MODEL_CLASSES",
    "RADIOGRAPHY_LABELS",
    "CNNLSTMConfig",
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
    "example_inputs",
    "label_maps",
    "model_complexity",
    "set_backbone_trainable",
    "training_step_time",
]
