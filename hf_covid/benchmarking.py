"""Former home of the benchmarks, now :mod:`hf_covid.benchmarks`; these names are re-exported
until ``tests/app_support.py``, ``tests/test_pipeline.py`` and
``scripts/measure_data_pipeline.py`` import them from there. Then this module goes."""

from .benchmarks import (
    NaiveImageFolderDataset,
    compare_data_pipelines,
    free_loopback_port,
    load_app_module,
    measure_dataloader_throughput,
)

__all__ = [
    "NaiveImageFolderDataset",
    "compare_data_pipelines",
    "free_loopback_port",
    "load_app_module",
    "measure_dataloader_throughput",
]
