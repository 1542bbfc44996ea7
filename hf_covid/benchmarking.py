"""Former home of the benchmarks, now :mod:`hf_covid.benchmarks`.

Re-exports the two names ``tests/test_pipeline.py`` still imports from here; this module goes
when that test imports them from :mod:`hf_covid.benchmarks`.
"""

from .benchmarks import NaiveImageFolderDataset, measure_dataloader_throughput

__all__ = ["NaiveImageFolderDataset", "measure_dataloader_throughput"]
