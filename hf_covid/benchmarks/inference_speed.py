"""Inference variants against eager fp32: batch-1 latency and batch throughput of each model."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from ..registry import example_inputs
from .timing import synchronize, timed_calls, to_memory_format

__all__ = [
    "compare_inference_variants",
    "compare_to_baseline",
    "inference_variants",
    "latency_and_throughput",
    "measure_inference",
]


def latency_and_throughput(
    latencies: list[float], batch_times: list[float], batch_size: int, warmup_seconds: float
) -> dict[str, float]:
    """The summary every inference measurement reports, from its timed calls (seconds)."""
    return {
        "batch1_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "batch1_p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "throughput_samples_per_second": batch_size * len(batch_times) / sum(batch_times),
        "warmup_seconds": warmup_seconds,
    }


def compare_to_baseline(measurements: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Measurements by variant name against the first one, the baseline.

    Adds ``p50_ratio`` (< 1: lower latency) and ``throughput_ratio`` (> 1: more samples/s) to
    each measurement.

    Returns:
        ``baseline`` (its name), ``variants`` (name -> measurement and ratios) and ``helps``
        (the variants at least 5 % faster in latency or throughput).
    """
    baseline_name = next(iter(measurements))
    baseline = measurements[baseline_name]
    for result in measurements.values():
        result["p50_ratio"] = result["batch1_p50_ms"] / baseline["batch1_p50_ms"]
        result["throughput_ratio"] = (
            result["throughput_samples_per_second"] / baseline["throughput_samples_per_second"]
        )
    faster = [
        name
        for name, result in measurements.items()
        if name != baseline_name
        and (result["p50_ratio"] < 0.95 or result["throughput_ratio"] > 1.05)
    ]
    return {"baseline": baseline_name, "variants": measurements, "helps": faster}


def measure_inference(
    model: torch.nn.Module,
    *,
    image_size: int,
    channels_last: bool = False,
    compile: bool = False,
    bf16: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    latency_repeats: int = 30,
    throughput_repeats: int = 3,
) -> dict[str, float]:
    """Batch-1 latency and batch-``batch_size`` throughput of one inference variant.

    The model is copied, so variants do not change each other. Warm-up calls (and the
    compilation, timed apart as ``warmup_seconds``) are excluded from the timings.

    Args:
        model: A model built from an hf_covid (or transformers ResNet) config.
        image_size: Input height and width.
        channels_last: Use the channels_last memory format for weights and inputs.
        compile: Run ``torch.compile(model)``.
        bf16: Autocast to bfloat16 (CUDA).
        device: Where to run.
        batch_size: Batch of the throughput measurement.
        latency_repeats: Timed batch-1 forwards.
        throughput_repeats: Timed batch forwards.

    Returns:
        ``batch1_p50_ms``, ``batch1_p95_ms``, ``throughput_samples_per_second``,
        ``warmup_seconds``.
    """
    device = torch.device(device)
    model = copy.deepcopy(model).eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    single, batch = (
        to_memory_format(
            {
                name: value.to(device)
                for name, value in example_inputs(model.config, size, image_size).items()
            },
            channels_last,
        )
        for size in (1, batch_size)
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        start = time.perf_counter()
        for inputs in (single, single, batch):  # compiles both shapes when compiling
            forward(**inputs)
        synchronize(device)
        warmup_seconds = time.perf_counter() - start
        latencies = timed_calls(lambda: forward(**single), latency_repeats, device)
        batch_times = timed_calls(lambda: forward(**batch), throughput_repeats, device)
    return latency_and_throughput(latencies, batch_times, batch_size, warmup_seconds)


def compare_inference_variants(
    model: torch.nn.Module,
    *,
    image_size: int,
    variants: dict[str, dict[str, bool]],
    device: str | torch.device = "cpu",
    **timing: int,
) -> dict[str, Any]:
    """Measure every variant of ``variants`` (name -> :func:`measure_inference` flags) against
    the first one, the baseline (:func:`compare_to_baseline`)."""
    return compare_to_baseline(
        {
            name: measure_inference(model, image_size=image_size, device=device, **flags, **timing)
            for name, flags in variants.items()
        }
    )


def inference_variants(compile: bool, cuda: bool) -> dict[str, dict[str, bool]]:
    """The variants timed on a device, baseline first: eager, channels_last and (optionally)
    ``torch.compile`` on the CPU; fp32 and bf16 + channels_last on CUDA."""
    if cuda:
        return {"fp32": {}, "bf16_channels_last": {"bf16": True, "channels_last": True}}
    variants = {"eager": {}, "channels_last": {"channels_last": True}}
    if compile:
        variants["compile"] = {"compile": True}
    return variants
