"""Which builder reads which data layout: the one table from a dataset kind to its builder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from datasets import DatasetDict

from .radiography import build_radiography_dataset
from .xray_ct import build_xray_ct_dataset

__all__ = ["DATASET_BUILDERS"]

DATASET_BUILDERS: Mapping[str, Callable[..., DatasetDict]] = MappingProxyType(
    {"radiography": build_radiography_dataset, "xray_ct": build_xray_ct_dataset}
)
"""Dataset layout key (``hf_covid.registry.DATASET_KINDS``) -> the builder of that folder layout."""
