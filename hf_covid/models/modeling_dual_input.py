"""Dual-input classifier: an X-ray branch and a CT branch, fused, then COVID / Non-COVID.

Either image may be missing, for the whole batch (pass `None`) or per sample (`xray_available` /
`ct_available`); trained with modality dropout, the model classifies the X-ray alone, the CT alone
or both, and its output says which inputs it used.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.utils.generic import can_return_tuple

from .configuration_dual_input import DualInputCNNConfig
from .layers import (
    BackboneEncoder,
    ChestPreTrainedModel,
    ClassifierHead,
    ConvEncoder,
    build_fusion,
    check_image_batch,
    global_average_pool,
)
from .pipeline_chest import ChestImageClassificationPipeline


@dataclass
class DualInputModelOutput(BaseModelOutputWithPoolingAndNoAttention):
    r"""
    Output of [`DualInputCNNModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 2, feature_size)`):
            Pooled features of the X-ray (row 0) and CT (row 1) branches; zeros for a missing image.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, fused_size)`):
            The fused feature vector.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Feature maps of every block of the X-ray branch (when `output_hidden_states` and an
            X-ray tensor was given).
        ct_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Feature maps of every block of the CT branch.
        modalities_used (`torch.BoolTensor` of shape `(batch_size, 2)`):
            Whether the X-ray (column 0) and the CT (column 1) of each sample reached the fusion.
    """

    ct_hidden_states: tuple[torch.Tensor, ...] | None = None
    modalities_used: torch.Tensor | None = None


@dataclass
class DualInputImageClassifierOutput(ImageClassifierOutputWithNoAttention):
    r"""
    Output of [`DualInputCNNForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `labels` is provided):
            Cross-entropy loss.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Class scores before softmax.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Feature maps of every block of the X-ray branch.
        ct_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Feature maps of every block of the CT branch.
        modalities_used (`torch.BoolTensor` of shape `(batch_size, 2)`):
            Whether the X-ray (column 0) and the CT (column 1) of each sample were used.
    """

    ct_hidden_states: tuple[torch.Tensor, ...] | None = None
    modalities_used: torch.Tensor | None = None


class DualInputCNNPreTrainedModel(ChestPreTrainedModel):
    config: DualInputCNNConfig
    base_model_prefix = "dual_input"


class DualInputCNNModel(DualInputCNNPreTrainedModel):
    """The two branches and the fusion, without the classification head."""

    def __init__(self, config: DualInputCNNConfig):
        super().__init__(config)
        self.xray_encoder = self._build_encoder(config)
        self.ct_encoder = self._build_encoder(config)
        self.fusion = build_fusion(
            config.fusion,
            feature_size=self.xray_encoder.out_channels,
            hidden_size=config.fusion_hidden_size,
            num_heads=config.num_attention_heads,
        )
        self.post_init()

    @staticmethod
    def _build_encoder(config: DualInputCNNConfig) -> nn.Module:
        if config.backbone == "transformers":
            return BackboneEncoder(
                config.num_channels, config.backbone_config, config.backbone_pretrained
            )
        return ConvEncoder(config.num_channels, config.widths)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        ct_pixel_values: torch.Tensor | None = None,
        xray_available: torch.Tensor | None = None,
        ct_available: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> DualInputModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, channels, height, width)`):
                The chest X-rays (optional).
            ct_pixel_values (`torch.FloatTensor` of shape `(batch_size, channels, height, width)`):
                The CT slices (optional; their size may differ from the X-rays').
            xray_available (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Which samples have a real X-ray (the others hold a placeholder). Defaults to all
                when `pixel_values` is given, none otherwise.
            ct_available (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Which samples have a real CT, as above.
        """
        output_hidden_states = (
            output_hidden_states
            if output_hidden_states is not None
            else self.config.output_hidden_states
        )
        batch_size = self._check_images(pixel_values, ct_pixel_values)
        reference = pixel_values if pixel_values is not None else ct_pixel_values
        available = torch.stack(
            [
                _availability(
                    "xray_available", xray_available, pixel_values, batch_size, reference
                ),
                _availability("ct_available", ct_available, ct_pixel_values, batch_size, reference),
            ],
            dim=1,
        )
        # Without flags every sample has the image(s) passed; checking needs no data-dependent branch.
        has_flags = xray_available is not None or ct_available is not None
        if has_flags and not available.any(dim=1).all():
            samples = (~available.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(
                f"samples {samples} have neither an X-ray nor a CT (xray_available and "
                "ct_available are both False)"
            )
        if self.training and self.config.modality_dropout > 0:
            available = self._drop_one_modality(available)

        xray_maps = self.xray_encoder(pixel_values) if pixel_values is not None else None
        ct_maps = self.ct_encoder(ct_pixel_values) if ct_pixel_values is not None else None
        features = torch.stack(
            [
                _pooled_features(xray_maps, batch_size, self.xray_encoder.out_channels, reference),
                _pooled_features(ct_maps, batch_size, self.ct_encoder.out_channels, reference),
            ],
            dim=1,
        )
        features = features * available[..., None].to(features.dtype)
        return DualInputModelOutput(
            last_hidden_state=features,
            pooler_output=self.fusion(features, available),
            hidden_states=xray_maps if output_hidden_states else None,
            ct_hidden_states=ct_maps if output_hidden_states else None,
            modalities_used=available,
        )

    def _check_images(
        self, pixel_values: torch.Tensor | None, ct_pixel_values: torch.Tensor | None
    ) -> int:
        if pixel_values is None and ct_pixel_values is None:
            raise ValueError(
                f"{type(self).__name__} needs at least one image: pass pixel_values (X-ray), "
                "ct_pixel_values (CT) or both"
            )
        for name, images in (("pixel_values", pixel_values), ("ct_pixel_values", ct_pixel_values)):
            if images is not None:
                check_image_batch(name, images, self.config.num_channels)
        if (
            pixel_values is not None
            and ct_pixel_values is not None
            and len(pixel_values) != len(ct_pixel_values)
        ):
            raise ValueError(
                f"pixel_values holds {len(pixel_values)} X-rays but ct_pixel_values holds "
                f"{len(ct_pixel_values)} CTs; pass one of each per sample"
            )
        return len(pixel_values) if pixel_values is not None else len(ct_pixel_values)

    def _drop_one_modality(self, available: torch.Tensor) -> torch.Tensor:
        """With probability `modality_dropout`, hide the X-ray or the CT of a sample having both."""
        batch_size = available.shape[0]
        has_both = available.all(dim=1)
        drop = has_both & (
            torch.rand(batch_size, device=available.device) < self.config.modality_dropout
        )
        drop_xray = drop & (torch.rand(batch_size, device=available.device) < 0.5)
        drop_ct = drop & ~drop_xray
        return available & ~torch.stack([drop_xray, drop_ct], dim=1)


def _availability(
    name: str,
    flags: torch.Tensor | None,
    images: torch.Tensor | None,
    batch_size: int,
    reference: torch.Tensor,
) -> torch.Tensor:
    """Per-sample availability of one modality, (batch,) bool, checked against its images."""
    if flags is None:
        return torch.full((batch_size,), images is not None, device=reference.device)
    flags = torch.as_tensor(flags, device=reference.device)
    if flags.shape != (batch_size,):
        raise ValueError(f"{name} must have shape ({batch_size},), got {tuple(flags.shape)}")
    flags = flags.bool()
    if images is None:
        if flags.any():
            raise ValueError(f"{name} marks samples as available but their images were not passed")
        return torch.zeros_like(flags)
    return flags


def _pooled_features(
    feature_maps: tuple[torch.Tensor, ...] | None,
    batch_size: int,
    feature_size: int,
    reference: torch.Tensor,
) -> torch.Tensor:
    """Global-average-pooled last feature map, or zeros when the modality was not passed."""
    if feature_maps is None:
        return reference.new_zeros(batch_size, feature_size)
    return global_average_pool(feature_maps[-1])


class DualInputCNNForImageClassification(DualInputCNNPreTrainedModel):
    """Dual-input CNN with an MLP head: COVID / Non-COVID from an X-ray, a CT, or both.

    Example:
    ```python
    >>> import torch
    >>> from hf_covid.models import DualInputCNNConfig, DualInputCNNForImageClassification

    >>> model = DualInputCNNForImageClassification(DualInputCNNConfig()).eval()
    >>> outputs = model(ct_pixel_values=torch.rand(2, 1, 224, 224))  # CT only
    >>> outputs.modalities_used[:, 1].all().item()
    True

    ```
    """

    gradcam_target_layers = {
        "xray": "dual_input.xray_encoder.final_feature_map",
        "ct": "dual_input.ct_encoder.final_feature_map",
    }
    serving_pipeline = ChestImageClassificationPipeline

    def __init__(self, config: DualInputCNNConfig):
        super().__init__(config)
        self.dual_input = DualInputCNNModel(config)
        self.classifier = ClassifierHead(
            self.dual_input.fusion.out_features,
            config.classifier_hidden_sizes,
            config.num_labels,
            config.classifier_dropout,
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        ct_pixel_values: torch.Tensor | None = None,
        xray_available: torch.Tensor | None = None,
        ct_available: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> DualInputImageClassifierOutput:
        r"""
        Args:
            pixel_values, ct_pixel_values, xray_available, ct_available:
                See [`DualInputCNNModel.forward`]; at least one image is required.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices for the cross-entropy loss.
        """
        outputs = self.dual_input(
            pixel_values=pixel_values,
            ct_pixel_values=ct_pixel_values,
            xray_available=xray_available,
            ct_available=ct_available,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(outputs.pooler_output)
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return DualInputImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            ct_hidden_states=outputs.ct_hidden_states,
            modalities_used=outputs.modalities_used,
        )


__all__ = [
    "DualInputCNNForImageClassification",
    "DualInputCNNModel",
    "DualInputCNNPreTrainedModel",
    "DualInputImageClassifierOutput",
    "DualInputModelOutput",
]
