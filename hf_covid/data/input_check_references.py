"""The reference images the input check is fitted and evaluated on, measured one by one.

None is copied or stored; each image is reduced to its `measure_image` features at once.

* Real chest images from the public collections folder (its ``manifest.csv``): ieee8023 frontal
  (PA/AP/AP supine) and lateral X-rays and axial CT figures, Kermany pediatric X-rays, COVID-CT
  slices, DICOM test files (evaluation only);
* the project's phantoms (`render_xray`, `render_ct`), some re-encoded as JPEG;
* non-medical images: photographs, logos and drawings shipped inside installed packages
  (matplotlib, gradio, scikit-learn, networkx, ...), random crops of them in colour and grey, and
  generated noise, gradients, shapes, stripes, text and matplotlib charts.

Held out for evaluation: 30% of the patients (ieee8023, Kermany), of the source figures (COVID-CT),
of the package image files and of the generator seeds, chosen by a hash of the group name; the
DICOM files and the coronal CT figures are evaluation only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, ImageOps
from scipy import ndimage

from .dicom import DICOM_SUFFIXES
from .image_reading import load_image
from .input_check import (
    CT_SLICE,
    FRONTAL_XRAY,
    LATERAL_XRAY,
    NON_MEDICAL,
    PHANTOM_CT,
    PHANTOM_XRAY,
    ImageFeatures,
    measure_image,
)
from .luminance import LUMA_WEIGHTS
from .synthetic import (
    DIFFICULTIES,
    GROUND_GLASS,
    RADIOGRAPHY_FINDINGS,
    PhantomPatient,
    render_ct,
    render_xray,
)

__all__ = [
    "GENERATORS",
    "HELD_OUT_FRACTION",
    "Sample",
    "generated_samples",
    "is_held_out",
    "package_image_samples",
    "phantom_samples",
    "public_samples",
    "read_upload",
]

HELD_OUT_FRACTION = 0.3
PACKAGE_IMAGE_FOLDERS = (
    "matplotlib/mpl-data/sample_data",
    "gradio/media_assets/images",
    "gradio/test_data",
    "sklearn/datasets/images",
    "networkx/drawing/tests/baseline",
    "sympy/plotting/tests",
    "trackio/assets",
    "playwright/driver/package/lib/server/chromium",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
"""Endings of the package image files taken as non-medical images."""
FRONTAL_VIEWS = ("PA", "AP", "AP Supine")
"""ieee8023 views taken as frontal X-rays."""
_LUMINANCE = LUMA_WEIGHTS.astype(np.float32)


@dataclass(frozen=True)
class Sample:
    """One measured reference image.

    Attributes:
        features: what the check measured.
        kind: the kind it is fitted as, or None for an evaluation-only image.
        group: the report row it is counted in.
        held_out: kept out of fitting.
    """

    features: ImageFeatures
    kind: str | None
    group: str
    held_out: bool


def is_held_out(group_key: str) -> bool:
    """Deterministic held-out choice by a hash of the patient / figure / file / seed key."""
    digest = hashlib.sha256(group_key.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELD_OUT_FRACTION


def read_upload(path: Path) -> np.ndarray:
    """A file as the app would see it: colour files as (H, W, 3) in [0, 1], others grayscale."""
    if path.suffix.lower() not in DICOM_SUFFIXES:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA", "P", "CMYK", "PA", "LA"):
                rgb = ImageOps.exif_transpose(image).convert("RGB")
                return np.asarray(rgb, dtype=np.float32) / 255.0
    return load_image(path)


# --------------------------------------------------------------------------------------------
# Real chest images
# --------------------------------------------------------------------------------------------


def public_samples(root: Path) -> Iterator[Sample]:
    """The public collections: ieee8023, Kermany, COVID-CT and the DICOM files."""
    manifest = {row["path"]: row for row in read_csv(root / "manifest.csv")}
    for row in read_csv(root / "ieee8023" / "metadata.csv"):
        relative = f"ieee8023/images/{row['filename']}"
        if relative not in manifest:
            continue
        modality, view = row["modality"], row["view"]
        if modality == "X-ray" and view in FRONTAL_VIEWS:
            kind, group = FRONTAL_XRAY, "frontal X-ray (ieee8023)"
        elif modality == "X-ray" and view == "L":
            kind, group = LATERAL_XRAY, "lateral X-ray (ieee8023)"
        elif modality == "CT" and view == "Axial":
            kind, group = CT_SLICE, "axial CT figure (ieee8023)"
        elif modality == "CT" and view == "Coronal":
            kind, group = None, "coronal CT figure (ieee8023)"
        else:
            continue
        patient = manifest[relative]["patient_id"] or row["patientid"]
        held_out = kind is None or is_held_out(f"ieee8023/{patient}")
        yield from real_image_samples(read_upload(root / relative), kind, group, held_out)
    for path, row in manifest.items():
        if row["dataset"] == "kermany" and row["kind"] == "image":
            held_out = is_held_out(f"kermany/{row['patient_id']}")
            image = read_upload(root / path)
            group = "frontal X-ray (Kermany, pediatric)"
            yield from real_image_samples(image, FRONTAL_XRAY, group, held_out)
        elif row["dataset"] == "covid_ct" and row["kind"] == "image":
            held_out = is_held_out(f"covid_ct/{covid_ct_figure(path)}")
            features = measure_image(read_upload(root / path))
            yield Sample(features, CT_SLICE, "axial CT slice (COVID-CT)", held_out)
    for row in read_csv(root / "dicom" / "dicom_info.csv"):
        image = load_image(root / row["path"])
        if row["modality"] == "CR":
            # The MONOCHROME1 file is the same pixels relabelled: load_image shows it inverted.
            inverted = row["photometric_interpretation"] == "MONOCHROME1"
            group = f"frontal X-ray (DICOM CR{', relabelled MONOCHROME1' if inverted else ''})"
        else:
            plane = Path(row["path"]).parent.name
            group = "axial CT slice (DICOM)" if plane == "axial" else f"{plane} CT slice (DICOM)"
        yield Sample(measure_image(image), None, group, True)


def real_image_samples(
    image: np.ndarray, kind: str | None, group: str, held_out: bool
) -> Iterator[Sample]:
    """One public image; a held-out frontal X-ray also upscaled, as a full-size upload."""
    yield Sample(measure_image(image), kind, group, held_out)
    if held_out and kind == FRONTAL_XRAY:
        yield Sample(measure_image(upscaled(image)), None, f"{group}, upscaled to 2000 px", True)


def read_csv(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV file with a header."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def upscaled(image: np.ndarray, long_side: int = 2000) -> np.ndarray:
    """The image resized (Lanczos) to ``long_side`` pixels, as a full-size upload would be."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    size = (round(width * scale), round(height * scale))
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(3)]
    resized = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(c), mode="F").resize(
                size, Image.Resampling.LANCZOS
            )
        )
        for c in channels
    ]
    return np.clip(resized[0] if image.ndim == 2 else np.stack(resized, axis=-1), 0.0, 1.0)


