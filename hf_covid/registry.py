"""The model registry: one record per model family, read by every part of the toolkit.

Training, evaluation, inference, the Hub cards, the app, the demo, the benchmarks, the model
statistics and the tests learn what a model is from its :class:`ModelFamily` record: its name, its
config and model classes, the Auto class that loads it, its task, the dataset it trains on, the
inputs its collator must produce, its card summary, a tiny configuration for tests, its recipes,
how it exports to ONNX and (where the model class does not say) its Grad-CAM layers. Adding a
model is one :func:`register_model_family` call plus its configuration and modeling files;
registering also registers the family with the transformers Auto classes, so a saved folder loads
with ``AutoModelForImageClassification.from_pretrained`` once ``hf_covid`` is imported.

Example::

    >>> from hf_covid.registry import get_model_family, list_models
    >>> list_models()
    ['dual_input', 'cnn_lstm', 'dual_channel', 'resnet', 'lung_unet']
    >>> get_model_family("covid_cnn_lstm").display_name
    'CNN + LSTM'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    PreTrainedConfig,
    PreTrainedModel,
    ViTImageProcessor,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.pipelines import PIPELINE_REGISTRY

from . import models
from .models.labels import BINARY_LABELS, LUNG_MASK_LABELS, RADIOGRAPHY_LABELS, label_maps
from .recipes import recipe_path

__all__ = [
    "DATASET_KINDS",
    "MODALITY_FLAGS",
    "ONNX_EXPORTERS",
    "RECIPE_PURPOSES",
    "DatasetKind",
    "ModelFamily",
    "example_inputs",
    "get_dataset_kind",
    "get_model_family",
    "list_models",
    "model_families",
    "register_model_family",
]


@dataclass(frozen=True)
class DatasetKind:
    """One of the two public data layouts a model family trains on.

    Attributes:
        key: ``"radiography"`` or ``"xray_ct"`` (:attr:`ModelFamily.dataset_kind`).
        name: The public dataset's name, as cards and reports give it.
        url: Where the public dataset is published.
        labels: Its classes, in label-id order.
        image_column: The X-ray column of the built ``DatasetDict``.
        mask_column: The lung-mask column, or None when the layout has none.
        ct_column: The CT column, or None.
    """

    key: str
    name: str
    url: str
    labels: tuple[str, ...]
    image_column: str
    mask_column: str | None
    ct_column: str | None


DATASET_KINDS: Mapping[str, DatasetKind] = MappingProxyType(
    {
        "radiography": DatasetKind(
            key="radiography",
            name="COVID-19 Radiography Database",
            url="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
            labels=RADIOGRAPHY_LABELS,
            image_column="image",
            mask_column="mask",
            ct_column=None,
        ),
        "xray_ct": DatasetKind(
            key="xray_ct",
            name="Extensive COVID-19 X-Ray and CT Chest Images Dataset",
            url="https://doi.org/10.17632/8h65ywd2jr.3",
            labels=BINARY_LABELS,
            image_column="xray",
            mask_column=None,
            ct_column="ct",
        ),
    }
)
"""The data layouts, by key."""


def get_dataset_kind(key: str) -> DatasetKind:
    """The :class:`DatasetKind` named ``key``.

    Raises:
        KeyError: an unknown key; the message lists the known ones.
    """
    try:
        return DATASET_KINDS[key]
    except KeyError:
        raise KeyError(
            f"unknown dataset kind {key!r}; expected one of {', '.join(DATASET_KINDS)}"
        ) from None


ModelBuilder = Callable[..., PreTrainedModel]
"""``build(labels, config_overrides, *, pretrained, freeze_backbone) -> model``."""

RECIPE_PURPOSES: tuple[str, ...] = ("full", "demo", "study")
"""What the toolkit runs a family's recipes for (:attr:`ModelFamily.recipes`): ``full``, the real
dataset at full size; ``demo``, the synthetic phantoms (the demo, the benchmarks, the tests);
``study``, the public collections (the real-data study, :mod:`hf_covid.study`)."""

ONNX_EXPORTERS: tuple[str, ...] = ("dynamo", "torchscript")
"""The torch ONNX exporters (:mod:`hf_covid.export`): torch.export-based, or TorchScript."""
MODALITY_FLAGS: Mapping[str, str] = MappingProxyType(
    {"pixel_values": "xray_available", "ct_pixel_values": "ct_available"}
)
"""Each image input of a multi-modal model and the flag input saying which samples have it."""


@dataclass(frozen=True)
class ModelFamily:
    """Everything the toolkit knows about one model family.

    Attributes:
        key: Recipe and command-line name (``"cnn_lstm"``); also the checkpoint folder name of the
            demo and the app's model slot.
        model_type: ``config.model_type`` of its checkpoints (``"covid_cnn_lstm"``).
        display_name: How the app, cards and reports name it (``"CNN + LSTM"``).
        config_class: Its ``PreTrainedConfig`` subclass.
        model_class: Its task model (``PreTrainedModel``) class.
        auto_class: Name of the transformers Auto class that loads it.
        task: ``"classification"`` or ``"segmentation"``.
        dataset_kind: Key of the :data:`DATASET_KINDS` layout it trains on.
        input_names: Batch keys the collator must produce for ``forward`` besides ``labels``.
        target: Batch key that becomes ``labels`` (``"lung_mask"`` for the lung U-Net).
        card_summary: One paragraph on the architecture, for the model card.
        tiny_config: Keyword arguments of a tiny configuration (tests and benchmarks).
        build: Custom builder (ResNet: from pretrained weights); None builds
            ``model_class(config_class(**overrides))``. A family with a builder accepts the
            ``pretrained`` and ``freeze_backbone`` training options.
        base_model_class: The bare model registered for ``AutoModel``, or None.
        processor_options: ``ChestImageProcessor`` settings besides the size (ResNet: 3 channels
            and ImageNet normalisation).
        recipes: Purpose (:data:`RECIPE_PURPOSES`) -> its recipe, a packaged recipe's name or a
            YAML path (:mod:`hf_covid.recipes`): the ones the toolkit runs (a family may have more).
        onnx_exporter: The exporter that handles the model (:data:`ONNX_EXPORTERS`):
            ``"torchscript"`` where torch.export cannot trace its ``forward``.
        onnx_dynamic_width: Whether an ONNX export may leave the image width dynamic (False
            where the graph fixes it, e.g. adaptive pooling to a fixed number of columns).
        gradcam_layers: ``config -> {branch: module name}``, the default Grad-CAM layers, for a
            model class that does not name them in ``gradcam_target_layers`` (ResNet).
    """

    key: str
    model_type: str
    display_name: str
    config_class: type
    model_class: type
    auto_class: str
    task: Literal["classification", "segmentation"]
    dataset_kind: str
    input_names: tuple[str, ...]
    target: str
    card_summary: str
    tiny_config: Mapping[str, Any]
    build: ModelBuilder | None = None
    base_model_class: type | None = None
    processor_options: Mapping[str, Any] = field(default_factory=dict)
    recipes: Mapping[str, str] = field(default_factory=dict)
    onnx_exporter: Literal["dynamo", "torchscript"] = "dynamo"
    onnx_dynamic_width: bool = True
    gradcam_layers: Callable[[PreTrainedConfig], Mapping[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.task not in ("classification", "segmentation"):
            raise ValueError(
                f"model family {self.key!r}: task must be 'classification' or 'segmentation', "
                f"got {self.task!r}"
            )
        get_dataset_kind(self.dataset_kind)
        if not hasattr(transformers, self.auto_class):
            raise ValueError(
                f"model family {self.key!r}: transformers has no Auto class {self.auto_class!r}"
            )
        if self.onnx_exporter not in ONNX_EXPORTERS:
            raise ValueError(
                f"model family {self.key!r}: onnx_exporter must be one of {ONNX_EXPORTERS}, "
                f"got {self.onnx_exporter!r}"
            )
        unknown = set(self.recipes) - set(RECIPE_PURPOSES)
        if unknown:
            raise ValueError(
                f"model family {self.key!r}: recipe purposes {sorted(unknown)} are none of "
                f"{RECIPE_PURPOSES}"
            )
        for recipe in self.recipes.values():
            recipe_path(recipe)  # a family names recipes that exist

    @property
    def dataset(self) -> DatasetKind:
        """The data layout this family trains on."""
        return DATASET_KINDS[self.dataset_kind]

    @property
    def labels(self) -> tuple[str, ...]:
        """Default class names: the dataset's classes, or background/lung for segmentation."""
        return LUNG_MASK_LABELS if self.task == "segmentation" else self.dataset.labels

    @property
    def uses_mask(self) -> bool:
        """Whether its batches need the lung mask (as an input or as the target)."""
        return "lung_mask" in self.input_names or self.target == "lung_mask"

    @property
    def pipeline_tag(self) -> str:
        """The Hub pipeline tag (``image-classification`` or ``image-segmentation``)."""
        return "image-segmentation" if self.task == "segmentation" else "image-classification"

    @property
    def accepts_pretrained(self) -> bool:
        """Whether the ``pretrained`` / ``freeze_backbone`` options apply (a custom builder)."""
        return self.build is not None

    @property
    def is_transformers_model(self) -> bool:
        """Whether transformers itself defines the model (ResNet): no remote code to save."""
        return self.config_class.__module__.startswith("transformers.")

    def checkpoint_image_processor(
        self, processor: models.ChestImageProcessor
    ) -> models.ChestImageProcessor | ViTImageProcessor:
        """The image processor a checkpoint of this family saves.

        A transformers model (ResNet) saves the stock equivalent of ``processor``
        (:meth:`~hf_covid.models.ChestImageProcessor.to_stock_image_processor`), so that its
        checkpoint loads and runs with no remote code at all, unless ``processor`` has steps no
        stock processor has (lung crop, intensity standardisation); the others save
        ``processor``.
        """
        if self.is_transformers_model and processor.has_stock_equivalent:
            return processor.to_stock_image_processor()
        return processor

    @property
    def auto_model_class(self) -> type:
        """The transformers Auto class object named by :attr:`auto_class`."""
        return getattr(transformers, self.auto_class)

    def build_model(
        self,
        labels: Sequence[str] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        *,
        pretrained: str | None = None,
        freeze_backbone: bool = False,
    ) -> PreTrainedModel:
        """A new model of this family.

        Args:
            labels: Class names in id order (default :attr:`labels`); ignored for segmentation.
            config_overrides: Keyword arguments of the config (e.g. :attr:`tiny_config`).
            pretrained: Weights to start from (families with a custom builder only).
            freeze_backbone: Train the head only (families with a custom builder only).

        Raises:
            TypeError: a config field that the config class does not take.
            ValueError: ``pretrained`` / ``freeze_backbone`` for a family without a builder.
        """
        labels = tuple(labels or self.labels)
        overrides = dict(config_overrides or {})
        if self.build is not None:
            return self.build(
                labels, overrides, pretrained=pretrained, freeze_backbone=freeze_backbone
            )
        if pretrained or freeze_backbone:
            raise ValueError(
                f"pretrained / freeze_backbone do not apply to {self.key!r}; families with a "
                f"custom builder take them ({', '.join(f.key for f in _families() if f.build)})"
            )
        if self.task == "classification":
            id2label, label2id = label_maps(labels)
            overrides.update(id2label=id2label, label2id=label2id)
        return self.model_class(self.config_class(**overrides))

    def tiny_model(self, labels: Sequence[str] | None = None) -> PreTrainedModel:
        """A randomly initialised model of :attr:`tiny_config` (tests and benchmarks)."""
        return self.build_model(labels, self.tiny_config)


