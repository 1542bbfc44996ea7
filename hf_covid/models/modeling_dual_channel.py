"""Dual-channel classifier: the X-ray and its lung mask stacked as two input channels."""

import torch
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.utils.generic import can_return_tuple

from .configuration_dual_channel import DualChannelCNNConfig
from .layers import (
    ChestPreTrainedModel,
    ClassifierHead,
    ConvEncoder,
    check_image_batch,
    global_average_pool,
)
from .pipeline_chest import ChestImageClassificationPipeline


class DualChannelCNNPreTrainedModel(ChestPreTrainedModel):
    config: DualChannelCNNConfig
    base_model_prefix = "dual_channel"


class DualChannelCNNModel(DualChannelCNNPreTrainedModel):
    """Conv blocks over the X-ray and lung-mask channels, without the classification head."""

    def __init__(self, config: DualChannelCNNConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config.num_channels + 1, config.widths)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        lung_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                The chest X-rays.
            lung_mask (`torch.FloatTensor` of shape `(batch_size, 1, height, width)`):
                Lung masks in [0, 1], the same size as the X-rays. Required; it is optional in the
                signature only so that a missing mask gets a helpful error.
        """
        output_hidden_states = (
            output_hidden_states
            if output_hidden_states is not None
            else self.config.output_hidden_states
        )
        check_image_batch("pixel_values", pixel_values, self.config.num_channels)
        if lung_mask is None:
            raise ValueError(
                f"{type(self).__name__} needs lung_mask (batch, 1, height, width) beside "
                "pixel_values: pass the dataset's lung mask, or predict one from the X-ray with "
                "LungUNetForSegmentation.predict_mask(pixel_values)"
            )
        check_image_batch("lung_mask", lung_mask, 1)
        if (
            lung_mask.shape[0] != pixel_values.shape[0]
            or lung_mask.shape[2:] != pixel_values.shape[2:]
        ):
            raise ValueError(
                f"lung_mask has shape {tuple(lung_mask.shape)} but pixel_values has "
                f"{tuple(pixel_values.shape)}; they need the same batch size, height and width"
            )
        feature_maps = self.encoder(
            torch.cat([pixel_values, lung_mask.to(pixel_values.dtype)], dim=1)
        )
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=feature_maps[-1],
            pooler_output=global_average_pool(feature_maps[-1]),
            hidden_states=feature_maps if output_hidden_states else None,
        )


class DualChannelCNNForImageClassification(DualChannelCNNPreTrainedModel):
    """Dual-channel CNN with an MLP head (COVID, Lung_Opacity, Normal, Viral Pneumonia by default).

    At inference the lung mask comes from the dataset when it has one (the COVID-19 Radiography
    Database ships masks); for an X-ray alone, predict it with the lung U-Net:
    `LungUNetForSegmentation.predict_mask(pixel_values)` returns the (batch, 1, height, width) 0/1
    mask this model expects (resize it to the X-ray if the U-Net ran at another size).

    Example:
    ```python
    >>> import torch
    >>> from hf_covid.models import DualChannelCNNConfig, DualChannelCNNForImageClassification
    >>> from hf_covid.models import LungUNetConfig, LungUNetForSegmentation

    >>> segmenter = LungUNetForSegmentation(LungUNetConfig()).eval()
    >>> model = DualChannelCNNForImageClassification(DualChannelCNNConfig()).eval()
    >>> xray = torch.rand(2, 1, 224, 224)
    >>> model(pixel_values=xray, lung_mask=segmenter.predict_mask(xray)).logits.shape
    torch.Size([2, 4])

    ```
    """

    gradcam_target_layers = {"image": "dual_channel.encoder.final_feature_map"}
    serving_pipeline = ChestImageClassificationPipeline

    def __init__(self, config: DualChannelCNNConfig):
        super().__init__(config)
        self.dual_channel = DualChannelCNNModel(config)
        self.classifier = ClassifierHead(
            config.widths[-1],
            config.classifier_hidden_sizes,
            config.num_labels,
            config.classifier_dropout,
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        lung_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention:
        r"""
        Args:
            pixel_values, lung_mask:
                See [`DualChannelCNNModel.forward`]; the mask is required.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices for the cross-entropy loss.
        """
        outputs = self.dual_channel(
            pixel_values, lung_mask, output_hidden_states=output_hidden_states, return_dict=True
        )
        logits = self.classifier(outputs.pooler_output)
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states
        )


__all__ = [
    "DualChannelCNNForImageClassification",
    "DualChannelCNNModel",
    "DualChannelCNNPreTrainedModel",
]
