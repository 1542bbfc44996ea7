"""Datasets, image reading, splits, deduplication, augmentation and the training data pipeline.

Every name below is imported from its module on first use (``import hf_covid.data`` imports
none of them): :mod:`~hf_covid.data.image_reading` (`load_image`, `InputError`),
:mod:`~hf_covid.data.resize`, :mod:`~hf_covid.data.io` (data folders and their cache), the
builders of the two public layouts (:mod:`~hf_covid.data.radiography`,
:mod:`~hf_covid.data.xray_ct`) and of the public collections (:mod:`~hf_covid.data.public`), the
phantom generator (:mod:`~hf_covid.data.synthetic`), splits, near-duplicates, augmentation and
the training pipeline.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY_EXPORTS: dict[str, str] = {
    "ImageReadError": "hf_covid.data.image_reading",
    "ImageSource": "hf_covid.data.image_reading",
    "InputError": "hf_covid.data.image_reading",
    "load_image": "hf_covid.data.image_reading",
    "resize_image": "hf_covid.data.resize",
    "BadImagesError": "hf_covid.data.io",
    "DATASET_BUILDERS": "hf_covid.data.builders",
    "is_saved_dataset": "hf_covid.data.builders",
    "build_radiography_dataset": "hf_covid.data.radiography",
    "build_xray_ct_dataset": "hf_covid.data.xray_ct",
    "build_covid_ct_dataset": "hf_covid.data.public",
    "build_covid_cxnet_dataset": "hf_covid.data.public",
    "build_ieee8023_dataset": "hf_covid.data.public",
    "build_kermany_dataset": "hf_covid.data.public",
    "build_nih_chestxray14_dataset": "hf_covid.data.public",
    "build_covidx_dataset": "hf_covid.data.public",
    "build_rsna_dataset": "hf_covid.data.public",
    "download_collection": "hf_covid.data.public.download",
    "compose_radiography": "hf_covid.data.public.compose",
    "compose_xray_ct": "hf_covid.data.public.compose",
    "prepare_public_data": "hf_covid.data.public.prepare",
    "generate_all": "hf_covid.data.synthetic",
    "generate_paired_xray_ct": "hf_covid.data.synthetic",
    "generate_radiography": "hf_covid.data.synthetic",
    "generate_xray_ct": "hf_covid.data.synthetic",
    "SPLIT_NAMES": "hf_covid.data.splits",
    "plan_splits": "hf_covid.data.splits",
    "ImageHashes": "hf_covid.data.dedup",
    "compute_image_hashes": "hf_covid.data.dedup",
    "find_near_duplicate_groups": "hf_covid.data.dedup",
    "ChestAugmentation": "hf_covid.data.augment",
    "ChestBatchCollator": "hf_covid.data.pipeline",
    "preprocess_for_training": "hf_covid.data.pipeline",
}

__all__ = sorted(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_EXPORTS)
