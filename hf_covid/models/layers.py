"""Building blocks shared by every hf_covid model.

One conv block, one encoder (a stack of blocks returning every feature map), a wrapper that makes
any transformers `AutoBackbone` look like that encoder, the fusion heads of the dual-input model,
the MLP classification head, and the `PreTrainedModel` base that owns weight initialisation. The
modeling files import these with ``from .layers import ...`` so that remote code copies this file
beside them.
"""

import math
import os
from itertools import pairwise
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import CONFIG_MAPPING, MODEL_FOR_BACKBONE_MAPPING, PreTrainedModel
from transformers import initialization as init

__all__ = [
    "AttentionFusion",
    "BackboneEncoder",
    "ChestPreTrainedModel",
    "ClassifierHead",
    "ConcatFusion",
    "ConvBlock",
    "ConvEncoder",
    "GatedFusion",
    "build_fusion",
    "check_image_batch",
    "global_average_pool",
]


class ConvBlock(nn.Module):
    """`num_convs` x (3x3 convolution, batch norm, ReLU), then a 2x2 max-pool when `pool`."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int = 1, pool: bool = True):
        super().__init__()
        layers = []
        for index in range(num_convs):
            layers += [
                nn.Conv2d(
                    in_channels if index == 0 else out_channels,
                    out_channels,
                    kernel_size=3,
                    padding=1,
                    bias=False,
                ),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            ]
        self.convolutions = nn.Sequential(*layers)
        self.pooler = nn.MaxPool2d(kernel_size=2) if pool else nn.Identity()

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.pooler(self.convolutions(hidden_state))


class ConvEncoder(nn.Module):
    """Pooled `ConvBlock`s, one per entry of `widths`; returns the feature map of every block.

    `final_feature_map` is an identity whose output is the last block's feature map: Grad-CAM and
    the feature-map plots hook it by name, whatever the depth.
    """

    def __init__(self, in_channels: int, widths: list[int]):
        super().__init__()
        channels = [in_channels, *widths]
        self.blocks = nn.ModuleList(
            ConvBlock(block_in, block_out) for block_in, block_out in pairwise(channels)
        )
        self.final_feature_map = nn.Identity()
        self.out_channels = widths[-1]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feature_maps = []
        hidden_state = pixel_values
        for block in self.blocks:
            hidden_state = block(hidden_state)
            feature_maps.append(hidden_state)
        feature_maps[-1] = self.final_feature_map(feature_maps[-1])
        return tuple(feature_maps)


class BackboneEncoder(nn.Module):
    """Any transformers `AutoBackbone` with the `ConvEncoder` interface: every stage's feature map.

    Args:
        num_channels: Channels of the images it receives; grayscale images are repeated to the
            backbone's channel count (3 for ImageNet checkpoints).
        backbone_config: The backbone's configuration as a dict with `model_type`.
        pretrained: Hub id or folder whose weights the backbone starts from. They are loaded
            when the model is built directly; `from_pretrained` of a saved model builds it empty
            (on the meta device) and loads the fine-tuned weights from the checkpoint instead.
    """

    def __init__(
        self, num_channels: int, backbone_config: dict, pretrained: str | None = None
    ) -> None:
        super().__init__()
        config = CONFIG_MAPPING[backbone_config["model_type"]].from_dict(backbone_config)
        # Every stage after the stem, so that the feature maps match ConvEncoder's (one per block).
        config.out_features = config.stage_names[1:]
        # The concrete class: AutoBackbone.from_pretrained asks the Hub first (fails on folders).
        backbone_class = MODEL_FOR_BACKBONE_MAPPING[type(config)]
        if pretrained is not None and torch.empty(0).device.type != "meta":
            # from_pretrained returns eval mode; a new module starts in training mode like the rest.
            self.backbone = backbone_class.from_pretrained(pretrained, config=config).train()
        else:
            self.backbone = backbone_class(config)
        self.backbone_channels = config.num_channels
        self.num_channels = num_channels
        self.final_feature_map = nn.Identity()
        self.out_channels = self.backbone.channels[-1]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.num_channels == 1 and self.backbone_channels != 1:
            pixel_values = pixel_values.expand(-1, self.backbone_channels, -1, -1)
        feature_maps = list(self.backbone(pixel_values, return_dict=True).feature_maps)
        feature_maps[-1] = self.final_feature_map(feature_maps[-1])
        return tuple(feature_maps)


class ConcatFusion(nn.Module):
    """Concatenates the X-ray and CT feature vectors (the original design).

    A missing modality is replaced by a learned "missing" vector, so the head always sees
    `2 * feature_size` features.
    """

    def __init__(self, feature_size: int):
        super().__init__()
        self.missing_features = nn.Parameter(torch.zeros(2, feature_size))
        self.out_features = 2 * feature_size

    def forward(self, features: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Fuse `features` (batch, 2, feature_size) given `available` (batch, 2) bool."""
        missing = self.missing_features.to(features.dtype).expand_as(features)
        return torch.where(available[..., None], features, missing).flatten(1)


