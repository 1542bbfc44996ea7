"""Fitting the input check, and measuring it on held-out images (``scripts/fit_input_check.py``).

    python scripts/fit_input_check.py --public-data PUBLIC_COLLECTIONS_FOLDER

`fit_input_check` fits the parameters of :class:`~hf_covid.data.input_check.InputCheck` on
measured images of known kind and `evaluate_input_check` gives its pass rates per group of
images; `main` measures the reference images of :mod:`hf_covid.data.input_check_references`,
fits on the fitting part, writes the parameters and a Markdown report of the held-out rates
(``docs/input_check.md``). Research software, not a medical device: the rates say how well the
check separates these collections, nothing more.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import optimize

from .input_check import (
    DEFAULT_PARAMS_PATH,
    FEATURE_NAMES,
    IMAGE_KINDS,
    SLOT_KINDS,
    ImageFeatures,
    InputCheck,
    InputCheckParams,
    SlotReference,
)
from .input_check_references import (
    generated_samples,
    package_image_samples,
    phantom_samples,
    public_samples,
)

__all__ = ["evaluate_input_check", "fit_input_check", "main", "markdown_report", "time_check"]


def fit_input_check(
    features: Sequence[ImageFeatures],
    kinds: Sequence[str],
    *,
    l2: float = 1e-2,
    covariance_shrinkage: float = 0.2,
    familiar_quantile: float = 0.995,
    colour_quantile: float = 0.995,
) -> InputCheckParams:
    """Fit the check's parameters on measured images of known kind.

    The logistic model is fitted with class-balanced weights (every kind counts equally however
    many images it has) and an L2 penalty, by L-BFGS. Each slot's reference Gaussian is fitted on
    the images of its kind, with its covariance shrunk toward its mean variance.

    Args:
        features: `measure_image` results, one per image.
        kinds: the kind of each image, one of :data:`IMAGE_KINDS`; every kind must occur.
        l2: L2 penalty on the weights (per image, on standardised features).
        covariance_shrinkage: weight of the isotropic part of each reference covariance.
        familiar_quantile: quantile of the fitting images' out-of-fold Mahalanobis distances
            that becomes the familiarity threshold.
        colour_quantile: the colour threshold is this quantile of the coloured-pixel fractions
            of the fitting medical images (their arrows, labels and overlays), at least 0.05.

    Returns:
        The fitted parameters.

    Raises:
        ValueError: lengths differ, a kind is unknown, or a kind has fewer than 4 images.
    """
    if len(features) != len(kinds):
        raise ValueError(f"{len(features)} feature vectors but {len(kinds)} kinds")
    unknown = sorted(set(kinds) - set(IMAGE_KINDS))
    if unknown:
        raise ValueError(f"unknown image kinds {unknown}; expected some of {IMAGE_KINDS}")
    labels = np.array([IMAGE_KINDS.index(kind) for kind in kinds])
    counts = np.bincount(labels, minlength=len(IMAGE_KINDS))
    too_few = [kind for kind, count in zip(IMAGE_KINDS, counts, strict=True) if count < 4]
    if too_few:
        raise ValueError(f"need at least 4 fitting images of every kind; too few: {too_few}")
    matrix = np.stack([feature.values for feature in features])
    mean = matrix.mean(axis=0)
    scale = np.maximum(matrix.std(axis=0), 1e-6)
    standardised = (matrix - mean) / scale
    weights, bias = _fit_softmax_regression(standardised, labels, counts, l2)
    references = {
        slot: _fit_reference(
            standardised[labels == IMAGE_KINDS.index(kind)], covariance_shrinkage, familiar_quantile
        )
        for slot, kind in SLOT_KINDS.items()
    }
    medical = np.isin(labels, [IMAGE_KINDS.index(kind) for kind in IMAGE_KINDS[:5]])
    colours = np.array([feature.colour_fraction for feature in features])
    return InputCheckParams(
        feature_names=list(FEATURE_NAMES),
        kinds=list(IMAGE_KINDS),
        feature_mean=mean.tolist(),
        feature_scale=scale.tolist(),
        weights=weights.tolist(),
        bias=bias.tolist(),
        references=references,
        colour_fraction_threshold=max(0.05, float(np.quantile(colours[medical], colour_quantile))),
        fitted_on={kind: int(count) for kind, count in zip(IMAGE_KINDS, counts, strict=True)},
    )


def _fit_softmax_regression(
    inputs: np.ndarray, labels: np.ndarray, counts: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced multinomial logistic regression; returns (weights, bias)."""
    samples, dimension = inputs.shape
    classes = len(counts)
    sample_weight = (samples / (classes * counts))[labels] / samples
    targets = np.eye(classes)[labels]

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights = flat[: classes * dimension].reshape(classes, dimension)
        bias = flat[classes * dimension :]
        logits = inputs @ weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -(sample_weight * (targets * log_probabilities).sum(axis=1)).sum()
        loss += 0.5 * l2 * (weights * weights).sum()
        error = (np.exp(log_probabilities) - targets) * sample_weight[:, None]
        gradient_weights = error.T @ inputs + l2 * weights
        return loss, np.concatenate([gradient_weights.ravel(), error.sum(axis=0)])

    start = np.zeros(classes * (dimension + 1))
    solution = optimize.minimize(
        loss_and_gradient, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000}
    )
    weights = solution.x[: classes * dimension].reshape(classes, dimension)
    return weights, solution.x[classes * dimension :]


