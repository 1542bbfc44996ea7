"""Model size, FLOPs and CPU training-step time (``scripts/model_stats.py``).

The inputs come from :func:`hf_covid.registry.example_inputs`.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["model_complexity", "training_step_time"]


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
