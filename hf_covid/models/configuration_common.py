"""Configuration fields and checks shared by every hf_covid model.

Kept beside the configuration files (imported as ``from .configuration_common import ...``) so that
remote code (``trust_remote_code=True``) copies it with them.
"""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .labels import RADIOGRAPHY_LABELS, label_maps

__all__ = ["ChestClassifierConfig", "ChestModelConfig", "check_probability"]


@strict
class ChestModelConfig(PreTrainedConfig):
    r"""
    Fields every hf_covid CNN shares; not a model of its own.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of `pixel_values` (1 for grayscale X-ray or CT).
        widths (`list[int]`, *optional*, defaults to `(32, 64, 128, 256)`):
            Output channels of each convolution block; one block per entry.
        id2label (`dict[int, str]`, *optional*):
            Class names by index. Defaults to the model's `default_labels` (see
            `hf_covid.models.labels`).
        label2id (`dict[str, int]`, *optional*):
            Inverse of `id2label`; derived from it when omitted.
    """

    default_labels: ClassVar[tuple[str, ...]] = RADIOGRAPHY_LABELS

    num_channels: int = 1
    widths: list[int] | tuple[int, ...] = (32, 64, 128, 256)

    def __post_init__(self, **kwargs):
        self.widths = list(self.widths)
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label, self.label2id = label_maps(self.default_labels)
        elif self.id2label is not None and self.label2id is None:
            self.label2id = {name: int(index) for index, name in self.id2label.items()}
        super().__post_init__(**kwargs)

    def validate_num_channels(self):
        if self.num_channels < 1:
            raise ValueError(
                f"{type(self).__name__}.num_channels must be >= 1, got {self.num_channels}"
            )

    def validate_widths(self):
        if not self.widths or any(width < 1 for width in self.widths):
            raise ValueError(
                f"{type(self).__name__}.widths must be a non-empty list of positive channel "
                f"counts, got {self.widths}"
            )

    def validate_label_maps(self):
        indices = sorted(self.id2label)
        if indices != list(range(len(indices))):
            raise ValueError(
                f"{type(self).__name__}.id2label must be indexed 0..{len(indices) - 1}, "
                f"got keys {indices}"
            )
        expected = {name: index for index, name in self.id2label.items()}
        if len(expected) != len(self.id2label):
            raise ValueError(
                f"{type(self).__name__}.id2label names must be unique, got {self.id2label}"
            )
        if self.label2id != expected:
            raise ValueError(
                f"{type(self).__name__}.label2id {self.label2id} does not invert id2label "
                f"{self.id2label}; expected {expected}"
            )


@strict
class ChestClassifierConfig(ChestModelConfig):
    r"""
    Fields of the hf_covid classifiers: a `ChestModelConfig` plus the MLP head.

    Args:
        classifier_hidden_sizes (`list[int]`, *optional*, defaults to `(128,)`):
            Hidden layer sizes of the classification head; empty for a single linear layer.
        classifier_dropout (`float`, *optional*, defaults to 0.3):
            Dropout probability before every linear layer of the head.
    """

    classifier_hidden_sizes: list[int] | tuple[int, ...] = (128,)
    classifier_dropout: float | int = 0.3

    def __post_init__(self, **kwargs):
        self.classifier_hidden_sizes = list(self.classifier_hidden_sizes)
        super().__post_init__(**kwargs)

    def validate_classifier(self):
        if any(size < 1 for size in self.classifier_hidden_sizes):
            raise ValueError(
                f"{type(self).__name__}.classifier_hidden_sizes must be positive, "
                f"got {self.classifier_hidden_sizes}"
            )
        check_probability(self, "classifier_dropout", include_one=False)


def check_probability(config: PreTrainedConfig, field: str, *, include_one: bool = True) -> None:
    """Raise a `ValueError` naming the config and `field` unless it is a probability."""
    value = getattr(config, field)
    upper_ok = value <= 1 if include_one else value < 1
    if not (value >= 0 and upper_ok):
        interval = "[0, 1]" if include_one else "[0, 1)"
        raise ValueError(f"{type(config).__name__}.{field} must be in {interval}, got {value}")
