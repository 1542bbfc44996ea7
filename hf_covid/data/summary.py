"""What a dataset builder found and decided, as structured fields that travel with the dataset.

Every builder ends with a `DatasetBuildSummary`: the layout it read, the classes it filled, the
pairing, the split seed and ratios, near-duplicate counts, bad and ignored files. `make_dataset_dict`
stores it as JSON in each split's ``DatasetInfo.description`` (the one free field `datasets`
keeps with a dataset), and `read_build_summary` reads it back, so training, cards and reports use
numbers, never text parsed with regular expressions. `DatasetBuildSummary.describe` renders the
same record as prose for logs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DatasetBuildSummary", "NearDuplicates", "read_build_summary"]

SUMMARY_FORMAT = "hf_covid.dataset_build_summary"
SUMMARY_VERSION = 1


@dataclass
class NearDuplicates:
    """Near-duplicate groups found by perceptual hash; each group is kept in one split.

    Attributes:
        groups: Groups of two or more near-identical images.
        images: Images in those groups.
        redundant_copies: Images beyond the first of each group.
        cross_label_groups: Groups whose images carry different labels.
    """

    groups: int
    images: int
    redundant_copies: int
    cross_label_groups: int = 0
    handling: str = "each group kept in one split"


@dataclass
class DatasetBuildSummary:
    """The structured record of one dataset build (see the module docstring).

    Attributes:
        kind: The layout or composition read (``"radiography"``, ``"xray_ct"``, or a public
            composition name).
        title: Human name of the layout (``"COVID-19 Radiography Database (Kaggle layout)"``).
        classes: Class names in label order.
        images_per_class: Usable images per class (X-ray+CT: per modality and class).
        split_sizes: Rows per split.
        split_class_counts: Rows per split and class.
        split_ratios: Train, validation and test fractions.
        split_seed: Seed of the split (and of label pairing).
        grouping: What rows are grouped by when split (patient id, source, or image).
        deduplicate: Whether near-duplicates were searched.
        near_duplicates: Their counts, or None when not searched.
        pairing: X-ray + CT pairing (``"label"``, ``"patient"``) or None for single-image layouts.
        pairing_note: What that pairing means for a fused number, or None.
        bad_files_skipped: Unreadable files skipped with ``skip_bad_images``.
        ignored_files: Files left out and why (``{"in a nested folder": 3, "mask without image": 1,
            "unknown file type": 2}``), not counted as bad files.
        masks: Mask counts (``{"matched": 10, "missing": 2, "resized": 0, "rejected": 1}``;
            rejected: present but unreadable or of another aspect ratio).
        sources: Rows per source collection or URL host, where known.
        licenses: Rows per licence, where known.
        strata: Images per class, source, age group and view (public collections), one
            ``{"class", "source", "age_group", "view", "images"}`` row each: where a class's
            images come from, so that a label that a source, an age or a view predicts shows.
        synthetic: True when the images are the project's phantoms.
        notes: Further caveats, one sentence each.
    """

    kind: str
    title: str
    classes: list[str]
    images_per_class: dict[str, int] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)
    split_class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split_ratios: list[float] = field(default_factory=list)
    split_seed: int | None = None
    grouping: str = "image"
    deduplicate: bool = True
    near_duplicates: NearDuplicates | None = None
    pairing: str | None = None
    pairing_note: str | None = None
    bad_files_skipped: int = 0
    ignored_files: dict[str, int] = field(default_factory=dict)
    masks: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    licenses: dict[str, int] = field(default_factory=dict)
    strata: list[dict[str, Any]] = field(default_factory=list)
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, tagged with the format name and version."""
        return {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetBuildSummary:
        """Read what `to_dict` wrote; unknown keys (from a newer version) are ignored."""
        if data.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"not a dataset build summary (format {data.get('format')!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        if values.get("near_duplicates") is not None:
            values["near_duplicates"] = NearDuplicates(**values["near_duplicates"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> DatasetBuildSummary:
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        """The summary as a few lines of prose (for logs and dataset cards)."""
        total = sum(self.images_per_class.values())
        lines = [
            f"{self.title}: {total} images, "
            + ", ".join(f"{name} {count}" for name, count in self.images_per_class.items())
            + "."
        ]
        if self.synthetic:
            lines.append("Synthetic phantoms drawn by hf_covid: no real patient.")
        if self.pairing:
            lines.append(
                f"Pairing: {self.pairing}." + (f" {self.pairing_note}" if self.pairing_note else "")
            )
        if self.masks:
            lines.append("Masks: " + ", ".join(f"{k} {v}" for k, v in self.masks.items()) + ".")
        lines.append(f"Bad files skipped: {self.bad_files_skipped}.")
        if self.ignored_files:
            lines.append(
                "Ignored files: "
                + ", ".join(f"{k} {v}" for k, v in self.ignored_files.items())
                + "."
            )
        ratios = "/".join(f"{ratio:g}" for ratio in self.split_ratios)
        lines.append(
            f"Splits: {ratios} (train/validation/test), stratified by label, grouped by "
            f"{self.grouping}, seed {self.split_seed}."
        )
        if self.near_duplicates is not None:
            near = self.near_duplicates
            lines.append(
                f"Near-duplicates (perceptual hash): {near.groups} groups holding {near.images} "
                f"images ({near.redundant_copies} redundant copies, {near.cross_label_groups} "
                f"spanning classes); {near.handling}."
            )
        elif not self.deduplicate:
            lines.append("Near-duplicates: not checked (deduplicate=False).")
        for split, counts in self.split_class_counts.items():
            per_class = ", ".join(f"{name} {count}" for name, count in counts.items())
            lines.append(f"  {split}: {self.split_sizes.get(split, 0)} rows ({per_class})")
        lines += self.notes
        return "\n".join(lines)


def read_build_summary(dataset: Any) -> DatasetBuildSummary | None:
    """The build summary stored with a `Dataset` or `DatasetDict`, or None if it has none.

    A dataset from elsewhere (the Hub, `load_dataset`) has no summary; callers then say "unknown"
    rather than guess.
    """
    split = next(iter(dataset.values())) if hasattr(dataset, "values") else dataset
    text = (split.info.description or "").strip()
    if not text.startswith("{"):
        return None
    try:
        return DatasetBuildSummary.from_json(text)
    except (ValueError, TypeError):
        return None
