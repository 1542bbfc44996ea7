"""Class activation maps over forward hooks: Grad-CAM, HiResCAM and raw feature maps.

Everything here works on any ``torch.nn.Module`` whose forward takes keyword tensors
(``pixel_values``, ``ct_pixel_values``, ``lung_mask``, ...) and returns logits (a tensor or an
output with ``.logits``); layers are chosen by their dotted module name
(:mod:`hf_covid.explain.layers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import INPUT_KEYS, TargetLayers, resolve_layers

__all__ = ["CAM_METHODS", "GradCAM", "HiResCAM", "cam_method", "feature_maps"]


def _first_tensor(output: object) -> torch.Tensor:
    """The activation tensor of a module output (tensor, tuple or ``ModelOutput``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = tuple(output.values())
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot take an activation map from a module output of type {type(output)}")


def _logits(outputs: object) -> torch.Tensor:
    logits = getattr(outputs, "logits", None)
    return logits if logits is not None else _first_tensor(outputs)


def _normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (H, W) map of a (B, H, W) batch to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def _output_size(key: str, inputs: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(H, W) of the input a map is drawn over: its branch's input, else ``pixel_values``."""
    tensor = inputs.get(INPUT_KEYS.get(key, "pixel_values"))
    if tensor is None:
        tensor = next(t for t in inputs.values() if isinstance(t, torch.Tensor) and t.ndim == 4)
    return int(tensor.shape[-2]), int(tensor.shape[-1])


class _ActivationRecorder:
    """Forward hooks that keep the output of named modules while in a ``with`` block.

    Hooks belong to the module, not to the thread: a forward pass that another thread runs on
    the same model while the block is open (a concurrent prediction in the app) would overwrite
    the activations. Only forward passes of the thread that opened the recorder are kept.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.activations: dict[str, torch.Tensor] = {}
        self._thread = threading.get_ident()
        self._handles = [
            model.get_submodule(name).register_forward_hook(self._hook(name)) for name in names
        ]

    def _hook(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            if threading.get_ident() == self._thread:
                self.activations[name] = _first_tensor(output)

        return record

    def __enter__(self) -> _ActivationRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()


class GradCAM:
    """Gradient-weighted class activation maps (Selvaraju et al., "Grad-CAM: Visual Explanations
    from Deep Networks via Gradient-based Localization", ICCV 2017).

    For a target layer with activations ``A_k`` and the logit ``y_c`` of class ``c``, the map is
    ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``d y_c / d A_k``, upsampled
    (bilinear) to the input size and scaled to [0, 1] per image. Hooks are placed on modules by
    dotted name, so any model works; multi-input models get one map per branch.

    Args:
        model: the classifier; called as ``model(**inputs)``.
        target_layers: None for the model's defaults
            (:func:`~hf_covid.explain.layers.default_target_layers`, keys are the input names,
            e.g. ``{"xray": ..., "ct": ...}``), a module name or a list of them (keys are the
            names), or a mapping key -> module name.

    After a call, ``last_logits`` holds the model's logits for the batch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Net(nn.Module):
        ...     gradcam_target_layers = {"image": "features"}
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        ...         self.head = nn.Linear(4, 2)
        ...     def forward(self, pixel_values):
        ...         return self.head(self.features(pixel_values).mean(dim=(2, 3)))
        >>> maps = GradCAM(Net())({"pixel_values": torch.rand(2, 1, 16, 16)}, class_index=1)
        >>> maps["image"].shape
        torch.Size([2, 16, 16])
    """

    def __init__(self, model: nn.Module, target_layers: TargetLayers = None) -> None:
        self.model = model
        self.target_layers = resolve_layers(model, target_layers)
        self.last_logits: torch.Tensor | None = None

    def __call__(
        self,
        inputs: Mapping[str, torch.Tensor],
        class_index: int | Sequence[int] | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Class activation maps for a batch.

        Args:
            inputs: keyword inputs of the model, e.g. ``{"pixel_values": (B, C, H, W)}``.
            class_index: the explained class: None for each image's predicted class, an int for
                all images, or one per image.

        Returns:
            key -> (B, H, W) float maps in [0, 1] on the CPU, at the size of the branch's input
            (``pixel_values`` for layers not tied to an input). A branch that did not run (e.g.
            a missing modality) is left out.
        """
        activations, gradients = self._activations_and_gradients(inputs, class_index)
        maps = {}
        for key, name in self.target_layers.items():
            activation = activations.get(name)
            if activation is None:
                continue
            if activation.ndim != 4:
                raise ValueError(
                    f"{type(self).__name__} needs a (B, C, H, W) activation, but layer '{name}' "
                    f"gives {tuple(activation.shape)}; choose a convolutional layer"
                )
            gradient = gradients.get(name)
            if gradient is None:  # the layer does not influence the explained logit
                gradient = torch.zeros_like(activation)
            cam = F.relu(self.combine(activation, gradient)).detach().float()
            cam = F.interpolate(cam, size=_output_size(key, inputs), mode="bilinear")
            maps[key] = _normalise_maps(cam[:, 0]).cpu()
        return maps

    def _activations_and_gradients(
        self, inputs: Mapping[str, torch.Tensor], class_index: object
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One forward and backward pass: the target layers' activations and the gradients of
        the explained logits with respect to them; sets ``last_logits``."""
        was_training = self.model.training
        self.model.eval()
        try:
            # Gradients are needed even when called under no_grad or inference_mode (an app).
            with (
                torch.inference_mode(False),
                torch.enable_grad(),
                _ActivationRecorder(self.model, list(self.target_layers.values())) as recorder,
            ):
                # Inputs that require grad put every activation in the graph, even in a frozen
                # backbone whose parameters do not.
                model_inputs = {
                    key: value.clone().requires_grad_(True)
                    if isinstance(value, torch.Tensor) and value.is_floating_point()
                    else value
                    for key, value in inputs.items()
                }
                logits = _logits(self.model(**model_inputs))
                if class_index is None:
                    targets = logits.argmax(dim=1)
                else:
                    targets = torch.as_tensor(class_index, device=logits.device).long()
                    targets = targets.expand(logits.shape[0]) if targets.ndim == 0 else targets
                score = logits.gather(1, targets[:, None]).sum()
                recorded = {
                    name: activation
                    for name, activation in recorder.activations.items()
                    if activation.requires_grad
                }
                # autograd.grad, not backward(): parameter .grad stays untouched.
                gradients = (
                    dict(
                        zip(
                            recorded,
                            torch.autograd.grad(score, list(recorded.values()), allow_unused=True),
                            strict=True,
                        )
                    )
                    if recorded
                    else {}
                )
        finally:
            self.model.train(was_training)
        self.last_logits = logits.detach()
        gradients = {name: value for name, value in gradients.items() if value is not None}
        return recorder.activations, gradients

    @staticmethod
    def combine(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The (B, 1, h, w) map before ReLU: channels weighted by their mean gradient."""
        return (gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True)


class HiResCAM(GradCAM):
    """HiResCAM (Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations
    of convolutional neural networks", arXiv:2011.08891, 2020): ``ReLU(sum_k dy_c/dA_k * A_k)``,
    the gradient multiplied element-wise instead of averaged over space.

    Equal to Grad-CAM for a global-average-pooling + linear head; faithful to the evidence for
    heads that are not, such as the CNN-LSTM's row sequence. Same interface as :class:`GradCAM`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
        ...                       nn.Linear(4 * 8 * 8, 2))
        >>> maps = HiResCAM(model, target_layers="1")({"input": torch.rand(3, 1, 8, 8)})
        >>> maps["1"].shape, bool(maps["1"].max() <= 1)
        (torch.Size([3, 8, 8]), True)
    """

    @staticmethod
    def combine(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The (B, 1, h, w) map before ReLU: activations times their own gradients."""
        return (gradient * activation).sum(dim=1, keepdim=True)


CAM_METHODS: dict[str, type[GradCAM]] = {"gradcam": GradCAM, "hirescam": HiResCAM}
"""Explanation methods by the name that scripts and reports use."""


def cam_method(method: str | type[GradCAM]) -> type[GradCAM]:
    """The CAM class named ``method`` in :data:`CAM_METHODS` (a class is returned as it is).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(method, str):
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method '{method}'; choose one of {sorted(CAM_METHODS)}")
        return CAM_METHODS[method]
    return method


def feature_maps(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    layers: TargetLayers = None,
    max_channels: int = 16,
) -> dict[str, torch.Tensor]:
    """Activations of named layers (the first ``max_channels`` channels), for feature-map grids.

    Args:
        model: any model called as ``model(**inputs)``.
        inputs: keyword inputs of the model.
        layers: as ``target_layers`` of :class:`GradCAM` (None: the Grad-CAM defaults).
        max_channels: channels kept per layer.

    Returns:
        key -> (B, min(C, max_channels), h, w) CPU tensor, for the layers that ran.
    """
    resolved = resolve_layers(model, layers)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            _ActivationRecorder(model, list(resolved.values())) as recorder,
        ):
            model(**inputs)
    finally:
        model.train(was_training)
    return {
        key: recorder.activations[name][:, :max_channels].float().cpu()
        for key, name in resolved.items()
        if name in recorder.activations
    }
