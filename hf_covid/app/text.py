"""What the app says in words: the disclaimer, and the summary beside each prediction (the
answer, the lung crop, what the model was trained on, its test metrics and its results on
external data sets, the input check)."""

from __future__ import annotations

from ..data.input_check import InputCheckResult
from ..registry import get_model_family
from ..serving.predictor import INPUT_NAMES, Prediction
from ..serving.served import ModelProvenance, Scores

__all__ = [
    "PHANTOM_WARNING",
    "disclaimer",
    "lung_crop_line",
    "model_summary",
    "prediction_summary",
]

PHANTOM_WARNING = (
    "**This model was trained only on synthetic phantoms. Its answer on a real image means "
    "nothing**: it has never seen a real chest X-ray or CT."
)


def disclaimer(deletion_bound_s: float) -> str:
    """The research-use disclaimer, with the real bound on how long an upload is kept."""
    return (
        "**Research software, not a diagnostic device.** Never use these models to diagnose, "
        "treat or triage a patient; each model below says what it was trained on. Only the pixel "
        "data of an upload is read; DICOM metadata (patient name, ids) is never shown, logged or "
        "stored, and every upload and output image is deleted from the server within "
        f"{_duration(deletion_bound_s)} of its last use, whether or not it was used in a "
        "prediction."
    )


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"


def _scores_text(scores: Scores, confidence: float = 0.95) -> str:
    return "; ".join(
        f"{title} {value:.3f}"
        + (f" ({confidence:.0%} CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
        for title, (value, interval) in scores.items()
    )


def model_summary(provenance: ModelProvenance | None) -> list[str]:
    """Lines saying what a model was trained on, how it scored on its test split and on each
    external data set it was evaluated on."""
    if provenance is None:
        return ["**Trained on:** unknown"]
    lines = [f"**Trained on:** {provenance.description}"]
    if provenance.pairing:
        lines.append(f"**X-ray/CT pairing:** {provenance.pairing}")
    if provenance.metrics:
        metrics = _scores_text(provenance.metrics)
        lines.append(f"**Test metrics** ({provenance.evaluation}): {metrics}")
    else:
        lines.append("**Test metrics:** none recorded with this checkpoint")
    for result in provenance.external:
        images = f", {result.n_images} images" if result.n_images is not None else ""
        scores = _scores_text(result.metrics, result.confidence) or "no metric defined"
        lines.append(f"**External: {result.name}** (not trained on{images}): {scores}")
    if provenance.synthetic:
        lines.append(PHANTOM_WARNING)
    return lines


def _input_check_line(name: str, result: InputCheckResult) -> str:
    what = INPUT_NAMES[name]
    if result.looks_right:
        return f"**Input check ({what}):** looks like what this slot expects (score {result.score:.2f})"
    return (
        f"**Input check ({what}): this upload does not look right**: {result.reason} "
        f"(score {result.score:.2f}). The answer above is not meaningful for it."
    )


def lung_crop_line(prediction: Prediction) -> str | None:
    """What the lung crop did to the X-ray, for a model that crops to the lungs; else None."""
    status = prediction.lung_crop_status
    if status is None:
        return None
    if status == "cropped":
        box = prediction.lung_crop_box
        where = (
            ""
            if box is None
            else f" (rows {box[0]:.0%}-{box[2]:.0%}, columns {box[1]:.0%}-{box[3]:.0%} of the image)"
        )
        return f"**Lung crop:** the X-ray was cropped to the lungs, as in training{where}"
    return (
        f"**Lung crop: the X-ray was left uncropped** (its lung mask was unusable: {status}): this model was trained on "
        "X-rays cropped to the lungs and now sees a whole X-ray, unlike its training images; "
        "its answer is less reliable than usual."
    )


def prediction_summary(
    prediction: Prediction, model_key: str, provenance: ModelProvenance | None
) -> str:
    """The Markdown summary shown beside a prediction."""
    used = ", ".join(INPUT_NAMES[name] for name in prediction.inputs_used)
    lines = [
        f"**Prediction:** {prediction.label} ({prediction.probabilities[prediction.label]:.1%}) "
        f"by the {get_model_family(model_key).display_name}",
        f"**Inputs used:** {used}",
    ]
    if prediction.mask_source == "uploaded":
        lines.append("**Lung mask:** uploaded")
    elif prediction.mask_source:  # the segmentation family that made it
        lines.append(
            f"**Lung mask:** made by the {get_model_family(prediction.mask_source).display_name}"
        )
    crop = lung_crop_line(prediction)
    if crop is not None:
        lines.append(crop)
    lines += [_input_check_line(name, result) for name, result in prediction.input_checks.items()]
    lines += model_summary(provenance)
    return "  \n".join(lines)
