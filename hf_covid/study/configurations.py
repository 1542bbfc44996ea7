"""The study's ablation: one configuration per step from the first study's data to every mitigation.

Each :class:`StudyConfiguration` is what a recipe changes (``composition``, ``mask_model`` with
``lung_crop_margin``, ``intensity_standardization``, ``imbalance`` with ``balance_by``, the
outside-the-lungs augmentation) on top of a model's ``<key>_public.yaml`` recipe; each adds one
step to the configuration before it:

0. ``pediatric_controls``: the first study's composition (COVID from ieee8023, controls mostly
   Kermany children), whole images;
1. ``adult_controls``: adults only, NIH controls, COVID-CXNet hospital films;
2. ``lung_crop``: + every image cropped to its lungs (the study's lung U-Net, 8% margin);
3. ``standardised``: + CLAHE intensity standardisation;
4. ``balanced``: + sampling balanced by class, source and view;
5. ``outside_lungs``: + the outside of the lungs swapped between images in half the batches'
   images (augmentation).

Research software, not a diagnostic device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "ABLATION_MODELS",
    "ADULT_COMPOSITION",
    "LUNG_CROP_MARGIN",
    "STUDY_CONFIGURATIONS",
    "StudyConfiguration",
    "get_configuration",
]

ABLATION_MODELS: tuple[str, ...] = ("cnn_lstm", "resnet", "dual_channel")
"""The model families every configuration trains (registry keys)."""
LUNG_CROP_MARGIN = 0.08
"""Margin of the study's lung crop: 8% of the lungs' box on every side."""


@dataclass(frozen=True)
class StudyConfiguration:
    """One step of the ablation.

    Attributes:
        key: Folder name under ``<output-dir>/models/`` and results key (``"2_lung_crop"``).
        title: How tables name it.
        adds: What it adds to the configuration before it, one sentence.
        composition: The Radiography composition (`hf_covid.data.public.class_maps`).
        classes: The classes its models predict (None: every class the composition fills).
        lung_crop: Crop every image to its lungs with the study's U-Net.
        intensity_standardization: ``"none"``, ``"equalize"`` or ``"clahe"``.
        balanced_by: Columns besides the class that the sampler balances (empty: class weights).
        augmentation: Extra augmentation settings (the outside-the-lungs step).
    """

    key: str
    title: str
    adds: str
    composition: str
    classes: tuple[str, ...] | None = None
    lung_crop: bool = False
    intensity_standardization: str = "none"
    balanced_by: tuple[str, ...] = ()
    augmentation: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_unet(self) -> bool:
        """Whether every image needs the U-Net's mask (crop or outside-the-lungs step)."""
        return self.lung_crop or bool(self.augmentation.get("outside_lungs_probability"))

    @property
    def preprocessing_key(self) -> tuple:
        """What decides the images a model sees: configurations with the same key share their
        collection probe (sampling and augmentation change training, not the images)."""
        return (self.composition, self.lung_crop, self.intensity_standardization)

    def recipe_overrides(self, unet_dir: Path, takes_mask: bool) -> dict[str, Any]:
        """The recipe values this configuration sets, for a family (``takes_mask``: the
        dual-channel model, which always gets the U-Net's mask)."""
        values: dict[str, Any] = {
            "composition": self.composition,
            "classes": list(self.classes) if self.classes else None,
            "intensity_standardization": self.intensity_standardization,
        }
        if takes_mask or self.needs_unet:
            values["mask_model"] = str(unet_dir)
        if self.lung_crop:
            values["lung_crop_margin"] = LUNG_CROP_MARGIN
        if self.balanced_by:
            values |= {"imbalance": "balanced_sampler", "balance_by": list(self.balanced_by)}
        if self.augmentation:
            values["augmentation"] = dict(self.augmentation)
        return values


_PEDIATRIC_CLASSES = ("COVID", "Normal", "Viral Pneumonia")

STUDY_CONFIGURATIONS: tuple[StudyConfiguration, ...] = (
    StudyConfiguration(
        key="0_pediatric_controls",
        title="(0) first study's composition",
        adds="COVID from ieee8023, controls mostly Kermany children; whole images",
        composition="pediatric_controls",
        classes=_PEDIATRIC_CLASSES,
    ),
    StudyConfiguration(
        key="1_adult_controls",
        title="(1) adult controls, hospital COVID films",
        adds="adults only; NIH controls and Lung_Opacity; COVID-CXNet hospital films with the "
        "ieee8023 COVID figures",
        composition="adult_controls",
    ),
    StudyConfiguration(
        key="2_lung_crop",
        title="(2) + lung crop",
        adds="every image cropped to its lungs (U-Net box + 8%)",
        composition="adult_controls",
        lung_crop=True,
    ),
    StudyConfiguration(
        key="3_standardised",
        title="(3) + CLAHE",
        adds="contrast-limited adaptive histogram equalisation after the crop",
        composition="adult_controls",
        lung_crop=True,
        intensity_standardization="clahe",
    ),
    StudyConfiguration(
        key="4_balanced",
        title="(4) + balanced sampling",
        adds="every class equally likely, and within a class every source x view",
        composition="adult_controls",
        lung_crop=True,
        intensity_standardization="clahe",
        balanced_by=("source", "view"),
    ),
    StudyConfiguration(
        key="5_outside_lungs",
        title="(5) + outside-lungs swap",
        adds="half the training images get another image's outside of the lungs",
        composition="adult_controls",
        lung_crop=True,
        intensity_standardization="clahe",
        balanced_by=("source", "view"),
        augmentation=MappingProxyType(
            {"outside_lungs_probability": 0.5, "outside_lungs_fill": "swap"}
        ),
    ),
)
"""The ablation, in order (each adds one step to the one before)."""

ADULT_COMPOSITION = STUDY_CONFIGURATIONS[1]
"""The first configuration on the adult composition: its composition holds the hospital films
and the adult Normals that every configuration's unseen-hospital test is made of."""


def get_configuration(key: str) -> StudyConfiguration:
    """The configuration ``key``.

    Raises:
        KeyError: an unknown key; the message lists the known ones.
    """
    for configuration in STUDY_CONFIGURATIONS:
        if configuration.key == key:
            return configuration
    known = ", ".join(c.key for c in STUDY_CONFIGURATIONS)
    raise KeyError(f"unknown study configuration {key!r}; known: {known}")
