"""Class names shared by every model and dataset.

Kept inside ``hf_covid/models`` so that remote code (``trust_remote_code=True``) copies it beside the
configuration files that import it.
"""

__all__ = ["BINARY_LABELS", "LUNG_MASK_LABELS", "RADIOGRAPHY_LABELS", "label_maps"]

RADIOGRAPHY_LABELS: tuple[str, ...] = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
"""The four classes of the COVID-19 Radiography Database, in folder-name order."""

BINARY_LABELS: tuple[str, ...] = ("Non-COVID", "COVID")
"""Binary task: ``Non-COVID`` = 0, ``COVID`` = 1 (the positive class)."""

LUNG_MASK_LABELS: tuple[str, ...] = ("background", "lung")
"""Segmentation classes of the lung U-Net."""


def label_maps(labels: tuple[str, ...] | list[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Return ``(id2label, label2id)`` for an ordered list of class names."""
    if len(set(labels)) != len(labels):
        raise ValueError(f"class names must be unique, got {list(labels)}")
    id2label = dict(enumerate(labels))
    return id2label, {name: index for index, name in id2label.items()}
