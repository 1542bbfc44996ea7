"""Input check: does an upload look like a frontal chest X-ray (or, in the CT slot, a CT slice)?

A small out-of-distribution check for the app and `ChestPredictor`, numpy/scipy only, no
network and no pretrained weights. Each image is reduced to a few dozen hand-made features
(`measure_image`): aspect ratio, intensity histogram shape, left-right and top-bottom symmetry,
a 5x5 grid of region brightness (the dark lung fields in a bright thorax of a radiograph, the dark
air around the round body of a CT slice), edge, fine-texture and flatness statistics, and, for
colour input, the fraction of clearly coloured pixels. A multinomial logistic model over six kinds
of image (:data:`IMAGE_KINDS`) says which kind the image most resembles, and a Gaussian (shrunk
covariance) fitted to the slot's own kind says whether it is close to the reference images at all,
so an image unlike every kind seen in fitting is flagged too.

The parameters are fitted by :func:`hf_covid.data.input_check_fitting.fit_input_check` (run by
``scripts/fit_input_check.py`` on real public radiographs and CT slices, the project's synthetic
phantoms, photographs and drawings shipped inside installed packages, and generated noise,
gradients, text and charts: :mod:`hf_covid.data.input_check_references`) and stored as JSON next
to this module (``input_check_params.json``); `InputCheck.load` reads them. Measured rates are in
``docs/input_check.md``.

What it is not: a check of image quality, of the patient's age or of the finding, and no medical
device. It only says whether an image looks like the images the models expect; a passed check does
not make a model's answer meaningful.

Example:
    >>> check = InputCheck.load()
    >>> result = check.score(load_image("upload.png"), slot="xray")  # doctest: +SKIP
    >>> result.looks_right, result.reason_code, result.reason  # doctest: +SKIP
    (False, 'ct_slice', 'looks like a CT slice, not a chest X-ray')
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .luminance import LUMA_WEIGHTS

__all__ = [
    "CT_SLICE",
    "DEFAULT_PARAMS_PATH",
    "FEATURE_NAMES",
    "FRONTAL_XRAY",
    "IMAGE_KINDS",
    "LATERAL_XRAY",
    "NON_MEDICAL",
    "PHANTOM_CT",
    "PHANTOM_XRAY",
    "REASONS",
    "SLOT_KINDS",
    "ImageFeatures",
    "InputCheck",
    "InputCheckParams",
    "InputCheckResult",
    "SlotReference",
    "measure_image",
]

DEFAULT_PARAMS_PATH = Path(__file__).with_name("input_check_params.json")
"""The fitted parameters shipped with the package."""

FRONTAL_XRAY = "frontal_xray"
LATERAL_XRAY = "lateral_xray"
CT_SLICE = "ct_slice"
PHANTOM_XRAY = "phantom_xray"
PHANTOM_CT = "phantom_ct"
NON_MEDICAL = "non_medical"
IMAGE_KINDS: tuple[str, ...] = (
    FRONTAL_XRAY,
    LATERAL_XRAY,
    CT_SLICE,
    PHANTOM_XRAY,
    PHANTOM_CT,
    NON_MEDICAL,
)
"""The kinds of image the model tells apart, in the order of its outputs."""

SLOT_KINDS: dict[str, str] = {"xray": FRONTAL_XRAY, "ct": CT_SLICE}
"""The kind of image each upload slot expects."""

REASONS: dict[str, dict[str, str]] = {
    "xray": {
        "ok": "looks like a frontal chest X-ray",
        "lateral_view": "looks like a lateral chest X-ray, not a frontal (PA/AP) one",
        "ct_slice": "looks like a CT slice, not a chest X-ray",
        "phantom": "looks like a synthetic phantom (demo data), not a real chest image",
        "non_medical": "does not look like a medical image (a photograph, drawing, text or noise)",
        "colour_image": "looks like a colour photograph or drawing, not a grayscale X-ray",
        "unfamiliar": "does not look like the frontal chest X-rays this check was fitted on",
    },
    "ct": {
        "ok": "looks like an axial chest CT slice",
        "xray": "looks like an X-ray radiograph, not a CT slice",
        "phantom": "looks like a synthetic phantom (demo data), not a real chest image",
        "non_medical": "does not look like a medical image (a photograph, drawing, text or noise)",
        "colour_image": "looks like a colour photograph or drawing, not a grayscale CT slice",
        "unfamiliar": "does not look like the axial chest CT slices this check was fitted on",
    },
}
"""Plain-words reason for each reason code, per slot. ``"phantom"`` is its own code so that the
app can still run its demo examples (which are phantoms) while saying what they are."""

_KIND_REASON_CODES: dict[str, dict[str, str]] = {
    "xray": {
        LATERAL_XRAY: "lateral_view",
        CT_SLICE: "ct_slice",
        PHANTOM_XRAY: "phantom",
        PHANTOM_CT: "phantom",
        NON_MEDICAL: "non_medical",
    },
    "ct": {
        FRONTAL_XRAY: "xray",
        LATERAL_XRAY: "xray",
        PHANTOM_XRAY: "phantom",
        PHANTOM_CT: "phantom",
        NON_MEDICAL: "non_medical",
    },
}
"""Reason code when the most probable kind is not the slot's own."""

