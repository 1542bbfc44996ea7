"""Synthetic chest phantoms: the embedded default data that hf_covid trains and tests on.

The generators write, deterministically from a seed, folders laid out like the two public datasets
that the toolkit reads, so that every builder, model and report can run without downloading
anything: :func:`generate_radiography` (the Kaggle COVID-19 Radiography Database layout),
:func:`generate_xray_ct` (the Mendeley Extensive COVID-19 X-Ray and CT Chest Images layout),
:func:`generate_paired_xray_ct` (the same with one X-ray and one CT per patient, which the real
data does not have) and :func:`generate_all`. Every image comes with a lesion ground-truth mask,
and optionally with a class-correlated corner marker for shortcut audits.

What the phantoms are: PA chest radiographs (:func:`render_xray`) and axial lung-window CT slices
(:func:`render_ct`). Findings by class: COVID, bilateral peripheral lower-zone ground-glass
opacities; Lung_Opacity, one dense lobar consolidation; Viral Pneumonia, a bilateral perihilar
reticular (interstitial) pattern; Normal / Non-COVID, none. Patient size, position, rotation,
exposure and noise vary so much that the intensity histogram alone does not give the class away:
the class is in *where* and *what shape* the opacity is. What is wrong with them: they are not
real anatomy or pathology, every lesion class has one textbook pattern, and nothing here says
anything about real diagnostic accuracy.

Modules: ``render`` (patient and phantom types, difficulty, shared drawing), ``xray`` and ``ct``
(the two renderers), ``files`` (deterministic file writing) and ``layouts`` (the dataset layouts).
"""

from .ct import render_ct
from .layouts import (
    BINARY_FINDINGS,
    CT_FOLDER,
    LESION_MASK_FOLDER,
    MIN_IMAGE_SIZE,
    PAIRED_METADATA_FILE,
    PAIRED_XRAY_CT_FOLDER,
    RADIOGRAPHY_FINDINGS,
    RADIOGRAPHY_FOLDER,
    SHORTCUT_MARKERS_FILE,
    SHORTCUT_PROBABILITY,
    SOURCE_URLS_PER_CLASS,
    XRAY_CT_FOLDER,
    XRAY_FOLDER,
    generate_all,
    generate_paired_xray_ct,
    generate_radiography,
    generate_xray_ct,
)
from .render import (
    CONSOLIDATION,
    DIFFICULTIES,
    FINDINGS,
    GROUND_GLASS,
    INTERSTITIAL,
    Difficulty,
    Phantom,
    PhantomPatient,
)
from .xray import render_xray

__all__ = [
    "BINARY_FINDINGS",
    "CONSOLIDATION",
    "CT_FOLDER",
    "DIFFICULTIES",
    "FINDINGS",
    "GROUND_GLASS",
    "INTERSTITIAL",
    "LESION_MASK_FOLDER",
    "MIN_IMAGE_SIZE",
    "PAIRED_METADATA_FILE",
    "PAIRED_XRAY_CT_FOLDER",
    "RADIOGRAPHY_FINDINGS",
    "RADIOGRAPHY_FOLDER",
    "SHORTCUT_MARKERS_FILE",
    "SHORTCUT_PROBABILITY",
    "SOURCE_URLS_PER_CLASS",
    "XRAY_CT_FOLDER",
    "XRAY_FOLDER",
    "Difficulty",
    "Phantom",
    "PhantomPatient",
    "generate_all",
    "generate_paired_xray_ct",
    "generate_radiography",
    "generate_xray_ct",
    "render_ct",
    "render_xray",
]
