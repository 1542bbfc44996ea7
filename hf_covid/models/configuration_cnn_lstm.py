"""Configuration of the CNN + LSTM classifier."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict

from .configuration_common import ChestClassifierConfig


@strict
class CNNLSTMConfig(ChestClassifierConfig):
    r"""
    Configuration of [`CNNLSTMForImageClassification`]: conv blocks, then the rows of the last
    feature map read top to bottom as a sequence by a (bidirectional) LSTM, then an MLP head (4
    classes by default).

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of `pixel_values` (grayscale X-ray).
        widths (`list[int]`, *optional*, defaults to `(32, 64, 128, 256)`):
            Channels of the conv / batch-norm / ReLU / max-pool blocks.
        sequence_width (`int`, *optional*, defaults to 7):
            Width the last feature map is average-pooled to before its rows become the sequence, so
            that each step has `widths[-1] * sequence_width` features whatever the image width.
        lstm_hidden_size (`int`, *optional*, defaults to 128):
            Hidden size of the LSTM (per direction).
        lstm_num_layers (`int`, *optional*, defaults to 1):
            Stacked LSTM layers.
        bidirectional (`bool`, *optional*, defaults to `True`):
            Read the rows top-down and bottom-up.
        sequence_pooling (`str`, *optional*, defaults to `"last"`):
            `"last"`: the final hidden state of each direction; `"mean"`: the mean LSTM output over
            rows.
        classifier_hidden_sizes (`list[int]`, *optional*, defaults to `(128,)`):
            Hidden layer sizes of the classification head.
        classifier_dropout (`float`, *optional*, defaults to 0.3):
            Dropout probability of the head.
    """

    model_type = "covid_cnn_lstm"
    sequence_pooling_types: ClassVar[tuple[str, ...]] = ("last", "mean")

    sequence_width: int = 7
    lstm_hidden_size: int = 128
    lstm_num_layers: int = 1
    bidirectional: bool = True
    sequence_pooling: str = "last"

    def validate_sequence_model(self):
        sizes = {
            "sequence_width": self.sequence_width,
            "lstm_hidden_size": self.lstm_hidden_size,
            "lstm_num_layers": self.lstm_num_layers,
        }
        if any(value < 1 for value in sizes.values()):
            raise ValueError(f"CNNLSTMConfig sizes must be positive, got {sizes}")
        if self.sequence_pooling not in self.sequence_pooling_types:
            raise ValueError(
                f"CNNLSTMConfig.sequence_pooling must be one of {self.sequence_pooling_types}, "
                f"got {self.sequence_pooling!r}"
            )


__all__ = ["CNNLSTMConfig"]
