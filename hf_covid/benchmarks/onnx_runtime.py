"""onnxruntime against eager PyTorch on the CPU: batch-1 latency and batch-32 throughput."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ..export import EXPORT_INFO_FILE_NAME, OnnxExport, export_onnx, onnx_inputs, onnx_session
from ..registry import example_inputs
from .inference_speed import compare_to_baseline, latency_and_throughput, measure_inference
from .timing import timed_calls

__all__ = ["compare_onnx_to_eager", "measure_onnx_inference"]

_CPU = torch.device("cpu")


def measure_onnx_inference(
    onnx_path: str | Path,
    model: PreTrainedModel,
    *,
    image_size: int,
    batch_size: int = 32,
    latency_repeats: int = 30,
    throughput_repeats: int = 3,
) -> dict[str, float]:
    """Batch-1 latency and batch-``batch_size`` throughput of an exported graph under
    onnxruntime (CPU, as many intra-op threads as torch uses), on the inputs
    :func:`~.inference_speed.measure_inference` gives the eager model.

    Returns:
        The keys of :func:`~.inference_speed.measure_inference`.
    """
    session = onnx_session(onnx_path)
    single, batch = (
        onnx_inputs(example_inputs(model.config, size, image_size), session)
        for size in (1, batch_size)
    )
    start = time.perf_counter()
    for feed in (single, single, batch):
        session.run(None, feed)
    warmup_seconds = time.perf_counter() - start
    latencies = timed_calls(lambda: session.run(None, single), latency_repeats, _CPU)
    batch_times = timed_calls(lambda: session.run(None, batch), throughput_repeats, _CPU)
    return latency_and_throughput(latencies, batch_times, batch_size, warmup_seconds)


def compare_onnx_to_eager(
    model: PreTrainedModel,
    *,
    image_size: int,
    work_dir: str | Path,
    batch_size: int = 32,
    latency_repeats: int = 30,
    throughput_repeats: int = 3,
) -> dict[str, Any]:
    """Export ``model`` to ONNX (:func:`hf_covid.export.export_onnx`, checked against PyTorch)
    and time onnxruntime against eager PyTorch on the CPU, same inputs and threads.

    Args:
        model: A model of any registered family (random weights do not change the speed).
        image_size: Input height and width (the traced size of the export).
        work_dir: Where the graph is written.
        batch_size: Batch of the throughput measurement.
        latency_repeats: Timed batch-1 runs of each.
        throughput_repeats: Timed batch runs of each.

    Returns:
        :func:`~.inference_speed.compare_to_baseline` of ``eager`` and ``onnxruntime``, plus
        ``exporter``, ``export_seconds`` and ``max_abs_difference`` (per output, measured after
        the export).
    """
    model = model.eval()
    start = time.perf_counter()
    onnx_path = export_onnx(model, work_dir, image_size=image_size)
    export_seconds = time.perf_counter() - start
    timing = {
        "image_size": image_size,
        "batch_size": batch_size,
        "latency_repeats": latency_repeats,
        "throughput_repeats": throughput_repeats,
    }
    compared = compare_to_baseline(
        {
            "eager": measure_inference(model, device=_CPU, **timing),
            "onnxruntime": measure_onnx_inference(onnx_path, model, **timing),
        }
    )
    record = OnnxExport.from_json_file(onnx_path.parent / EXPORT_INFO_FILE_NAME)
    return {
        **compared,
        "exporter": record.exporter,
        "export_seconds": export_seconds,
        "max_abs_difference": record.max_abs_difference,
        "onnx_file_mb": os.path.getsize(onnx_path) / 2**20,
    }