_WORK_SIZE = 128
"""Side of the square grayscale image every feature but aspect ratio and flatness is taken on."""
_MAX_SUBSAMPLED_SIDE = 256
"""Larger images are first subsampled by a whole step to between this many and twice this many
pixels along the shorter side, so that a 2,000 px upload costs about as much as a 448 px one."""
_GRID = 5
_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
_HISTOGRAM_BINS = 32
_COLOUR_CHROMATICITY_OFFSET = 0.05
"""A pixel counts as coloured when its red or green chromaticity differs by more than this from
the image's median (chromaticities sum to 1; grey is 1/3 each)."""
_COLOUR_MIN_BRIGHTNESS = 0.25
"""Pixels darker than this (sum of the three channels) have no reliable hue and are not counted."""
_LUMINANCE = LUMA_WEIGHTS.astype(np.float32)

FEATURE_NAMES: tuple[str, ...] = (
    "log_aspect_ratio",
    *(f"percentile_{p}" for p in _PERCENTILES),
    "std",
    "dark_fraction",
    "bright_fraction",
    "histogram_entropy",
    "left_right_symmetry",
    "top_bottom_symmetry",
    *(f"grid_{row}_{column}" for row in range(_GRID) for column in range(_GRID)),
    "edge_strength",
    "fine_texture",
    "flat_fraction",
)
"""Names of the grayscale features `measure_image` returns, in order."""


@dataclass(frozen=True)
class ImageFeatures:
    """What the check measures on one image.

    Attributes:
        values: the grayscale features, one per :data:`FEATURE_NAMES` entry.
        colour_fraction: fraction of clearly coloured pixels (0 for a grayscale array).
    """

    values: np.ndarray
    colour_fraction: float