class AttentionFusion(nn.Module):
    """Cross-modal attention over the two modality tokens; missing modalities are masked out.

    Each feature vector is projected to `hidden_size` and tagged with a learned modality embedding;
    the two tokens attend to each other (a missing one is excluded as a key), and the available
    tokens are averaged.
    """

    def __init__(self, feature_size: int, hidden_size: int, num_heads: int):
        super().__init__()
        self.projections = nn.ModuleList(nn.Linear(feature_size, hidden_size) for _ in range(2))
        self.modality_embeddings = nn.Parameter(torch.zeros(2, hidden_size))
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(hidden_size)
        self.out_features = hidden_size

    def forward(self, features: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Fuse `features` (batch, 2, feature_size) given `available` (batch, 2) bool."""
        tokens = torch.stack(
            [projection(features[:, index]) for index, projection in enumerate(self.projections)],
            dim=1,
        )
        tokens = tokens + self.modality_embeddings
        attended, _ = self.attention(
            tokens, tokens, tokens, key_padding_mask=~available, need_weights=False
        )
        tokens = self.layernorm(tokens + attended)
        weights = available.to(tokens.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True)
        return (tokens * weights[..., None]).sum(dim=1)


class GatedFusion(nn.Module):
    """Gated multimodal unit (Arevalo et al., 2017): `z * tanh(W_x x) + (1 - z) * tanh(W_c c)`.

    The gate `z` is computed from both feature vectors; when one modality is missing the gate is
    fixed to the other, so its features never reach the output.
    """

    def __init__(self, feature_size: int, hidden_size: int):
        super().__init__()
        self.projections = nn.ModuleList(nn.Linear(feature_size, hidden_size) for _ in range(2))
        self.gate = nn.Linear(2 * feature_size, hidden_size)
        self.out_features = hidden_size

    def forward(self, features: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Fuse `features` (batch, 2, feature_size) given `available` (batch, 2) bool."""
        xray = torch.tanh(self.projections[0](features[:, 0]))
        ct = torch.tanh(self.projections[1](features[:, 1]))
        gate = torch.sigmoid(self.gate(features.flatten(1)))
        gate = torch.where(available[:, 1:], gate, torch.ones_like(gate))
        gate = torch.where(available[:, :1], gate, torch.zeros_like(gate))
        return gate * xray + (1 - gate) * ct


def build_fusion(fusion: str, feature_size: int, hidden_size: int, num_heads: int) -> nn.Module:
    """Return the fusion head named `fusion` ("concat", "attention" or "gated")."""
    if fusion == "concat":
        return ConcatFusion(feature_size)
    if fusion == "attention":
        return AttentionFusion(feature_size, hidden_size, num_heads)
    if fusion == "gated":
        return GatedFusion(feature_size, hidden_size)
    raise ValueError(f"unknown fusion {fusion!r}; expected 'concat', 'attention' or 'gated'")


class ClassifierHead(nn.Module):
    """MLP head: (dropout, linear, ReLU) per hidden size, then dropout, linear to the logits."""

    def __init__(self, in_features: int, hidden_sizes: list[int], num_labels: int, dropout: float):
        super().__init__()
        layers = []
        for size in hidden_sizes:
            layers += [nn.Dropout(dropout), nn.Linear(in_features, size), nn.ReLU()]
            in_features = size
        layers += [nn.Dropout(dropout), nn.Linear(in_features, num_labels)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def global_average_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """(batch, channels, height, width) -> (batch, channels)."""
    return feature_map.mean(dim=(-2, -1))


def check_image_batch(name: str, images: torch.Tensor, num_channels: int) -> None:
    """Raise a `ValueError` unless `images` is a (batch, num_channels, height, width) tensor."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != num_channels:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"{name} must be a tensor of shape (batch, {num_channels}, height, width), got {shape}"
        )


def _remote_code_reference(cls: type) -> str:
    """``"module.Class"``, as ``auto_map`` and ``custom_pipelines`` name a class of a checkpoint."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


class ChestPreTrainedModel(PreTrainedModel):
    """Weight initialisation and conventions shared by every hf_covid model."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ConvBlock"]
    serving_pipeline: ClassVar[type | None] = None
    """The pipeline class that serves this model (the classifiers': ``pipeline_chest``)."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """``PreTrainedModel.save_pretrained``; for a model registered for remote code, also the
        ``AutoModel`` entry of ``auto_map`` (the bare model) and the serving pipeline in
        ``custom_pipelines``, so that both load with ``trust_remote_code=True``."""
        if self._auto_class is not None:
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": _remote_code_reference(type(self.base_model)),
            }
            if self.serving_pipeline is not None:
                self.config.custom_pipelines = {
                    self.serving_pipeline.task_name: {
                        "impl": _remote_code_reference(self.serving_pipeline),
                        "pt": [self._auto_class],
                        "type": "image",
                    }
                }
        super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The default covers batch/layer norms (and their running statistics), LSTMs and attention.
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            # torch's own default for linear layers, as in transformers' ResNet.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, ConcatFusion):
            init.zeros_(module.missing_features)
        elif isinstance(module, AttentionFusion):
            init.normal_(module.modality_embeddings, std=0.02)