def covid_ct_figure(path: str) -> str:
    """The source figure of a COVID-CT slice: its folder and file name without slice suffixes."""
    folder, name = path.split("/")[-2:]
    stem = re.sub(r"%\d+$", "", Path(name).stem)
    figure = re.sub(r"-p\d+-\d+.*$", "", stem)
    return f"{folder}/{figure}"


# --------------------------------------------------------------------------------------------
# Phantoms
# --------------------------------------------------------------------------------------------


def phantom_samples(count: int) -> Iterator[Sample]:
    """Rendered X-ray and CT phantoms of random size, difficulty and (JPEG or not) encoding."""
    xray_findings = list(RADIOGRAPHY_FINDINGS.values())
    for seed in range(count):
        rng = np.random.default_rng([7, seed])
        held_out = is_held_out(f"phantom/{seed}")
        difficulty = str(rng.choice(list(DIFFICULTIES)))
        for modality in ("xray", "ct"):
            height = int(rng.integers(200, 640))
            width = height if rng.random() < 0.5 else int(height * rng.uniform(0.8, 1.25))
            if modality == "xray":
                finding = xray_findings[int(rng.integers(len(xray_findings)))]
                patient = PhantomPatient.sample(rng, finding)
                image = render_xray(
                    patient, height=height, width=width, rng=rng, difficulty=difficulty
                )
                kind, group = PHANTOM_XRAY, "X-ray phantom"
            else:
                patient = PhantomPatient.sample(rng, GROUND_GLASS if rng.random() < 0.5 else None)
                image = render_ct(
                    patient, height=height, width=width, rng=rng, difficulty=difficulty
                )
                kind, group = PHANTOM_CT, "CT phantom"
            pixels = image.image
            if rng.random() < 0.5:
                pixels = jpeg_round_trip(pixels, int(rng.integers(70, 96)))
            yield Sample(measure_image(pixels / 255.0), kind, group, held_out)


def jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Encode a uint8 image as JPEG and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


# --------------------------------------------------------------------------------------------
# Non-medical images
# --------------------------------------------------------------------------------------------


def package_image_files() -> list[Path]:
    """Photographs, logos and drawings shipped inside installed packages (at least 8 kB)."""
    site_packages = Path(matplotlib.__file__).parents[1]
    return sorted(
        path
        for folder in PACKAGE_IMAGE_FOLDERS
        for path in (site_packages / folder).glob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stat().st_size >= 8192
    )