def measure_image(image: np.ndarray) -> ImageFeatures:
    """Measure the check's features on one image.

    Args:
        image: float array in [0, 1], (H, W) grayscale or (H, W, 3) / (H, W, 4) colour, as
            :func:`hf_covid.data.load_image` returns it (or the colour upload before conversion).

    Returns:
        The features.

    Raises:
        ValueError: the array is not an image of that shape, is too small, or is not finite in
            [0, 1].
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        height, width = array.shape[:2]
    elif array.ndim == 2:
        height, width = array.shape
    else:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image array, got shape {array.shape}")
    if min(height, width) < 8:
        raise ValueError(f"image is {width}x{height} pixels; the check needs at least 8x8")
    step = max(1, min(height, width) // _MAX_SUBSAMPLED_SIDE)
    small = np.ascontiguousarray(array[::step, ::step])
    if not np.isfinite(small).all() or small.min() < 0.0 or small.max() > 1.0:
        raise ValueError("image values must be finite and lie in [0, 1]")
    if small.ndim == 3:
        red, green, blue = small[..., 0], small[..., 1], small[..., 2]
        colour_fraction = _colour_fraction(red, green, blue)
        small = _LUMINANCE[0] * red + _LUMINANCE[1] * green + _LUMINANCE[2] * blue
    else:
        colour_fraction = 0.0
    small = np.ascontiguousarray(small, dtype=np.float32)
    work = np.asarray(
        Image.fromarray(small, mode="F").resize((_WORK_SIZE, _WORK_SIZE), Image.Resampling.BOX)
    )
    spread = float(work.std()) + 1e-3
    values = np.concatenate(
        [
            [np.clip(np.log(width / height), -1.5, 1.5)],
            _intensity_features(work),
            _layout_features(work, spread),
            _texture_features(work, small, spread),
        ]
    )
    return ImageFeatures(values=values, colour_fraction=colour_fraction)


def _intensity_features(work: np.ndarray) -> np.ndarray:
    """Histogram shape: percentiles, spread, clipped fractions and entropy."""
    histogram = np.histogram(work, bins=_HISTOGRAM_BINS, range=(0.0, 1.0))[0] / work.size
    nonzero = histogram[histogram > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(_HISTOGRAM_BINS))
    shape = [float(work.std()), float((work < 0.05).mean()), float((work > 0.95).mean()), entropy]
    return np.concatenate([np.percentile(work, _PERCENTILES), shape])


def _layout_features(work: np.ndarray, spread: float) -> np.ndarray:
    """Where the brightness is: mirror symmetries and the grid of region means (z-scores)."""
    symmetries = [_correlation(work, work[:, ::-1]), _correlation(work, work[::-1, :])]
    grid = (_grid_means(work) - work.mean()) / spread
    return np.concatenate([symmetries, grid.ravel()])


def _texture_features(work: np.ndarray, small: np.ndarray, spread: float) -> np.ndarray:
    """Edge strength and fine texture (relative to the spread), and the flat-pixel fraction."""
    gradient_rows, gradient_columns = np.gradient(work)
    smooth = ndimage.uniform_filter(work, size=3, mode="nearest")
    # Drawings, logos and generated images have exactly flat areas; radiographs have noise.
    flat = (np.abs(np.diff(small, axis=0))[:, :-1] < 1e-3) & (
        np.abs(np.diff(small, axis=1))[:-1, :] < 1e-3
    )
    return np.array(
        [
            float(np.hypot(gradient_rows, gradient_columns).mean() / spread),
            float(np.log(np.abs(work - smooth).mean() / spread + 1e-4)),
            float(flat.mean()),
        ]
    )


def _colour_fraction(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> float:
    """Fraction of the not-too-dark pixels whose hue differs clearly from the image's usual hue.

    Chromaticity (each channel over the sum of the three) does not change under a uniform tint,
    so a sepia or blue-tinted radiograph counts as grey; a photograph, a chart or a colour
    overlay does not. Channels are passed separately: numpy reduces slowly over an axis of 3.
    """
    total = red + green + blue
    bright = total > _COLOUR_MIN_BRIGHTNESS
    if bright.sum() < 16:
        return 0.0
    chromaticity = (red[bright] / total[bright], green[bright] / total[bright])
    coloured = np.zeros(len(chromaticity[0]), dtype=bool)
    for channel in chromaticity:
        coloured |= np.abs(channel - np.median(channel)) > _COLOUR_CHROMATICITY_OFFSET
    return float(coloured.mean())


def _grid_means(work: np.ndarray) -> np.ndarray:
    """Mean brightness of each cell of a `_GRID` x `_GRID` grid over the image."""
    edges = np.linspace(0, work.shape[0], _GRID + 1).round().astype(int)
    return np.array(
        [
            [work[r0:r1, c0:c1].mean() for c0, c1 in zip(edges[:-1], edges[1:], strict=True)]
            for r0, r1 in zip(edges[:-1], edges[1:], strict=True)
        ]
    )


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 1e-12 else 1.0


# --------------------------------------------------------------------------------------------
# Parameters and the check
# --------------------------------------------------------------------------------------------


@dataclass
class SlotReference:
    """The Gaussian of the slot's own kind, in standardised feature space.

    Attributes:
        mean: mean of the kind's fitting images.
        precision: inverse of their shrunk covariance.
        distance_threshold: largest Mahalanobis distance still taken as familiar (a high
            quantile of the fitting images' out-of-fold distances).
    """

    mean: list[float]
    precision: list[list[float]]
    distance_threshold: float

    def distance(self, standardised: np.ndarray) -> float:
        """Mahalanobis distance of one standardised feature vector from the kind's mean."""
        offset = standardised - np.asarray(self.mean)
        return float(np.sqrt(max(offset @ np.asarray(self.precision) @ offset, 0.0)))


@dataclass
class InputCheckParams:
    """Everything `InputCheck` needs: plain numbers, saved as JSON.

    Attributes:
        feature_names: the features the weights apply to (must equal :data:`FEATURE_NAMES`).
        kinds: the model's output kinds (must equal :data:`IMAGE_KINDS`).
        feature_mean: per-feature mean of the fitting images, for standardising.
        feature_scale: per-feature standard deviation of the fitting images.
        weights: (kinds, features) logistic weights on standardised features.
        bias: (kinds,) logistic biases.
        references: per slot (``"xray"``, ``"ct"``), the Gaussian of its own kind.
        colour_fraction_threshold: above this fraction of coloured pixels an image is taken for
            a colour photograph or drawing.
        fitted_on: number of fitting images per kind, for the record.
    """

    feature_names: list[str]
    kinds: list[str]
    feature_mean: list[float]
    feature_scale: list[float]
    weights: list[list[float]]
    bias: list[float]
    references: dict[str, SlotReference]
    colour_fraction_threshold: float
    fitted_on: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.references = {
            slot: reference if isinstance(reference, SlotReference) else SlotReference(**reference)
            for slot, reference in self.references.items()
        }

    def to_json_string(self) -> str:
        """The parameters as JSON, one matrix row per line, floats to 6 significant digits."""
        text = json.dumps(_rounded(asdict(self)), indent=1)
        # Innermost lists (names, vectors, matrix rows) on one line each.
        return (
            re.sub(
                r"\[[^\[\]{}]*\]",
                lambda match: "[" + " ".join(match.group()[1:-1].split()) + "]",
                text,
            )
            + "\n"
        )

    def save(self, path: str | Path) -> None:
        """Write the parameters to a JSON file."""
        Path(path).write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_json_file(cls, path: str | Path) -> InputCheckParams:
        """Read parameters written by `save`.

        Raises:
            ValueError: the file is not valid JSON, lacks a field, or was fitted on other
                features or kinds than this code measures.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            params = cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"input check parameters '{path}' cannot be read: {error}") from None
        if tuple(params.feature_names) != FEATURE_NAMES or tuple(params.kinds) != IMAGE_KINDS:
            raise ValueError(
                f"input check parameters '{path}' were fitted on other features or kinds than "
                "hf_covid.data.input_check measures; refit them with scripts/fit_input_check.py"
            )
        if set(params.references) != set(SLOT_KINDS):
            raise ValueError(
                f"input check parameters '{path}' have references for {sorted(params.references)}"
                f", expected {sorted(SLOT_KINDS)}"
            )
        return params


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


@dataclass(frozen=True)
class InputCheckResult:
    """The check's verdict on one upload.

    Attributes:
        slot: ``"xray"`` or ``"ct"``.
        looks_right: the image looks like what the slot expects (a frontal chest X-ray, an axial
            chest CT slice) and is close to the reference images.
        score: probability in [0, 1] that the image is of the slot's kind (0 for colour images).
        reason_code: ``"ok"`` or one of the keys of :data:`REASONS` for the slot.
        reason: the reason in plain words.
        kind: the most probable of :data:`IMAGE_KINDS`.
        probabilities: the probability of each kind.
        distance: Mahalanobis distance from the slot's reference images (large: unfamiliar).
    """

    slot: str
    looks_right: bool
    score: float
    reason_code: str
    reason: str
    kind: str
    probabilities: dict[str, float]
    distance: float

    def to_dict(self) -> dict[str, object]:
        """The result as JSON-ready data."""
        return asdict(self)


class InputCheck:
    """Scores uploads against the fitted parameters; see the module docstring.

    Args:
        params: fitted parameters (`InputCheck.load` reads the packaged ones).
    """

    def __init__(self, params: InputCheckParams) -> None:
        self.params = params
        self._mean = np.asarray(params.feature_mean)
        self._scale = np.asarray(params.feature_scale)
        self._weights = np.asarray(params.weights)
        self._bias = np.asarray(params.bias)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PARAMS_PATH) -> InputCheck:
        """Load the check from a parameter file (by default the one shipped with hf_covid)."""
        return cls(InputCheckParams.from_json_file(path))

    def score(self, image: np.ndarray, slot: str = "xray") -> InputCheckResult:
        """Check one image for one upload slot.

        Args:
            image: float array in [0, 1], (H, W) or (H, W, 3); see `measure_image`.
            slot: ``"xray"`` or ``"ct"``.

        Returns:
            The verdict, with a score in [0, 1] and a plain-words reason.
        """
        return self.score_features(measure_image(image), slot)

    def kind_probabilities(self, features: np.ndarray) -> np.ndarray:
        """Probability of each of :data:`IMAGE_KINDS` for an (N, features) feature matrix."""
        return _softmax(self._standardise(features) @ self._weights.T + self._bias)

    def score_features(self, features: ImageFeatures, slot: str = "xray") -> InputCheckResult:
        """`score` on features already measured with `measure_image`."""
        if slot not in SLOT_KINDS:
            raise ValueError(f"slot must be one of {tuple(SLOT_KINDS)}, got {slot!r}")
        reference = self.params.references[slot]
        standardised = self._standardise(features.values)
        probabilities = _softmax(standardised @ self._weights.T + self._bias)
        kind = IMAGE_KINDS[int(np.argmax(probabilities))]
        score = float(probabilities[IMAGE_KINDS.index(SLOT_KINDS[slot])])
        distance = reference.distance(standardised)
        if features.colour_fraction > self.params.colour_fraction_threshold:
            code, score = "colour_image", 0.0
        elif kind != SLOT_KINDS[slot]:
            code = _KIND_REASON_CODES[slot][kind]
        elif distance > reference.distance_threshold:
            code = "unfamiliar"
        else:
            code = "ok"
        return InputCheckResult(
            slot=slot,
            looks_right=code == "ok",
            score=score,
            reason_code=code,
            reason=REASONS[slot][code],
            kind=kind,
            probabilities={
                name: float(p) for name, p in zip(IMAGE_KINDS, probabilities, strict=True)
            },
            distance=distance,
        )

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self._mean) / self._scale


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)
