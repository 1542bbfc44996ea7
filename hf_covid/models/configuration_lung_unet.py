"""Configuration of the lung segmentation U-Net."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict

from .configuration_common import ChestModelConfig, check_probability
from .labels import LUNG_MASK_LABELS


@strict
class LungUNetConfig(ChestModelConfig):
    r"""
    Configuration of [`LungUNetForSegmentation`], a small U-Net that predicts the lung mask of an
    X-ray.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of `pixel_values`.
        widths (`list[int]`, *optional*, defaults to `(16, 32, 64, 128, 256)`):
            Channels of each resolution level, the last one being the bottleneck; the image is
            halved `len(widths) - 1` times.
        convs_per_block (`int`, *optional*, defaults to 2):
            Convolutions (each with batch norm and ReLU) per level.
        dice_weight (`float`, *optional*, defaults to 1.0):
            Weight of the soft Dice loss.
        bce_weight (`float`, *optional*, defaults to 1.0):
            Weight of the binary cross-entropy loss.
        mask_threshold (`float`, *optional*, defaults to 0.5):
            Probability above which `predict_mask` marks a pixel as lung.
        id2label (`dict[int, str]`, *optional*):
            The two mask classes, background and lung (default `LUNG_MASK_LABELS`). The model
            predicts one logit channel: the lung probability after a sigmoid.
    """

    model_type = "covid_lung_unet"
    default_labels: ClassVar[tuple[str, ...]] = LUNG_MASK_LABELS

    widths: list[int] | tuple[int, ...] = (16, 32, 64, 128, 256)
    convs_per_block: int = 2
    dice_weight: float | int = 1.0
    bce_weight: float | int = 1.0
    mask_threshold: float | int = 0.5

    def validate_segmentation(self):
        if len(self.id2label) != 2:
            raise ValueError(
                "LungUNetConfig.id2label must name exactly two classes (background, lung), "
                f"got {self.id2label}"
            )
        if self.convs_per_block < 1:
            raise ValueError(
                f"LungUNetConfig.convs_per_block must be >= 1, got {self.convs_per_block}"
            )
        if self.dice_weight < 0 or self.bce_weight < 0 or self.dice_weight + self.bce_weight == 0:
            raise ValueError(
                "LungUNetConfig.dice_weight and bce_weight must be >= 0 and not both 0, got "
                f"{self.dice_weight} and {self.bce_weight}"
            )
        check_probability(self, "mask_threshold")


__all__ = ["LungUNetConfig"]
