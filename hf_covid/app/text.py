"""What the app says in words: the disclaimer, and the summary beside each prediction (the
answer, what the model was trained on, its test metrics, the input check)."""

from __future__ import annotations

from ..data.input_check import InputCheckResult
from ..registry import get_model_family
from ..serving.predictor import INPUT_NAMES, Prediction
from ..serving.served import ModelProvenance

__all__ = ["PHANTOM_WARNING", "disclaimer", "model_summary", "prediction_summary"]

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


def model_summary(provenance: ModelProvenance | None) -> list[str]:
    """Lines saying what a model was trained on and how it scored on its test split."""
    if provenance is None:
        return ["**Trained on:** unknown"]
    lines = [f"**Trained on:** {provenance.description}"]
    if provenance.pairing:
        lines.append(f"**X-ray/CT pairing:** {provenance.pairing}")
    if provenance.metrics:
        metrics = "; ".join(
            f"{title} {value:.3f}"
            + (f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
            for title, (value, interval) in provenance.metrics.items()
        )
        lines.append(f"**Test metrics** ({provenance.evaluation}): {metrics}")
    else:
        lines.append("**Test metrics:** none recorded with this checkpoint")
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
    lines += [_input_check_line(name, result) for name, result in prediction.input_checks.items()]
    lines += model_summary(provenance)
    return "  \n".join(lines)