def package_image_samples(crops_per_file: int) -> Iterator[Sample]:
    """Each package image whole and as random crops, in colour and in grey."""
    for file_index, path in enumerate(package_image_files()):
        with Image.open(path) as opened:
            rgba = opened.convert("RGBA")
        # Transparent parts shown on white, as a browser would.
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        photo = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), np.float32) / 255
        held_out = is_held_out(f"package/{path.name}")
        rng = np.random.default_rng([11, file_index])
        for crop_index in range(crops_per_file + 1):
            image = photo if crop_index == 0 else random_crop(photo, rng)
            yield Sample(measure_image(image), NON_MEDICAL, "photo or drawing, colour", held_out)
            grey = image @ _LUMINANCE
            yield Sample(measure_image(grey), NON_MEDICAL, "photo or drawing, grey", held_out)


def random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 40-100% of each side, sometimes mirrored."""
    height, width = image.shape[:2]
    crop_height = max(16, int(height * rng.uniform(0.4, 1.0)))
    crop_width = max(16, int(width * rng.uniform(0.4, 1.0)))
    top = int(rng.integers(0, height - crop_height + 1))
    left = int(rng.integers(0, width - crop_width + 1))
    crop = image[top : top + crop_height, left : left + crop_width]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def noise_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Uniform, Gaussian or smoothed noise."""
    choice = rng.integers(3)
    if choice == 0:
        return rng.random(size, dtype=np.float32)
    if choice == 1:
        return np.clip(rng.normal(0.5, 0.2, size), 0, 1).astype(np.float32)
    smooth = ndimage.gaussian_filter(rng.random(size), float(rng.uniform(2, 20)))
    return ((smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)).astype(np.float32)


def gradient_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A linear or radial gradient, or a flat grey."""
    rows, columns = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    choice = rng.integers(3)
    if choice == 0:
        angle = rng.uniform(0, 2 * np.pi)
        field = np.cos(angle) * columns + np.sin(angle) * rows
    elif choice == 1:
        field = -np.hypot(rows - rng.random(), columns - rng.random())
    else:
        return np.full(size, rng.random(), dtype=np.float32)
    return ((field - field.min()) / (np.ptp(field) + 1e-9)).astype(np.float32)


def shapes_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Filled rectangles and ellipses, or stripes and checkerboards."""
    if rng.random() < 0.3:
        period = int(rng.integers(4, 64))
        rows, columns = np.mgrid[0 : size[0], 0 : size[1]]
        if rng.random() < 0.5:
            return (((rows // period) + (columns // period)) % 2).astype(np.float32)
        return ((columns // period) % 2).astype(np.float32)
    canvas = Image.new("L", (size[1], size[0]), int(rng.integers(256)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 12))):
        x0, x1 = sorted(rng.integers(0, size[1], 2))
        y0, y1 = sorted(rng.integers(0, size[0], 2))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape((int(x0), int(y0), int(x1), int(y1)), fill=int(rng.integers(256)))
    return np.asarray(canvas, np.float32) / 255


def text_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Lines of text, dark on light or light on dark."""
    background = int(rng.choice([255, 0, 230, 30]))
    canvas = Image.new("L", (size[1], size[0]), background)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=int(rng.integers(10, 40)))
    words = ["chest", "report", "patient", "the", "of", "scan", "invoice", "hello", "2024", "page"]
    for line in range(0, size[0], int(rng.integers(14, 50))):
        text = " ".join(rng.choice(words, int(rng.integers(2, 10))))
        draw.text((int(rng.integers(0, 20)), line), text, fill=255 - background, font=font)
    return np.asarray(canvas, np.float32) / 255


def chart_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A matplotlib line, bar or scatter chart, in colour."""
    figure = Figure(figsize=(size[1] / 100, size[0] / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)  # no pyplot: no global figure state to clean up
    axes = figure.add_subplot()
    choice = rng.integers(3)
    if choice == 0:
        axes.plot(np.cumsum(rng.normal(size=(50, 3)), axis=0))
    elif choice == 1:
        axes.bar(range(8), rng.random(8))
    else:
        axes.scatter(*rng.normal(size=(2, 80)), c=rng.random(80))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255


GENERATORS: dict[str, Callable[[np.random.Generator, tuple[int, int]], np.ndarray]] = {
    "generated noise": noise_image,
    "generated gradient or flat": gradient_image,
    "generated shapes or stripes": shapes_image,
    "generated text": text_image,
    "matplotlib chart": chart_image,
}


def generated_samples(count_per_generator: int) -> Iterator[Sample]:
    """Images from each of :data:`GENERATORS`, of random size."""
    for generator_index, (group, generate) in enumerate(GENERATORS.items()):
        for seed in range(count_per_generator):
            rng = np.random.default_rng([13, generator_index, seed])
            size = (int(rng.integers(128, 640)), int(rng.integers(128, 640)))
            held_out = is_held_out(f"{group}/{seed}")
            yield Sample(measure_image(generate(rng, size)), NON_MEDICAL, group, held_out)
