"""Timing helpers shared by the benchmark cases: synchronised wall-clock calls, memory formats."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["synchronize", "timed_calls", "to_memory_format"]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(call: Callable[[], Any], repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``call``, each followed by a device sync."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize(device)
        timings.append(time.perf_counter() - start)
    return timings


def to_memory_format(
    inputs: Mapping[str, torch.Tensor], channels_last: bool
) -> dict[str, torch.Tensor]:
    """The inputs with every 4-D tensor in channels_last format (unchanged when False)."""
    if not channels_last:
        return dict(inputs)
    return {
        name: value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
        for name, value in inputs.items()
    }
