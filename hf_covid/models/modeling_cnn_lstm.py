"""CNN + LSTM classifier: the rows of the last feature map, top to bottom, read by a (bi)LSTM."""

import torch
from torch import nn
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.utils.generic import can_return_tuple

from .configuration_cnn_lstm import CNNLSTMConfig
from .layers import ChestPreTrainedModel, ClassifierHead, ConvEncoder, check_image_batch
from .pipeline_chest import ChestImageClassificationPipeline


class CNNLSTMPreTrainedModel(ChestPreTrainedModel):
    config: CNNLSTMConfig
    base_model_prefix = "cnn_lstm"


class CNNLSTMModel(CNNLSTMPreTrainedModel):
    """Conv blocks and the LSTM over feature-map rows, without the classification head."""

    def __init__(self, config: CNNLSTMConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config.num_channels, config.widths)
        self.row_pooler = nn.AdaptiveAvgPool2d((None, config.sequence_width))
        self.lstm = nn.LSTM(
            input_size=config.widths[-1] * config.sequence_width,
            hidden_size=config.lstm_hidden_size,
            num_layers=config.lstm_num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        self.num_directions = 2 if config.bidirectional else 1
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        r"""
        Returns:
            `BaseModelOutputWithPoolingAndNoAttention` whose `last_hidden_state` is the LSTM output
            for every row (batch, rows, lstm_hidden_size * directions), `pooler_output` the sequence
            summary (`config.sequence_pooling`) and `hidden_states` the feature map of every conv
            block.
        """
        output_hidden_states = (
            output_hidden_states
            if output_hidden_states is not None
            else self.config.output_hidden_states
        )
        check_image_batch("pixel_values", pixel_values, self.config.num_channels)
        feature_maps = self.encoder(pixel_values)
        rows = self.row_pooler(feature_maps[-1])
        # (batch, channels, rows, width) -> (batch, rows, channels * width): one step per row.
        sequence = rows.permute(0, 2, 1, 3).flatten(2)
        sequence_output, (last_states, _) = self.lstm(sequence)
        if self.config.sequence_pooling == "mean":
            pooled_output = sequence_output.mean(dim=1)
        else:
            # Final state of each direction of the last layer.
            pooled_output = last_states[-self.num_directions :].transpose(0, 1).flatten(1)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=feature_maps if output_hidden_states else None,
        )


class CNNLSTMForImageClassification(CNNLSTMPreTrainedModel):
    """CNN + LSTM with an MLP head (COVID, Lung_Opacity, Normal, Viral Pneumonia by default).

    Example:
    ```python
    >>> import torch
    >>> from hf_covid.models import CNNLSTMConfig, CNNLSTMForImageClassification

    >>> model = CNNLSTMForImageClassification(CNNLSTMConfig()).eval()
    >>> model(pixel_values=torch.rand(2, 1, 224, 224)).logits.shape
    torch.Size([2, 4])

    ```
    """

    gradcam_target_layers = {"image": "cnn_lstm.encoder.final_feature_map"}
    serving_pipeline = ChestImageClassificationPipeline

    def __init__(self, config: CNNLSTMConfig):
        super().__init__(config)
        self.cnn_lstm = CNNLSTMModel(config)
        self.classifier = ClassifierHead(
            config.lstm_hidden_size * self.cnn_lstm.num_directions,
            config.classifier_hidden_sizes,
            config.num_labels,
            config.classifier_dropout,
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                The chest X-rays.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices for the cross-entropy loss.
        """
        outputs = self.cnn_lstm(
            pixel_values, output_hidden_states=output_hidden_states, return_dict=True
        )
        logits = self.classifier(outputs.pooler_output)
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states
        )


__all__ = ["CNNLSTMForImageClassification", "CNNLSTMModel", "CNNLSTMPreTrainedModel"]
