"""Configuration of the dual-channel (X-ray + lung mask) classifier."""

from huggingface_hub.dataclasses import strict

from .configuration_common import ChestClassifierConfig


@strict
class DualChannelCNNConfig(ChestClassifierConfig):
    r"""
    Configuration of [`DualChannelCNNForImageClassification`]: the X-ray and its lung mask stacked
    as channels into conv blocks, then an MLP head (4 classes by default).

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of `pixel_values`; the network sees `num_channels + 1` channels with the mask.
        widths (`list[int]`, *optional*, defaults to `(32, 64, 128, 256)`):
            Channels of the conv / batch-norm / ReLU / max-pool blocks.
        classifier_hidden_sizes (`list[int]`, *optional*, defaults to `(128,)`):
            Hidden layer sizes of the classification head.
        classifier_dropout (`float`, *optional*, defaults to 0.3):
            Dropout probability of the head.
        lung_segmenter (`str`, *optional*):
            Hub id (or folder) of the lung U-Net whose masks the model's pipeline uses when an
            X-ray comes without a mask.
    """

    model_type = "covid_dual_channel"

    lung_segmenter: str | None = None


__all__ = ["DualChannelCNNConfig"]
