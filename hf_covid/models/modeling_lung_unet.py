"""A small U-Net that segments the lungs of a chest X-ray (Dice + binary cross-entropy loss).

Trained on the lung masks of the COVID-19 Radiography Database, it gives the dual-channel classifier
its mask when a user has only an X-ray (`predict_mask`).
"""

from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.utils.generic import can_return_tuple

from .configuration_lung_unet import LungUNetConfig
from .layers import ChestPreTrainedModel, ConvBlock, check_image_batch


def dice_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Weighted sum of the soft Dice loss (mean over images) and binary cross-entropy on logits."""
    bce = functional.binary_cross_entropy_with_logits(logits, target)
    probabilities = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    overlap = (probabilities * target).sum(dim=1)
    dice = (2 * overlap + smooth) / (probabilities.sum(dim=1) + target.sum(dim=1) + smooth)
    return bce_weight * bce + dice_weight * (1 - dice).mean()


class LungUNetPreTrainedModel(ChestPreTrainedModel):
    # No separate base model: the U-Net is one module (base_model_prefix stays "").
    config: LungUNetConfig


class LungUNetForSegmentation(LungUNetPreTrainedModel):
    """U-Net: `ConvBlock` levels down to a bottleneck, bilinear upsampling with skip connections
    back up, and a 1x1 convolution to one lung logit per pixel.

    Example:
    ```python
    >>> import torch
    >>> from hf_covid.models import LungUNetConfig, LungUNetForSegmentation

    >>> model = LungUNetForSegmentation(LungUNetConfig()).eval()
    >>> model.predict_mask(torch.rand(2, 1, 224, 224)).shape
    torch.Size([2, 1, 224, 224])

    ```
    """

    def __init__(self, config: LungUNetConfig):
        super().__init__(config)
        widths = config.widths
        channels = [config.num_channels, *widths]
        self.encoder_blocks = nn.ModuleList(
            ConvBlock(block_in, block_out, num_convs=config.convs_per_block, pool=False)
            for block_in, block_out in pairwise(channels)
        )
        # Deepest first: upsampled features (widths[i + 1]) concatenated with the skip (widths[i]).
        self.decoder_blocks = nn.ModuleList(
            ConvBlock(
                widths[index + 1] + widths[index],
                widths[index],
                num_convs=config.convs_per_block,
                pool=False,
            )
            for index in reversed(range(len(widths) - 1))
        )
        self.segmentation_head = nn.Conv2d(widths[0], 1, kernel_size=1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SemanticSegmenterOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                The chest X-rays.
            labels (`torch.Tensor`, *optional*):
                Lung masks (1 = lung) for the Dice + binary cross-entropy loss: class indices
                `(batch_size, height, width)` or floats `(batch_size, 1, height, width)`.

        Returns:
            `SemanticSegmenterOutput` with `logits` (batch, 1, height, width), the lung logit of
            every pixel (sigmoid for the probability), and `hidden_states`, the feature map of every
            encoder level then every decoder level.
        """
        output_hidden_states = (
            output_hidden_states
            if output_hidden_states is not None
            else self.config.output_hidden_states
        )
        check_image_batch("pixel_values", pixel_values, self.config.num_channels)
        skips = []
        hidden_state = pixel_values
        for level, block in enumerate(self.encoder_blocks):
            if level > 0:
                hidden_state = functional.max_pool2d(hidden_state, kernel_size=2)
            hidden_state = block(hidden_state)
            skips.append(hidden_state)
        decoder_maps = []
        for block, skip in zip(self.decoder_blocks, reversed(skips[:-1]), strict=True):
            # Resize to the skip (not a plain 2x) so that odd image sizes work.
            hidden_state = functional.interpolate(
                hidden_state, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
            hidden_state = block(torch.cat([hidden_state, skip], dim=1))
            decoder_maps.append(hidden_state)
        logits = self.segmentation_head(hidden_state)

        loss = None
        if labels is not None:
            loss = dice_bce_loss(
                logits,
                self._mask_target(labels, logits),
                dice_weight=self.config.dice_weight,
                bce_weight=self.config.bce_weight,
            )
        return SemanticSegmenterOutput(
            loss=loss,
            logits=logits,
            hidden_states=(*skips, *decoder_maps) if output_hidden_states else None,
        )

    @staticmethod
    def _mask_target(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(batch, height, width) indices or (batch, 1, height, width) masks -> float, as logits."""
        target = labels.unsqueeze(1) if labels.ndim == 3 else labels
        if target.shape != logits.shape:
            raise ValueError(
                f"labels must have shape {(logits.shape[0], *logits.shape[2:])} or "
                f"{tuple(logits.shape)}, the size of pixel_values, got {tuple(labels.shape)}"
            )
        return target.to(logits.dtype)

    @torch.no_grad()
    def predict_mask(
        self, pixel_values: torch.Tensor, threshold: float | None = None
    ) -> torch.Tensor:
        """Binary lung masks (batch, 1, height, width) of float 0/1 for `pixel_values`.

        Args:
            pixel_values: X-rays (batch, num_channels, height, width), preprocessed as in training.
            threshold: Lung probability above which a pixel is lung (`config.mask_threshold` by
                default).

        Call `model.eval()` first when the model is not already in evaluation mode
        (`from_pretrained` returns it so).
        """
        threshold = self.config.mask_threshold if threshold is None else threshold
        probabilities = torch.sigmoid(self(pixel_values=pixel_values, return_dict=True).logits)
        return (probabilities > threshold).to(pixel_values.dtype)


__all__ = ["LungUNetForSegmentation", "LungUNetPreTrainedModel", "dice_bce_loss"]
