"""Which layers to explain: each branch's default Grad-CAM layer, and its encoder stages.

Layers are chosen by their dotted module name (``model.named_modules()``), so any
``torch.nn.Module`` works; our classifiers name their defaults in ``gradcam_target_layers``, and a
registered family whose model class does not (transformers' ResNet) names them in its record
(:attr:`hf_covid.registry.ModelFamily.gradcam_layers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ..registry import ModelFamily, get_model_family

__all__ = [
    "INPUT_KEYS",
    "TargetLayers",
    "default_target_layers",
    "encoder_stages",
    "explanation_layers",
    "resolve_layers",
]

INPUT_KEYS: dict[str, str] = {
    "image": "pixel_values",
    "xray": "pixel_values",
    "ct": "ct_pixel_values",
}
"""Which model input a branch name of ``gradcam_target_layers`` refers to."""

TargetLayers = str | Sequence[str] | Mapping[str, str] | None
"""Layers to explain: None (the defaults), a module name, a list of them, or key -> name."""


def default_target_layers(model: nn.Module) -> dict[str, str]:
    """The default Grad-CAM layer of each input branch of ``model``.

    Our classifiers name them in the class attribute ``gradcam_target_layers`` (input name ->
    module name, the last convolutional block of each branch); a registered family whose model
    class does not name them gives them in its record (``gradcam_layers``; ResNet: the last
    encoder stage).

    Raises:
        ValueError: when the model has no default; pass ``target_layers`` by name instead.
    """
    layers = getattr(model, "gradcam_target_layers", None)
    if layers:
        return dict(layers)
    family = _registered_family(model)
    if family is not None and family.gradcam_layers is not None:
        return dict(family.gradcam_layers(model.config))
    raise ValueError(
        f"{type(model).__name__} has no default Grad-CAM layer (no 'gradcam_target_layers'); "
        "pass target_layers=<dotted module name>, e.g. one of: "
        + ", ".join(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    )


def _registered_family(model: nn.Module) -> ModelFamily | None:
    """The registered family of a transformers model, or None (any other module)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        return get_model_family(model_type) if model_type else None
    except KeyError:
        return None


def resolve_layers(model: nn.Module, target_layers: TargetLayers) -> dict[str, str]:
    """``target_layers`` as {map key: module name}, checked against the model's modules.

    Args:
        model: the model whose modules are named.
        target_layers: None for :func:`default_target_layers`, a module name or a list of them
            (each name is its own key), or a mapping key -> module name.

    Raises:
        ValueError: a module name the model does not have.
    """
    if target_layers is None:
        layers = default_target_layers(model)
    elif isinstance(target_layers, str):
        layers = {target_layers: target_layers}
    elif isinstance(target_layers, Mapping):
        layers = dict(target_layers)
    else:
        layers = {name: name for name in target_layers}
    module_names = dict(model.named_modules())
    for name in layers.values():
        if name not in module_names:
            raise ValueError(f"{type(model).__name__} has no module named '{name}'")
    return layers


def encoder_stages(model: nn.Module) -> dict[str, list[str]]:
    """For each branch, the stages of the encoder that holds its default Grad-CAM layer, shallow
    to deep (``...encoder.blocks.0``, ...; ResNet's ``resnet.encoder.stages.0``, ...). A branch
    whose encoder has no such list keeps just its default layer.
    """
    modules = dict(model.named_modules())
    stages = {}
    for key, name in default_target_layers(model).items():
        parent = name.rsplit(".", 1)[0]
        container = parent if isinstance(modules.get(parent), nn.ModuleList) else f"{parent}.blocks"
        if isinstance(modules.get(container), nn.ModuleList):
            stages[key] = [
                f"{container}.{child}" for child, _ in modules[container].named_children()
            ]
        else:
            stages[key] = [name]
    return stages


def explanation_layers(model: nn.Module, stage: int | None = None) -> dict[str, str]:
    """The layers to explain: each branch's default layer, or its encoder stage ``stage``
    (0 = shallowest; negative counts from the deepest, as in Python indexing).

    Raises:
        ValueError: a stage that some branch does not have.
    """
    if stage is None:
        return default_target_layers(model)
    layers = {}
    for key, names in encoder_stages(model).items():
        if not -len(names) <= stage < len(names):
            raise ValueError(
                f"explanation stage {stage} does not exist: the {key} encoder has stages "
                f"0..{len(names) - 1} ({', '.join(names)})"
            )
        layers[key] = names[stage]
    return layers
