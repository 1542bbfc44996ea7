"""Training loop overhead: the HF Trainer against a plain PyTorch loop on the same batches."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..training import measure_trainer_overhead, parse_arguments

__all__ = ["compare_training_loops"]


def compare_training_loops(
    recipe: dict[str, Any],
    data_dir: str | Path,
    *,
    steps: int,
    warmup_steps: int,
    cache_dir: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """HF Trainer against a plain PyTorch loop for one demo recipe
    (:func:`hf_covid.training.measure_trainer_overhead`), with ``trainer_to_plain`` their ratio.

    Args:
        recipe: A demo recipe (see :func:`~hf_covid.benchmarks.demo_models.load_demo_recipes`).
        data_dir: Its data set (Radiography layout, or X-ray + CT for the dual-input model).
        steps: Optimizer steps per loop.
        warmup_steps: Steps excluded from the timings.
        cache_dir: Datasets cache.
        **overrides: Further recipe values (``image_size``, ``per_device_train_batch_size``,
            ``mixed_precision``, ``channels_last``, ...).

    Returns:
        The measurement of ``measure_trainer_overhead`` plus ``trainer_to_plain`` and
        ``image_size``.
    """
    with tempfile.TemporaryDirectory() as scratch:
        values = {
            **recipe,
            "data_dir": str(data_dir),
            "output_dir": scratch,
            "cache_dir": str(cache_dir) if cache_dir else None,
            "disable_tqdm": True,
            "report_to": "none",
            **overrides,
        }
        arguments = parse_arguments([], recipe=values)
        result = measure_trainer_overhead(*arguments, steps=steps, warmup_steps=warmup_steps)
    result["trainer_to_plain"] = (
        result["trainer_samples_per_second"] / result["plain_samples_per_second"]
    )
    result["image_size"] = values.get("image_size")
    return result
