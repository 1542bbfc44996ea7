"""Transfer learning with transformers' own `ResNetForImageClassification`."""

from collections.abc import Sequence
from typing import Any

from transformers import ResNetConfig, ResNetForImageClassification

from .labels import RADIOGRAPHY_LABELS, label_maps


def build_resnet_classifier(
    pretrained: str | None = "microsoft/resnet-50",
    labels: Sequence[str] = RADIOGRAPHY_LABELS,
    freeze_backbone: bool = False,
    config_overrides: dict[str, Any] | None = None,
) -> ResNetForImageClassification:
    """Build a ResNet classifier for `labels`, from pretrained weights or from a config.

    Args:
        pretrained: Hub id or folder of a ResNet checkpoint (ImageNet weights by default). Its
            backbone is loaded and a new head for `labels` is initialised
            (`ignore_mismatched_sizes`). `None` builds a randomly initialised model from
            `ResNetConfig` instead.
        labels: Class names, in index order.
        freeze_backbone: Freeze everything but the head (feature extraction); unfreeze later with
            `set_backbone_trainable(model, True)` to fine-tune.
        config_overrides: Extra `ResNetConfig` fields, e.g. a tiny test network:
            `{"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}`.

    Returns:
        The `ResNetForImageClassification`, with `id2label` / `label2id` set. It takes 3-channel
        images (`ChestImageProcessor(num_channels=3)` repeats grayscale X-rays).

    Example:
    ```python
    >>> from hf_covid.models import build_resnet_classifier, set_backbone_trainable

    >>> # Feature extraction first, then fine-tuning:
    >>> model = build_resnet_classifier("microsoft/resnet-50", freeze_backbone=True)
    >>> set_backbone_trainable(model, True)

    ```
    """
    id2label, label2id = label_maps(tuple(labels))
    overrides = dict(config_overrides or {})
    if pretrained is None:
        config = ResNetConfig(id2label=id2label, label2id=label2id, **overrides)
        model = ResNetForImageClassification(config)
    else:
        model = ResNetForImageClassification.from_pretrained(
            pretrained,
            id2label=id2label,
            label2id=label2id,
            ignore_mismatched_sizes=True,
            **overrides,
        )
    set_backbone_trainable(model, not freeze_backbone)
    return model


def set_backbone_trainable(model: ResNetForImageClassification, trainable: bool) -> None:
    """Freeze (feature extraction) or unfreeze (fine-tuning) the backbone; the head trains."""
    model.resnet.requires_grad_(trainable)
    model.classifier.requires_grad_(True)


__all__ = ["build_resnet_classifier", "set_backbone_trainable"]
