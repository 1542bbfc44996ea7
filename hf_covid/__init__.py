"""hf_covid: Hugging Face-native COVID-19 chest imaging (X-ray and CT) toolkit.

Research software, not a diagnostic device.

Importing the package registers every model family of :mod:`hf_covid.registry` with the
transformers Auto classes (so ``AutoModelForImageClassification.from_pretrained(folder)`` works);
every other name below is imported on first use, so ``import hf_covid`` costs what registering
the models costs and no more::

    import hf_covid

    hf_covid.list_models()           # ['dual_input', 'cnn_lstm', ...]
    image = hf_covid.load_image("chest.dcm")
    predictor = hf_covid.ChestPredictor.from_pretrained("outputs/demo/checkpoints/cnn_lstm")
"""

from __future__ import annotations

from ._lazy import lazy_attributes
from .registry import list_models

__version__ = "0.1.0"

_LAZY_EXPORTS: dict[str, str] = {
    # Models, configurations, the image processor and the label sets.
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
    # The registry beyond list_models.
    "ModelFamily": "hf_covid.registry",
    "get_model_family": "hf_covid.registry",
    "register_model_family": "hf_covid.registry",
    # Data: image reading, the dataset builders, the phantoms and the public collections.
    "load_image": "hf_covid.data",
    "build_radiography_dataset": "hf_covid.data",
    "build_xray_ct_dataset": "hf_covid.data",
    "generate_all": "hf_covid.data",
    "generate_paired_xray_ct": "hf_covid.data",
    "generate_radiography": "hf_covid.data",
    "generate_xray_ct": "hf_covid.data",
    "build_covid_ct_dataset": "hf_covid.data",
    "build_covid_cxnet_dataset": "hf_covid.data",
    "build_ieee8023_dataset": "hf_covid.data",
    "build_kermany_dataset": "hf_covid.data",
    "build_nih_chestxray14_dataset": "hf_covid.data",
    "compose_radiography": "hf_covid.data",
    "compose_xray_ct": "hf_covid.data",
    "prepare_public_data": "hf_covid.data",
    # Training, evaluation, serving, explanations and publishing.
    "train": "hf_covid.training",
    "evaluate_checkpoint": "hf_covid.evaluation",
    "ChestPredictor": "hf_covid.serving",
    "load_predictor": "hf_covid.serving",
    "GradCAM": "hf_covid.explain",
    "push_checkpoint": "hf_covid.hub",
}

__all__ = ["__version__", "list_models", *sorted(_LAZY_EXPORTS)]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_EXPORTS)
