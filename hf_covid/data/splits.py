"""Train / validation / test splits: stratified by label, grouped, near-duplicates kept together.

Both dataset builders call `plan_splits`: items that share a group key (a patient, or a source
collection) or that are near-duplicates of each other (`hf_covid.data.dedup`) form one group, and
every group goes whole into one split, so no patient and no duplicate group sits in two splits.
Groups are assigned per label (the group's majority label) to the split that most lacks items,
largest groups first, in an order drawn from a seeded generator: the same folder and seed always
give the same splits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, DatasetDict, DatasetInfo, Features, NamedSplit

from .dedup import ImageHashes, UnionFind, find_near_duplicate_groups
from .summary import DatasetBuildSummary, NearDuplicates

__all__ = [
    "DEFAULT_SPLIT_RATIOS",
    "SPLIT_NAMES",
    "SplitPlan",
    "make_dataset_dict",
    "plan_splits",
    "validate_split_ratios",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, str, str] = ("train", "validation", "test")
DEFAULT_SPLIT_RATIOS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def validate_split_ratios(split_ratios: Sequence[float]) -> tuple[float, float, float]:
    """Check that ``split_ratios`` holds three non-negative fractions summing to 1.

    Raises:
        ValueError: Naming the ratios received and what was expected.
    """
    ratios = tuple(float(ratio) for ratio in split_ratios)
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] == 0:
        raise ValueError(
            f"split_ratios must be three non-negative fractions (train, validation, test) that "
            f"sum to 1 with train > 0, got {tuple(split_ratios)}"
        )
    return ratios  # type: ignore[return-value]


@dataclass(frozen=True)
class SplitPlan:
    """Where every item goes, and what grouping and deduplication found.

    Attributes:
        split_of_item: Index into `SPLIT_NAMES` for every item.
        group_count: Number of groups (patients, sources, duplicate groups, single images).
        duplicate_groups: Near-duplicate groups (item indices), two or more items each.
        cross_label_duplicate_groups: Duplicate groups whose items carry different labels.
    """

    split_of_item: list[int]
    group_count: int
    duplicate_groups: list[list[int]]
    cross_label_duplicate_groups: int

    @property
    def duplicate_images(self) -> int:
        """Items that belong to a near-duplicate group."""
        return sum(len(group) for group in self.duplicate_groups)

    @property
    def redundant_copies(self) -> int:
        """Items beyond the first of each duplicate group."""
        return self.duplicate_images - len(self.duplicate_groups)

    def near_duplicates(self) -> NearDuplicates:
        """The near-duplicate counts as the structured record the build summary carries."""
        return NearDuplicates(
            groups=len(self.duplicate_groups),
            images=self.duplicate_images,
            redundant_copies=self.redundant_copies,
            cross_label_groups=self.cross_label_duplicate_groups,
        )


def plan_splits(
    labels: Sequence[int],
    *,
    group_keys: Sequence[Hashable | None] | None = None,
    hashes: Sequence[ImageHashes] | None = None,
    dedup_scopes: Sequence[Hashable] | None = None,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    align_crops: bool = False,
) -> SplitPlan:
    """Assign every item to a split, stratified by label and grouped.

    Args:
        labels: Class index of every item.
        group_keys: Items with the same non-None key (patient id, source) stay together.
        hashes: Perceptual hashes of every item; near-duplicates stay together. None: no dedup.
        dedup_scopes: Only items of the same scope are compared (e.g. "xray" and "ct").
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the generator that orders the groups.
        align_crops: Also find cropped and resized copies (see `find_near_duplicate_groups`):
            for real image collections, never for phantoms, which it cannot tell apart.

    Returns:
        A `SplitPlan`.
    """
    ratios = np.array(validate_split_ratios(split_ratios))
    count = len(labels)
    union_find = UnionFind(count)
    if group_keys is not None:
        first_of_key: dict[Hashable, int] = {}
        for index, key in enumerate(group_keys):
            if key is not None:
                union_find.union(first_of_key.setdefault(key, index), index)

    duplicate_groups: list[list[int]] = []
    if hashes is not None:
        scopes = dedup_scopes if dedup_scopes is not None else [None] * count
        members: dict[Hashable, list[int]] = {}
        for index, scope in enumerate(scopes):
            members.setdefault(scope, []).append(index)
        for indices in members.values():
            for group in find_near_duplicate_groups(
                [hashes[index] for index in indices], align_crops=align_crops
            ):
                duplicate_groups.append([indices[position] for position in group])
        for group in duplicate_groups:
            for index in group[1:]:
                union_find.union(group[0], index)
    duplicate_groups.sort(key=lambda group: group[0])
    cross_label = sum(len({labels[index] for index in group}) > 1 for group in duplicate_groups)

    components = union_find.groups()
    by_label: dict[int, list[int]] = {}
    for component_index, component in enumerate(components):
        counts = Counter(labels[index] for index in component)
        majority = min(counts, key=lambda label: (-counts[label], label))
        by_label.setdefault(majority, []).append(component_index)

    rng = np.random.default_rng(seed)
    split_of_item = [0] * count
    for label in sorted(by_label):
        component_indices = [by_label[label][k] for k in rng.permutation(len(by_label[label]))]
        # Largest groups first (stable sort keeps the random order among equal sizes).
        component_indices.sort(key=lambda component_index: -len(components[component_index]))
        targets = ratios * sum(len(components[index]) for index in component_indices)
        assigned = np.zeros(3)
        for component_index in component_indices:
            need = np.where(ratios > 0, targets - assigned, -np.inf)
            split = int(np.argmax(need))
            assigned[split] += len(components[component_index])
            for index in components[component_index]:
                split_of_item[index] = split
    return SplitPlan(
        split_of_item=split_of_item,
        group_count=len(components),
        duplicate_groups=duplicate_groups,
        cross_label_duplicate_groups=cross_label,
    )


def make_dataset_dict(
    columns_by_split: Mapping[str, Mapping[str, list]],
    *,
    features: Features,
    summary: DatasetBuildSummary,
    dataset_name: str,
) -> DatasetDict:
    """Build the `DatasetDict` (train, validation, test) with features and the build summary.

    The summary gains the split sizes and per-class counts, is logged as prose, and is stored as
    JSON in every split's description (`hf_covid.data.summary.read_build_summary` reads it).
    """
    class_names = features["label"].names
    summary.split_sizes = {name: len(columns_by_split[name]["label"]) for name in SPLIT_NAMES}
    summary.split_class_counts = {
        split_name: {
            name: counts.get(label, 0)
            for label, name in enumerate(class_names)
            for counts in [Counter(columns_by_split[split_name]["label"])]
        }
        for split_name in SPLIT_NAMES
    }
    logger.info("%s", summary.describe())
    description = summary.to_json()
    return DatasetDict(
        {
            split_name: Dataset.from_dict(
                dict(columns_by_split[split_name]),
                features=features,
                info=DatasetInfo(
                    description=description, features=features, dataset_name=dataset_name
                ),
                split=NamedSplit(split_name),
            )
            for split_name in SPLIT_NAMES
        }
    )