def example_inputs(
    config: PreTrainedConfig,
    batch_size: int = 1,
    image_size: int = 224,
    labels: bool = False,
    *,
    width: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Random inputs of the names and shapes that the model ``config`` describes takes.

    The names are those of its family's :attr:`ModelFamily.input_names`; every image is present
    (availability flags all True). Used for model statistics, benchmarks, the ONNX export and
    the tests.

    Args:
        config: A config of any registered model family.
        batch_size: Images per batch.
        image_size: Height (and width, unless ``width`` is given).
        labels: Add ``labels`` (class indices, or masks for segmentation models) so that the
            forward computes a loss.
        width: Width, when it differs from the height.
        generator: Random generator of the values (default: torch's global one).
    """
    family = get_model_family(config.model_type)
    height, width = image_size, width or image_size
    inputs = {}
    for name in family.input_names:
        if name in MODALITY_FLAGS.values():
            inputs[name] = torch.ones(batch_size, dtype=torch.bool)
        elif name == "lung_mask":
            mask = torch.rand(batch_size, 1, height, width, generator=generator)
            inputs[name] = (mask > 0.5).float()
        else:
            shape = (batch_size, config.num_channels, height, width)
            inputs[name] = torch.rand(shape, generator=generator)
    if labels and family.task == "segmentation":
        inputs["labels"] = torch.randint(0, 2, (batch_size, height, width), generator=generator)
    elif labels:
        inputs["labels"] = torch.randint(0, config.num_labels, (batch_size,), generator=generator)
    return inputs


_REGISTRY: dict[str, ModelFamily] = {}


def _families() -> tuple[ModelFamily, ...]:
    return tuple(_REGISTRY.values())


def _register_auto_classes(family: ModelFamily) -> None:
    """Register the family with the transformers Auto classes and for remote code.

    Families whose config belongs to transformers itself (ResNet) are already known to it.
    """
    if family.is_transformers_model:
        return
    AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
    family.config_class.register_for_auto_class()
    AutoImageProcessor.register(
        family.config_class,
        image_processor_classes={"torchvision": models.ChestImageProcessor},
        exist_ok=True,
    )
    auto_models = {}
    if family.base_model_class is not None:
        auto_models[AutoModel] = family.base_model_class
    auto_models[family.auto_model_class] = family.model_class
    for auto_class, model_class in auto_models.items():
        auto_class.register(family.config_class, model_class, exist_ok=True)
        # A class registered twice (the U-Net) keeps its last, task Auto class in `auto_map`.
        model_class.register_for_auto_class(auto_class.__name__)


def _register_pipeline(family: ModelFamily) -> None:
    """Register the family's serving pipeline under its task name, for ``pipeline(task, ...)``."""
    pipeline_class = getattr(family.model_class, "serving_pipeline", None)
    if pipeline_class is None or pipeline_class.task_name in PIPELINE_REGISTRY.supported_tasks:
        return
    PIPELINE_REGISTRY.register_pipeline(
        pipeline_class.task_name,
        pipeline_class=pipeline_class,
        pt_model=family.auto_model_class,
        type="image",
    )


def register_model_family(family: ModelFamily) -> ModelFamily:
    """Add a model family to the registry and register it with the transformers Auto classes.

    Registering the same record twice is a no-op.

    Returns:
        ``family``, so that a module can keep the record it registered.

    Raises:
        ValueError: another family already has this key or ``model_type``.
    """
    for known in _REGISTRY.values():
        if known == family:
            return known
        if family.key in (known.key, known.model_type) or family.model_type in (
            known.key,
            known.model_type,
        ):
            raise ValueError(
                f"model family {family.key!r} ({family.model_type}) clashes with the registered "
                f"{known.key!r} ({known.model_type})"
            )
    _register_auto_classes(family)
    _register_pipeline(family)
    _REGISTRY[family.key] = family
    return family


def get_model_family(name: str) -> ModelFamily:
    """The registered family whose key or ``model_type`` is ``name``.

    Raises:
        KeyError: no such family; the message lists the known ones.
    """
    for family in _REGISTRY.values():
        if name in (family.key, family.model_type):
            return family
    known = ", ".join(f"{f.key} ({f.model_type})" for f in _REGISTRY.values())
    raise KeyError(f"unknown model {name!r}; registered models: {known}")


def list_models() -> list[str]:
    """The keys of the registered model families, in registration order."""
    return list(_REGISTRY)


def model_families() -> tuple[ModelFamily, ...]:
    """The registered model families, in registration order."""
    return _families()


def _resnet_gradcam_layers(config: PreTrainedConfig) -> dict[str, str]:
    """transformers' ResNet: its last encoder stage."""
    return {"image": f"resnet.encoder.stages.{len(config.depths) - 1}"}


def _build_resnet(
    labels: Sequence[str],
    config_overrides: Mapping[str, Any],
    *,
    pretrained: str | None,
    freeze_backbone: bool,
) -> PreTrainedModel:
    return models.build_resnet_classifier(
        pretrained=pretrained,
        labels=tuple(labels),
        freeze_backbone=freeze_backbone,
        config_overrides=dict(config_overrides) or None,
    )


register_model_family(
    ModelFamily(
        key="dual_input",
        model_type=models.DualInputCNNConfig.model_type,
        display_name="Dual-input CNN (X-ray + CT)",
        config_class=models.DualInputCNNConfig,
        model_class=models.DualInputCNNForImageClassification,
        base_model_class=models.DualInputCNNModel,
        auto_class="AutoModelForImageClassification",
        task="classification",
        dataset_kind="xray_ct",
        input_names=("pixel_values", "ct_pixel_values", "xray_available", "ct_available"),
        target="labels",
        card_summary=(
            "Two convolutional branches, one for a chest X-ray and one for a chest CT slice, "
            "whose pooled features are fused and classified. Trained with "
            "modality dropout it accepts either image alone, and its output (`modalities_used`) "
            "says which images it used."
        ),
        tiny_config=MappingProxyType(
            {"widths": [4, 8], "classifier_hidden_sizes": [8], "fusion_hidden_size": 8}
        ),
        recipes={
            "full": "dual_input",
            "demo": "dual_input_synthetic",
            "study": "dual_input_public",
        },
        onnx_exporter="torchscript",  # torch.export cannot trace its availability check
    )
)
register_model_family(
    ModelFamily(
        key="cnn_lstm",
        model_type=models.CNNLSTMConfig.model_type,
        display_name="CNN + LSTM",
        config_class=models.CNNLSTMConfig,
        model_class=models.CNNLSTMForImageClassification,
        base_model_class=models.CNNLSTMModel,
        auto_class="AutoModelForImageClassification",
        task="classification",
        dataset_kind="radiography",
        input_names=("pixel_values",),
        target="labels",
        card_summary=(
            "A convolutional feature extractor whose last feature map is read row by row, top to "
            "bottom, as a sequence by a (bidirectional) LSTM, whose output is classified."
        ),
        tiny_config=MappingProxyType(
            {
                "widths": [4, 8],
                "sequence_width": 2,
                "lstm_hidden_size": 8,
                "classifier_hidden_sizes": [8],
            }
        ),
        recipes={"full": "cnn_lstm", "demo": "cnn_lstm_synthetic", "study": "cnn_lstm_public"},
        onnx_dynamic_width=False,  # adaptive pooling to a fixed number of columns
    )
)
register_model_family(
    ModelFamily(
        key="dual_channel",
        model_type=models.DualChannelCNNConfig.model_type,
        display_name="Dual-channel CNN (X-ray + lung mask)",
        config_class=models.DualChannelCNNConfig,
        model_class=models.DualChannelCNNForImageClassification,
        base_model_class=models.DualChannelCNNModel,
        auto_class="AutoModelForImageClassification",
        task="classification",
        dataset_kind="radiography",
        input_names=("pixel_values", "lung_mask"),
        target="labels",
        card_summary=(
            "A convolutional network that takes the chest X-ray and its lung mask as two input "
            "channels, so that it can weigh evidence inside the lungs."
        ),
        tiny_config=MappingProxyType({"widths": [4, 8], "classifier_hidden_sizes": [8]}),
        recipes={
            "full": "dual_channel",
            "demo": "dual_channel_synthetic",
            "study": "dual_channel_public",
        },
    )
)
register_model_family(
    ModelFamily(
        key="resnet",
        model_type="resnet",
        display_name="ResNet (transfer learning)",
        config_class=transformers.ResNetConfig,
        model_class=transformers.ResNetForImageClassification,
        auto_class="AutoModelForImageClassification",
        task="classification",
        dataset_kind="radiography",
        input_names=("pixel_values",),
        target="labels",
        card_summary=(
            "A transformers `ResNetForImageClassification` (ImageNet-pretrained backbone when "
            "trained from `microsoft/resnet-50`) fine-tuned on chest X-rays."
        ),
        tiny_config=MappingProxyType(
            {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"}
        ),
        build=_build_resnet,
        processor_options=MappingProxyType(
            {
                "num_channels": 3,
                "do_normalize": True,
                "image_mean": list(IMAGENET_DEFAULT_MEAN),
                "image_std": list(IMAGENET_DEFAULT_STD),
            }
        ),
        recipes={"full": "resnet", "demo": "resnet_synthetic", "study": "resnet_public"},
        gradcam_layers=_resnet_gradcam_layers,
    )
)
register_model_family(
    ModelFamily(
        key="lung_unet",
        model_type=models.LungUNetConfig.model_type,
        display_name="Lung U-Net",
        config_class=models.LungUNetConfig,
        model_class=models.LungUNetForSegmentation,
        base_model_class=models.LungUNetForSegmentation,
        auto_class="AutoModelForSemanticSegmentation",
        task="segmentation",
        dataset_kind="radiography",
        input_names=("pixel_values",),
        target="lung_mask",
        card_summary=(
            "A U-Net that segments the lungs on a chest X-ray (one logit per pixel: lung or "
            "background). Its masks feed the dual-channel classifier and the lung overlays."
        ),
        tiny_config=MappingProxyType({"widths": [4, 8], "convs_per_block": 1}),
        recipes={"full": "lung_unet", "demo": "lung_unet_synthetic", "study": "lung_unet_public"},
    )
)
