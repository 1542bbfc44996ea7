"""Configuration of the dual-input (X-ray + CT) classifier."""

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig

from .configuration_common import ChestClassifierConfig, check_probability
from .labels import BINARY_LABELS


@strict
class DualInputCNNConfig(ChestClassifierConfig):
    r"""
    Configuration of [`DualInputCNNForImageClassification`]: an X-ray branch and a CT branch whose
    feature vectors are fused and classified COVID / Non-COVID.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of both images.
        widths (`list[int]`, *optional*, defaults to `(32, 64, 128, 256)`):
            Channels of the conv / batch-norm / ReLU / max-pool blocks of each branch
            (`backbone="cnn"`).
        backbone (`str`, *optional*, defaults to `"cnn"`):
            `"cnn"` for the conv blocks above, `"transformers"` for any transformers `AutoBackbone`
            (for example a ResNet) described by `backbone_config` or `backbone_pretrained`.
        backbone_config (`dict`, *optional*):
            Configuration of the transformers backbone (a `PreTrainedConfig` or its `to_dict()`,
            with `model_type`). Read from `backbone_pretrained` when omitted.
        backbone_pretrained (`str`, *optional*):
            Hub id or local folder of a transformers checkpoint whose weights both branches start
            from, for example `"microsoft/resnet-18"`. A 3-channel backbone receives grayscale
            images repeated three times.
        fusion (`str`, *optional*, defaults to `"concat"`):
            How the two feature vectors are combined: `"concat"` (the original design),
            `"attention"` (attention across the two modality tokens) or `"gated"` (a gated
            multimodal unit).
        fusion_hidden_size (`int`, *optional*, defaults to 256):
            Size each modality is projected to by the `"attention"` and `"gated"` fusions.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of the `"attention"` fusion; must divide `fusion_hidden_size`.
        modality_dropout (`float`, *optional*, defaults to 0.2):
            In training mode, the probability that a sample with both images loses one of them
            (X-ray or CT, with equal chance; never both), so that the model learns to classify
            either alone.
        classifier_hidden_sizes (`list[int]`, *optional*, defaults to `(128,)`):
            Hidden layer sizes of the classification head.
        classifier_dropout (`float`, *optional*, defaults to 0.3):
            Dropout probability of the head.

    Example:
    ```python
    >>> from hf_covid.models import DualInputCNNConfig, DualInputCNNForImageClassification

    >>> config = DualInputCNNConfig(fusion="attention")
    >>> model = DualInputCNNForImageClassification(config)

    ```
    """

    model_type = "covid_dual_input"
    default_labels: ClassVar[tuple[str, ...]] = BINARY_LABELS
    backbone_types: ClassVar[tuple[str, ...]] = ("cnn", "transformers")
    fusion_types: ClassVar[tuple[str, ...]] = ("concat", "attention", "gated")

    backbone: str = "cnn"
    backbone_config: dict[str, Any] | PreTrainedConfig | None = None
    backbone_pretrained: str | None = None
    fusion: str = "concat"
    fusion_hidden_size: int = 256
    num_attention_heads: int = 4
    modality_dropout: float | int = 0.2

    def __post_init__(self, **kwargs):
        if isinstance(self.backbone_config, PreTrainedConfig):
            self.backbone_config = self.backbone_config.to_dict()
        if (
            self.backbone == "transformers"
            and self.backbone_config is None
            and self.backbone_pretrained is not None
        ):
            self.backbone_config = AutoConfig.from_pretrained(self.backbone_pretrained).to_dict()
        super().__post_init__(**kwargs)

    def validate_backbone(self):
        if self.backbone not in self.backbone_types:
            raise ValueError(
                f"DualInputCNNConfig.backbone must be one of {self.backbone_types}, "
                f"got {self.backbone!r}"
            )
        if self.backbone == "cnn":
            return
        if self.backbone_config is None or "model_type" not in self.backbone_config:
            raise ValueError(
                "DualInputCNNConfig with backbone='transformers' needs backbone_config (a "
                "transformers config or dict with 'model_type') or backbone_pretrained (a Hub id)"
            )
        backbone_channels = self.backbone_config.get("num_channels", 3)
        if self.num_channels not in (1, backbone_channels):
            raise ValueError(
                f"DualInputCNNConfig.num_channels={self.num_channels} does not fit a backbone with "
                f"{backbone_channels} input channels (use 1 or {backbone_channels})"
            )

    def validate_fusion(self):
        if self.fusion not in self.fusion_types:
            raise ValueError(
                f"DualInputCNNConfig.fusion must be one of {self.fusion_types}, got {self.fusion!r}"
            )
        if self.fusion_hidden_size < 1 or self.num_attention_heads < 1:
            raise ValueError(
                "DualInputCNNConfig.fusion_hidden_size and num_attention_heads must be positive, "
                f"got {self.fusion_hidden_size} and {self.num_attention_heads}"
            )
        if self.fusion == "attention" and self.fusion_hidden_size % self.num_attention_heads:
            raise ValueError(
                f"DualInputCNNConfig.num_attention_heads={self.num_attention_heads} must divide "
                f"fusion_hidden_size={self.fusion_hidden_size}"
            )
        check_probability(self, "modality_dropout")


__all__ = ["DualInputCNNConfig"]
