"""Datasets, image reading, splits, deduplication, augmentation and the training data pipeline."""

from .augment import ChestAugmentation
from .dedup import ImageHashes, compute_image_hashes, find_near_duplicate_groups
from .io import BadImagesError, ImageReadError, load_image
from .pipeline import ChestBatchCollator, preprocess_for_training
from .radiography import build_radiography_dataset
from .splits import SPLIT_NAMES, plan_splits
from .xray_ct import build_xray_ct_dataset

DATASET_BUILDERS = {"radiography": build_radiography_dataset, "xray_ct": build_xray_ct_dataset}
"""Dataset layout key (``hf_covid.registry.DATASET_KINDS``) -> the builder of that folder layout."""

__all__ = [
    "DATASET_BUILDERS",
    "SPLIT_NAMES",
    "BadImagesError",
    "ChestAugmentation",
    "ChestBatchCollator",
    "ImageHashes",
    "ImageReadError",
    "build_radiography_dataset",
    "build_xray_ct_dataset",
    "compute_image_hashes",
    "find_near_duplicate_groups",
    "load_image",
    "plan_splits",
    "preprocess_for_training",
]
