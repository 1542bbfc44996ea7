"""Model size, FLOPs and CPU training-step time, for the README table and the benchmarks."""

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import PreTrainedConfig

from hf_covid.registry import get_model_family


def example_inputs(
    config: PreTrainedConfig, batch_size: int = 1, image_size: int = 224, labels: bool = False
) -> dict[str, torch.Tensor]:
    """Random inputs of the right names and shapes for the model that `config` describes.

    The inputs are those of the model's family in :mod:`hf_covid.registry` (availability flags
    are left out: every image is present).

    Args:
        config: A config of any registered model family.
        batch_size: Images per batch.
        image_size: Height and width.
        labels: Add `labels` (class indices, or masks for segmentation models) so that the
            forward computes a loss.
    """
    family = get_model_family(config.model_type)
    image_shape = (batch_size, config.num_channels, image_size, image_size)
    mask_shape = (batch_size, 1, image_size, image_size)
    inputs = {}
    for name in family.input_names:
        if name == "lung_mask":
            inputs[name] = (torch.rand(mask_shape) > 0.5).float()
        elif not name.endswith("_available"):
            inputs[name] = torch.rand(image_shape)
    if labels and family.task == "segmentation":
        inputs["labels"] = torch.randint(0, 2, (batch_size, image_size, image_size))
    elif labels:
        inputs["labels"] = torch.randint(0, config.num_labels, (batch_size,))
    return inputs


def model_complexity(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    """Parameters and forward FLOPs of `model` on `inputs`.

    FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix
    products, a multiply-add counting as 2 FLOPs; element-wise operations are not counted).

    Returns:
        `{"parameters": int, "flops": int}`.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**inputs)
    return {
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "flops": counter.get_total_flops(),
    }


def training_step_time(
    model: nn.Module, inputs: dict[str, torch.Tensor], repeats: int = 3, warmup: int = 1
) -> float:
    """Median wall time (ms) of one forward and backward pass; `inputs` must hold `labels`."""
    model.train()
    timings = []
    for step in range(warmup + repeats):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(**inputs).loss.backward()
        if step >= warmup:
            timings.append((time.perf_counter() - start) * 1000)
    return sorted(timings)[len(timings) // 2]


__all__ = ["example_inputs", "model_complexity", "training_step_time"]
