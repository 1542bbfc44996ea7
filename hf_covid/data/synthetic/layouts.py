"""Writing phantoms in the folder layouts of the two public datasets that hf_covid reads.

* :func:`generate_radiography`: the Kaggle *COVID-19 Radiography Database* (Chowdhury et al. 2020,
  Rahman et al. 2021): ``<class>/images/<class>-<n>.png`` (299x299 grayscale),
  ``<class>/masks/<class>-<n>.png`` (256x256 lung masks, 0/255) and ``<class>.metadata.xlsx``
  (FILE NAME / FORMAT / SIZE / URL) for COVID, Lung_Opacity, Normal and Viral Pneumonia.
* :func:`generate_xray_ct`: the Mendeley *Extensive COVID-19 X-Ray and CT Chest Images Dataset*
  (El-Shafai and Abd El-Samie 2020): ``X-ray/{COVID,Non-COVID}/`` and ``CT/{COVID,Non-COVID}/``,
  JPEG and PNG of mixed sizes, with no patient identifiers (as in the real data).
* :func:`generate_paired_xray_ct`: the same layout where every phantom patient has one X-ray and one
  CT (shared body size and lesion side/extent), named in ``metadata.csv``
  (``file, modality, label, patient_id``). The real dataset has no such pairing.

Every image has a binary (0/255) lesion ground-truth mask of the same size, all zero for Normal
and Non-COVID: ``<root>/lesion_masks/<class>/<class>-<n>.png`` for the radiography layout,
``<root>/lesion_masks/<modality folder>/<label>/<image stem>.png`` for the X-ray + CT layouts;
kept outside the class folders so that dataset builders do not take them for data. With
``shortcut=True`` a class-correlated bright square is stamped into a corner of 90% of the images of
each class and its box is listed in ``<root>/shortcut_markers.csv`` (``file, x0, y0, x1, y1``;
pixels, end exclusive), to test shortcut audits.

Every image is drawn from its own seed, derived from the layout, its class and its index, so the
same seed gives the same bytes whatever the number of images per class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

from .ct import render_ct
from .files import prepare_output, save_image, save_mask, write_csv, write_workbook
from .render import (
    CONSOLIDATION,
    GROUND_GLASS,
    INTERSTITIAL,
    Phantom,
    PhantomPatient,
    difficulty_level,
)
from .xray import render_xray

__all__ = [
    "BINARY_FINDINGS",
    "CT_FOLDER",
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
    "generate_all",
    "generate_paired_xray_ct",
    "generate_radiography",
    "generate_xray_ct",
]

RADIOGRAPHY_FINDINGS: dict[str, str | None] = {
    "COVID": GROUND_GLASS,
    "Lung_Opacity": CONSOLIDATION,
    "Normal": None,
    "Viral Pneumonia": INTERSTITIAL,
}
"""Finding drawn for each class of the radiography layout."""

BINARY_FINDINGS: dict[str, str | None] = {"Non-COVID": None, "COVID": GROUND_GLASS}
"""Finding drawn for each class of the X-ray + CT layouts (X-ray and CT alike)."""

XRAY_FOLDER = "X-ray"
CT_FOLDER = "CT"
LESION_MASK_FOLDER = "lesion_masks"
SHORTCUT_MARKERS_FILE = "shortcut_markers.csv"
PAIRED_METADATA_FILE = "metadata.csv"
MIN_IMAGE_SIZE = 32
SHORTCUT_PROBABILITY = 0.9
"""Fraction of the images of a class that carry the class's corner marker when ``shortcut=True``."""

SOURCE_URLS_PER_CLASS = 5
"""Fake source URLs per class in the radiography metadata (uneven shares), for per-source splits."""
_SOURCE_WEIGHTS = (0.3, 0.25, 0.2, 0.15, 0.1)
_SOURCE_NAMES = ("source-a", "source-b", "source-c", "source-d", "source-e")

RADIOGRAPHY_FOLDER = "radiography"
XRAY_CT_FOLDER = "xray_ct"
PAIRED_XRAY_CT_FOLDER = "xray_ct_paired"
"""Sub-folders that :func:`generate_all` writes the three layouts to."""

# Seed-sequence spawn keys keep each layout's images independent of the other layouts and of the
# number of images per class: image (class c, index i) of a layout always gets the same seed.
_RADIOGRAPHY_STREAM = 0
_XRAY_CT_STREAM = 1
_PAIRED_STREAM = 2


