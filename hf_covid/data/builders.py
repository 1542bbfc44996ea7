"""Which builder reads which data layout: the one table from a dataset kind to its builder, and
the one test of whether a folder is a dataset saved with ``save_to_disk`` (read as is)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from datasets import DatasetDict

from .radiography import build_radiography_dataset
from .xray_ct import build_xray_ct_dataset

__all__ = ["DATASET_BUILDERS", "is_saved_dataset"]

DATASET_BUILDERS: Mapping[str, Callable[..., DatasetDict]] = MappingProxyType(
    {"radiography": build_radiography_dataset, "xray_ct": build_xray_ct_dataset}
)
"""Dataset layout key (``hf_covid.registry.DATASET_KINDS``) -> the builder of that folder layout."""


def is_saved_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``DatasetDict.save_to_disk`` or
    ``Dataset.save_to_disk`` (read with ``datasets.load_from_disk``, not built)."""
    path = Path(path)
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