def _fit_reference(samples: np.ndarray, shrinkage: float, quantile: float) -> SlotReference:
    """The kind's Gaussian on all its samples; the threshold from out-of-fold distances.

    A sample's distance from a Gaussian fitted on it is smaller than a new image's (markedly so
    with few samples in many dimensions), so the threshold is the quantile of each half's
    distances from the Gaussian of the other half.
    """
    order = np.random.default_rng(0).permutation(len(samples))
    halves = (samples[order[::2]], samples[order[1::2]])
    out_of_fold = np.concatenate(
        [
            _distances(halves[1 - index], *_gaussian(half, shrinkage))
            for index, half in enumerate(halves)
        ]
    )
    mean, precision = _gaussian(samples, shrinkage)
    return SlotReference(
        mean=mean.tolist(),
        precision=precision.tolist(),
        distance_threshold=float(np.quantile(out_of_fold, quantile)),
    )


def _gaussian(samples: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of the covariance shrunk toward its mean variance."""
    covariance = np.cov(samples, rowvar=False)
    isotropic = float(np.trace(covariance)) / covariance.shape[0]
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * isotropic * np.eye(covariance.shape[0])
    return samples.mean(axis=0), np.linalg.inv(shrunk)


def _distances(samples: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    offsets = samples - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", offsets, precision, offsets), 0.0))


def evaluate_input_check(
    check: InputCheck,
    features: Sequence[ImageFeatures],
    slot: str,
    groups: Sequence[str],
) -> dict[str, dict[str, object]]:
    """Pass rate of the check in one slot, per group of images.

    For the group of images of the slot's kind the pass rate is the true positive rate; for every
    other group it is a false positive rate.

    Args:
        check: the check.
        features: measured images.
        slot: ``"xray"`` or ``"ct"``.
        groups: a group name per image (e.g. ``"lateral X-ray (ieee8023)"``).

    Returns:
        Per group: ``images``, ``passed`` (fraction that looks right in the slot) and
        ``reasons`` (how many images got each reason code).
    """
    if len(features) != len(groups):
        raise ValueError(f"{len(features)} feature vectors but {len(groups)} groups")
    report: dict[str, dict[str, object]] = {}
    for group in dict.fromkeys(groups):
        results = [
            check.score_features(feature, slot)
            for feature, name in zip(features, groups, strict=True)
            if name == group
        ]
        codes: dict[str, int] = {}
        for result in results:
            codes[result.reason_code] = codes.get(result.reason_code, 0) + 1
        report[group] = {
            "images": len(results),
            "passed": sum(result.looks_right for result in results) / len(results),
            "reasons": dict(sorted(codes.items(), key=lambda item: -item[1])),
        }
    return report


def markdown_report(report: dict, timing: dict[str, float]) -> str:
    """The evaluation as a Markdown page."""
    lines = [
        "# Input check: held-out rates",
        "",
        "Written by `scripts/fit_input_check.py`; numbers only, no image from the public",
        "collections is stored. The check (`hf_covid.data.input_check`) is a small",
        "out-of-distribution score on hand-made features, fitted on the images listed in",
        "`hf_covid.data.input_check_references`; the rates below are on held-out patients,",
        "figures, files and seeds.",
        "For the slot's own kind the pass rate is the true positive rate; for every other row it",
        "is a false positive rate (the fraction wrongly accepted). Research software, not a",
        "medical device: a passed check does not make a prediction meaningful.",
        "",
        f"Fitting images per kind: {report['fitted_on']}.",
        f"Time per image (mean of {timing['images']} calls of `InputCheck.score`, this machine, "
        f"load {timing['load']}): {timing['ms_2000']:.1f} ms for a 2000x2000 grey image, "
        f"{timing['ms_2000_rgb']:.1f} ms for 2000x2000 RGB, {timing['ms_448']:.1f} ms for 448x448.",
        "",
    ]
    for slot, rows in report["slots"].items():
        lines += [
            f"## {slot} slot (expects: {SLOT_KINDS[slot]})",
            "",
            "| held-out images | n | passed | reasons |",
            "| --- | ---: | ---: | --- |",
        ]
        for group, row in rows.items():
            reasons = ", ".join(f"{code} {count}" for code, count in row["reasons"].items())
            lines.append(f"| {group} | {row['images']} | {row['passed']:.3f} | {reasons} |")
        lines.append("")
    return "\n".join(lines)


def time_check(check: InputCheck, repeats: int = 20) -> dict[str, float]:
    """Mean milliseconds per `InputCheck.score` call at three input sizes."""
    rng = np.random.default_rng(0)
    inputs = {
        "ms_2000": rng.random((2000, 2000), dtype=np.float32),
        "ms_2000_rgb": rng.random((2000, 2000, 3), dtype=np.float32),
        "ms_448": rng.random((448, 448), dtype=np.float32),
    }
    timing: dict[str, float] = {"images": repeats}
    for name, image in inputs.items():
        check.score(image)
        start = time.perf_counter()
        for _ in range(repeats):
            check.score(image)
        timing[name] = (time.perf_counter() - start) / repeats * 1000
    timing["load"] = Path("/proc/loadavg").read_text().split()[0]
    return timing


def main(argv: Sequence[str] | None = None) -> int:
    """Fit, evaluate, write the parameters and the report; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Fit the upload input check, evaluate it on held-out images, write its "
        "parameters and report."
    )
    parser.add_argument(
        "--public-data",
        type=Path,
        required=True,
        help="folder of the public chest collections, with its manifest.csv",
    )
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--report", type=Path, default=Path("docs/input_check.md"))
    parser.add_argument("--phantoms", type=int, default=500, help="phantom seeds (X-ray + CT)")
    parser.add_argument("--crops-per-file", type=int, default=12)
    parser.add_argument("--generated", type=int, default=120, help="images per generator")
    args = parser.parse_args(argv)
    if not (args.public_data / "manifest.csv").is_file():
        parser.error(f"{args.public_data} has no manifest.csv: pass --public-data")

    start = time.perf_counter()
    samples = [
        *public_samples(args.public_data),
        *phantom_samples(args.phantoms),
        *package_image_samples(args.crops_per_file),
        *generated_samples(args.generated),
    ]
    print(f"measured {len(samples)} images in {time.perf_counter() - start:.0f} s")
    fitting = [sample for sample in samples if not sample.held_out]
    params = fit_input_check([s.features for s in fitting], [s.kind for s in fitting])
    params.save(args.params)
    check = InputCheck(params)
    held_out = [sample for sample in samples if sample.held_out]
    report = {
        "fitted_on": params.fitted_on,
        "slots": {
            slot: evaluate_input_check(
                check, [s.features for s in held_out], slot, [s.group for s in held_out]
            )
            for slot in SLOT_KINDS
        },
    }
    args.report.write_text(markdown_report(report, time_check(check)) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))
    print(f"wrote {args.params} and {args.report}")
    return 0