@dataclass(frozen=True)
class _Modality:
    """How one modality of the X-ray + CT layouts is drawn and where it goes."""

    folder: str
    render: Callable[..., Phantom]
    square_probability: float
    """Share of square images (X-rays are more often not square than CT slices)."""


_MODALITIES: dict[str, _Modality] = {
    "xray": _Modality(XRAY_FOLDER, render_xray, square_probability=0.4),
    "ct": _Modality(CT_FOLDER, render_ct, square_probability=0.7),
}


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_size(name: str, value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < MIN_IMAGE_SIZE
    ):
        raise ValueError(
            f"{name} must be an integer of at least {MIN_IMAGE_SIZE} pixels, got {value!r}"
        )
    return int(value)


def _check_size_range(size_range: object) -> tuple[int, int]:
    if not isinstance(size_range, Sequence) or isinstance(size_range, str) or len(size_range) != 2:
        raise ValueError(f"size_range must be (min_size, max_size), got {size_range!r}")
    low = _check_size("size_range[0]", size_range[0])
    high = _check_size("size_range[1]", size_range[1])
    if low > high:
        raise ValueError(f"size_range must have min_size <= max_size, got {tuple(size_range)}")
    return low, high


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _image_rngs(seed: int, *key: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators for one image: content, and extras (source URL, marker).

    Keeping the extras apart means that ``shortcut=True`` changes nothing but the marker.
    """
    content, extras = np.random.SeedSequence(seed, spawn_key=key).spawn(2)
    return np.random.default_rng(content), np.random.default_rng(extras)


def _stamp_marker(
    image: np.ndarray, corner: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Stamp the shortcut marker into ``corner`` of 90% of the images.

    The marker looks like a radiographer's side marker: a white "L" on a black square, visible on
    any background. Corners: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Returns the
    image and the marker's (x0, y0, x1, y1) box, end exclusive, or None where none was stamped.
    """
    if rng.random() >= SHORTCUT_PROBABILITY:
        return image, None
    side = max(5, round(0.08 * min(image.shape)))
    margin = max(1, round(0.03 * min(image.shape))) + int(rng.integers(0, 3))
    height, width = image.shape
    x0 = margin if corner % 2 == 0 else width - margin - side
    y0 = margin if corner < 2 else height - margin - side
    stroke = max(1, side // 4)
    glyph = np.zeros((side, side), dtype=np.uint8)
    glyph[1:-1, 1 : 1 + stroke] = 255
    glyph[-1 - stroke : -1, 1:-1] = 255
    stamped = image.copy()
    stamped[y0 : y0 + side, x0 : x0 + side] = glyph
    return stamped, (x0, y0, x0 + side, y0 + side)


class _ShortcutMarkers:
    """The shortcut markers of one layout: stamped when enabled, their boxes kept for the CSV."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.rows: list[tuple[object, ...]] = []

    def stamp(
        self, image: np.ndarray, corner: int, rng: np.random.Generator, relative: Path
    ) -> np.ndarray:
        """Return ``image`` with the marker of ``corner`` (when enabled and drawn for it)."""
        if not self.enabled:
            return image
        stamped, box = _stamp_marker(image, corner, rng)
        if box is not None:
            self.rows.append((relative.as_posix(), *box))
        return stamped

    def write(self, root: Path) -> None:
        """Write ``shortcut_markers.csv`` under ``root`` when markers are enabled."""
        if self.enabled:
            write_csv(root / SHORTCUT_MARKERS_FILE, ("file", "x0", "y0", "x1", "y1"), self.rows)


def _lesion_mask_path(root: Path, relative_image: Path) -> Path:
    """``lesion_masks/<image path without an images/ folder>.png``."""
    parts = [part for part in relative_image.with_suffix(".png").parts if part != "images"]
    return root.joinpath(LESION_MASK_FOLDER, *parts)


def _source_url(class_name: str, rng: np.random.Generator) -> str:
    slug = class_name.lower().replace(" ", "-").replace("_", "-")
    source = _SOURCE_NAMES[int(rng.choice(SOURCE_URLS_PER_CLASS, p=_SOURCE_WEIGHTS))]
    return f"https://synthetic.hf-covid/{slug}/{source}"


def generate_radiography(
    output_dir: str | Path,
    *,
    images_per_class: int = 50,
    image_size: int = 299,
    mask_size: int = 256,
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a phantom COVID-19 Radiography Database (Kaggle layout).

    Layout: ``<class>/images/<class>-<n>.png`` (``image_size`` square, grayscale),
    ``<class>/masks/<class>-<n>.png`` (``mask_size`` square lung masks, 0/255),
    ``<class>.metadata.xlsx`` (FILE NAME, FORMAT, SIZE, URL; each image from one of
    :data:`SOURCE_URLS_PER_CLASS` fake sources of its class), and lesion ground truth under
    ``lesion_masks/<class>/<class>-<n>.png`` at the image size (empty for Normal).

    Args:
        output_dir: folder to write; must be empty or absent unless ``overwrite``.
        images_per_class: images of each of the four classes.
        image_size: image side in pixels (the real data: 299).
        mask_size: lung-mask side in pixels (the real data: 256).
        seed: image (class, n) is the same for the same seed, whatever ``images_per_class``.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"`` (lesion contrast/extent, noise).
        shortcut: stamp a class-correlated corner marker (see ``shortcut_markers.csv``).
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.

    Returns:
        The output folder.

    Raises:
        ValueError: for a count, size, seed or difficulty that is not valid.
        FileExistsError: when ``output_dir`` is not empty and ``overwrite`` is False.
    """
    count = _check_count("images_per_class", images_per_class)
    image_size = _check_size("image_size", image_size)
    mask_size = _check_size("mask_size", mask_size)
    seed = _check_seed(seed)
    difficulty_level(difficulty)
    owned = [
        *RADIOGRAPHY_LABELS,
        *(f"{name}.metadata.xlsx" for name in RADIOGRAPHY_LABELS),
        LESION_MASK_FOLDER,
        SHORTCUT_MARKERS_FILE,
    ]
    root = prepare_output(output_dir, owned, overwrite)
    markers = _ShortcutMarkers(shortcut)
    with tqdm(
        total=count * len(RADIOGRAPHY_LABELS), desc="radiography", disable=not progress
    ) as bar:
        for class_index, class_name in enumerate(RADIOGRAPHY_LABELS):
            metadata = []
            for index in range(count):
                rng, extras = _image_rngs(seed, _RADIOGRAPHY_STREAM, class_index, index)
                patient = PhantomPatient.sample(rng, RADIOGRAPHY_FINDINGS[class_name])
                phantom = render_xray(
                    patient, height=image_size, width=image_size, rng=rng, difficulty=difficulty
                )
                stem = f"{class_name}-{index + 1}"
                relative = Path(class_name, "images", f"{stem}.png")
                url = _source_url(class_name, extras)
                save_image(
                    root / relative, markers.stamp(phantom.image, class_index, extras, relative)
                )
                save_mask(
                    root / class_name / "masks" / f"{stem}.png",
                    phantom.lung_mask,
                    (mask_size, mask_size),
                )
                save_mask(_lesion_mask_path(root, relative), phantom.lesion_mask)
                metadata.append((stem, "PNG", f"{mask_size}*{mask_size}", url))
                bar.update()
            write_workbook(
                root / f"{class_name}.metadata.xlsx",
                ("FILE NAME", "FORMAT", "SIZE", "URL"),
                metadata,
            )
    markers.write(root)
    return root


@dataclass(frozen=True)
class _XrayCtImage:
    """One image of the X-ray + CT layouts, before it is drawn and written.

    Attributes:
        modality: a key of :data:`_MODALITIES` (``"xray"`` or ``"ct"``).
        label_index: index of the label in ``BINARY_LABELS`` (also the marker's corner).
        stem: file name without its suffix (the suffix is drawn from ``rng``).
        patient: the phantom patient to draw.
        patient_id: the patient's id in the paired layout, None in the unpaired one.
        rng: content generator (file format, image size, rendering).
        extras: generator for the shortcut marker.
    """

    modality: str
    label_index: int
    stem: str
    patient: PhantomPatient
    patient_id: str | None
    rng: np.random.Generator
    extras: np.random.Generator

    @property
    def label(self) -> str:
        """The image's class name."""
        return BINARY_LABELS[self.label_index]


def _random_shape(
    rng: np.random.Generator, size_range: tuple[int, int], square_probability: float
) -> tuple[int, int]:
    low, high = size_range
    height = int(rng.integers(low, high + 1))
    if rng.random() < square_probability:
        return height, height
    width = int(np.clip(round(height * float(rng.uniform(0.8, 1.25))), low, high))
    return height, width


def _write_xray_ct_layout(
    output_dir: str | Path,
    images: Callable[[int, int], Iterable[_XrayCtImage]],
    *,
    count_name: str,
    count: int,
    size_range: tuple[int, int],
    seed: int,
    difficulty: str,
    shortcut: bool,
    overwrite: bool,
    progress: bool,
    description: str,
    extra_files: Sequence[str] = (),
) -> tuple[Path, list[tuple[str, _XrayCtImage]]]:
    """The set-up and writing that both X-ray + CT layouts share.

    Checks the arguments, prepares the folder, then draws and writes every image that
    ``images(count, seed)`` yields (a JPEG or PNG of a random size, its lesion mask and its
    shortcut marker), and the marker list.

    Args:
        output_dir: folder to write.
        images: yields the layout's images, in writing order, from the checked count and seed.
        count_name: the argument that ``count`` came from, for error messages.
        count: images (or patients) of each label in each modality.
        size_range: (min, max) image side in pixels.
        seed: the layout's seed.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        shortcut: stamp a label-correlated corner marker.
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.
        description: the progress bar's label.
        extra_files: files the layout writes besides the modality folders and the ground truth.

    Returns:
        The output folder, and each written image with its path relative to it.
    """
    count = _check_count(count_name, count)
    size_range = _check_size_range(size_range)
    seed = _check_seed(seed)
    difficulty_level(difficulty)
    owned = [XRAY_FOLDER, CT_FOLDER, LESION_MASK_FOLDER, SHORTCUT_MARKERS_FILE, *extra_files]
    root = prepare_output(output_dir, owned, overwrite)
    markers = _ShortcutMarkers(shortcut)
    written = []
    total = count * len(BINARY_LABELS) * len(_MODALITIES)
    with tqdm(total=total, desc=description, disable=not progress) as bar:
        for image in images(count, seed):
            modality = _MODALITIES[image.modality]
            suffix = ".jpg" if image.rng.random() < 0.5 else ".png"
            relative = Path(modality.folder, image.label, f"{image.stem}{suffix}")
            height, width = _random_shape(image.rng, size_range, modality.square_probability)
            phantom = modality.render(
                image.patient, height=height, width=width, rng=image.rng, difficulty=difficulty
            )
            pixels = markers.stamp(phantom.image, image.label_index, image.extras, relative)
            save_image(root / relative, pixels)
            save_mask(_lesion_mask_path(root, relative), phantom.lesion_mask)
            written.append((relative.as_posix(), image))
            bar.update()
    markers.write(root)
    return root, written


def _unpaired_images(count: int, seed: int) -> Iterator[_XrayCtImage]:
    """Every modality, label and index of the unpaired layout; each image its own patient."""
    for modality_index, modality in enumerate(_MODALITIES):
        for label_index, label in enumerate(BINARY_LABELS):
            for index in range(count):
                key = (_XRAY_CT_STREAM, modality_index, label_index, index)
                rng, extras = _image_rngs(seed, *key)
                patient = PhantomPatient.sample(rng, BINARY_FINDINGS[label])
                stem = f"{label} ({index + 1})"
                yield _XrayCtImage(modality, label_index, stem, patient, None, rng, extras)


def _paired_images(count: int, seed: int) -> Iterator[_XrayCtImage]:
    """Both modalities of each patient, patients interleaving the labels (P0001 Non-COVID, ...)."""
    digits = max(4, len(str(count * len(BINARY_LABELS))))
    for index in range(count):
        for label_index, label in enumerate(BINARY_LABELS):
            patient_id = f"P{index * len(BINARY_LABELS) + label_index + 1:0{digits}d}"
            patient_seed = np.random.SeedSequence(
                seed, spawn_key=(_PAIRED_STREAM, label_index, index)
            )
            patient = PhantomPatient.sample(
                np.random.default_rng(patient_seed), BINARY_FINDINGS[label]
            )
            for modality_index, modality in enumerate(_MODALITIES):
                rng, extras = _image_rngs(seed, _PAIRED_STREAM, label_index, index, modality_index)
                stem = f"{patient_id}_{modality}"
                yield _XrayCtImage(modality, label_index, stem, patient, patient_id, rng, extras)


def generate_xray_ct(
    output_dir: str | Path,
    *,
    images_per_class: int = 50,
    size_range: tuple[int, int] = (256, 512),
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a phantom Extensive COVID-19 X-Ray and CT dataset (Mendeley layout, unpaired).

    Layout: ``X-ray/{COVID,Non-COVID}/<label> (<n>).{jpg,png}`` and the same under ``CT/``,
    grayscale JPEG or PNG of mixed sizes (X-rays often non-square), with lesion ground truth under
    ``lesion_masks/<modality>/<label>/<label> (<n>).png`` (empty for Non-COVID). The X-ray and CT
    of the same name are different phantom patients: the layout has no patient identity.

    Args:
        output_dir: folder to write; must be empty or absent unless ``overwrite``.
        images_per_class: images of each label in each modality.
        size_range: (min, max) image side in pixels.
        seed: image (modality, label, n) is the same for the same seed.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        shortcut: stamp a label-correlated corner marker (see ``shortcut_markers.csv``).
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.

    Returns:
        The output folder.

    Raises:
        ValueError: for a count, size range, seed or difficulty that is not valid.
        FileExistsError: when ``output_dir`` is not empty and ``overwrite`` is False.
    """
    root, _ = _write_xray_ct_layout(
        output_dir,
        _unpaired_images,
        count_name="images_per_class",
        count=images_per_class,
        size_range=size_range,
        seed=seed,
        difficulty=difficulty,
        shortcut=shortcut,
        overwrite=overwrite,
        progress=progress,
        description="x-ray + ct",
    )
    return root


def generate_paired_xray_ct(
    output_dir: str | Path,
    *,
    patients_per_class: int = 50,
    size_range: tuple[int, int] = (256, 512),
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a phantom X-ray + CT dataset where every patient has one X-ray and one CT.

    Same layout as :func:`generate_xray_ct`, files named ``<modality folder>/<label>/<patient
    id>_{xray,ct}.{jpg,png}``, plus ``metadata.csv`` with columns ``file`` (path relative to the
    root), ``modality`` (``xray`` or ``ct``), ``label`` and ``patient_id``. Both images of a patient
    share the body size and the lesion side and extent. Patient ids interleave the labels
    (``P0001`` Non-COVID, ``P0002`` COVID, ...), so they do not depend on ``patients_per_class``.

    Args:
        output_dir: folder to write; must be empty or absent unless ``overwrite``.
        patients_per_class: patients of each label.
        size_range: (min, max) image side in pixels.
        seed: patient (label, n) is the same for the same seed.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        shortcut: stamp a label-correlated corner marker (see ``shortcut_markers.csv``).
        overwrite: replace the synthetic data already in ``output_dir``.
        progress: show a progress bar.

    Returns:
        The output folder.

    Raises:
        ValueError: for a count, size range, seed or difficulty that is not valid.
        FileExistsError: when ``output_dir`` is not empty and ``overwrite`` is False.
    """
    root, written = _write_xray_ct_layout(
        output_dir,
        _paired_images,
        count_name="patients_per_class",
        count=patients_per_class,
        size_range=size_range,
        seed=seed,
        difficulty=difficulty,
        shortcut=shortcut,
        overwrite=overwrite,
        progress=progress,
        description="paired x-ray + ct",
        extra_files=(PAIRED_METADATA_FILE,),
    )
    rows = [(file, image.modality, image.label, image.patient_id) for file, image in written]
    write_csv(root / PAIRED_METADATA_FILE, ("file", "modality", "label", "patient_id"), rows)
    return root


def generate_all(
    output_dir: str | Path,
    *,
    images_per_class: int = 50,
    image_size: int = 299,
    mask_size: int = 256,
    size_range: tuple[int, int] = (256, 512),
    seed: int = 0,
    difficulty: str = "medium",
    shortcut: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write all three layouts under ``output_dir``.

    ``radiography/`` (:func:`generate_radiography`), ``xray_ct/`` (:func:`generate_xray_ct`) and
    ``xray_ct_paired/`` (:func:`generate_paired_xray_ct`, ``images_per_class`` patients per label).

    Returns:
        The output folder.
    """
    # Check every argument before anything is written.
    _check_count("images_per_class", images_per_class)
    _check_size("image_size", image_size)
    _check_size("mask_size", mask_size)
    _check_size_range(size_range)
    _check_seed(seed)
    difficulty_level(difficulty)
    root = prepare_output(
        output_dir, (RADIOGRAPHY_FOLDER, XRAY_CT_FOLDER, PAIRED_XRAY_CT_FOLDER), overwrite
    )
    common = {"seed": seed, "difficulty": difficulty, "shortcut": shortcut, "progress": progress}
    generate_radiography(
        root / RADIOGRAPHY_FOLDER,
        images_per_class=images_per_class,
        image_size=image_size,
        mask_size=mask_size,
        **common,
    )
    generate_xray_ct(
        root / XRAY_CT_FOLDER, images_per_class=images_per_class, size_range=size_range, **common
    )
    generate_paired_xray_ct(
        root / PAIRED_XRAY_CT_FOLDER,
        patients_per_class=images_per_class,
        size_range=size_range,
        **common,
    )
    return root
