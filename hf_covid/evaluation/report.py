"""The Markdown report and the console summary of an evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .metrics import HEADLINE_METRICS
from .predict import GROUP_METRICS, SEGMENTATION_METRICS

__all__ = ["format_summary", "write_report"]

_METRIC_TITLES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1_macro": "F1 (macro)",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Sensitivity / recall (macro)",
    "specificity_macro": "Specificity (macro)",
    "covid_sensitivity": "COVID sensitivity",
    "covid_ppv": "COVID positive predictive value",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC (average precision)",
    "ece": "Expected calibration error (15 bins)",
    "dice": "Dice",
    "iou": "IoU",
    "n_samples": "n",
}


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def _interval(interval) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _group_table(groups: Mapping[str, Mapping], first: str) -> list[str]:
    names = [name for name in GROUP_METRICS if any(name in g for g in groups.values())]
    if any("dice" in g for g in groups.values()):
        names = ["n_samples", *SEGMENTATION_METRICS]
    rows = [[group, *(_number(values.get(n)) for n in names)] for group, values in groups.items()]
    return _table([first, *(_METRIC_TITLES[n] for n in names)], rows)


def write_report(results: Mapping, path: str | Path) -> Path:
    """A Markdown report of evaluation results (``EvaluationResults.to_dict()``): tables, figures."""
    metrics = results["metrics"]
    intervals = results.get("confidence_intervals") or {}
    percent = round(100 * results.get("confidence", 0.95))
    dataset = results.get("dataset") or {}
    lines = [
        f"# Evaluation of `{results['model_type']}` on the {results['split']} split",
        "",
        f"- Checkpoint: `{results.get('checkpoint') or 'this folder'}`",
        f"- Data: `{dataset.get('source')}` ({metrics['n_samples']} images, "
        f"{dataset.get('image_size')} px)",
    ]
    if dataset.get("pairing"):
        lines.append(
            f"- X-ray/CT pairing: **{dataset['pairing']}**. {dataset.get('pairing_note') or ''}"
        )
    lines += [
        f"- Intervals: {percent}% percentile bootstrap over {results.get('n_resamples')} "
        "resamples of the test images (stratified by class for classification).",
        "- Research software, evaluated on the data above; not a medical device.",
        "",
        "## Headline metrics",
        "",
    ]
    headline = (
        SEGMENTATION_METRICS
        if "dice" in metrics
        else (
            *HEADLINE_METRICS[:2],
            "balanced_accuracy",
            *HEADLINE_METRICS[2:],
            "covid_ppv",
            "pr_auc",
            "ece",
        )
    )
    rows = [
        [_METRIC_TITLES[name], _number(metrics.get(name)), _interval(intervals.get(name))]
        for name in headline
        if name in metrics
    ]
    lines += _table(["Metric", "Value", f"{percent}% CI"], rows)
    class_names = results.get("class_names")
    if class_names:
        matrix = metrics["confusion_matrix"]
        lines += ["", "## Per class", ""]
        rows = [
            [
                name,
                *(
                    _number(metrics.get(f"{m}_{name}"))
                    for m in ("precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")
                ),
                str(sum(matrix[index])),
            ]
            for index, name in enumerate(class_names)
        ]
        header = ["Class", "Precision", "Sensitivity", "Specificity", "F1", "ROC-AUC", "PR-AUC"]
        lines += _table([*header, "Support"], rows)
        lines += ["", "## Confusion matrix (rows: true class, columns: predicted)", ""]
        lines += _table(
            ["true \\ predicted", *class_names],
            [[name, *map(str, row)] for name, row in zip(class_names, matrix, strict=True)],
        )
    if results.get("modalities"):
        lines += ["", "## Inputs used by the dual-input model", ""]
        lines += _group_table(
            {name: value["metrics"] for name, value in results["modalities"].items()}, "Inputs"
        )
    if results.get("per_source"):
        lines += ["", "## Per source", ""]
        lines += _group_table(results["per_source"], "Source")
    if results.get("figures"):
        lines += ["", "## Figures", ""]
        lines += [
            f"![{name.replace('_', ' ')}]({relative})"
            for name, relative in results["figures"].items()
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def format_summary(results: Mapping) -> str:
    """A short console table of the headline metrics (and of the input combinations)."""
    metrics = results["metrics"]
    intervals = results.get("confidence_intervals") or {}
    names = SEGMENTATION_METRICS if "dice" in metrics else (*HEADLINE_METRICS, "ece")
    lines = [
        f"{results['model_type']} on {results['split']} ({metrics['n_samples']} images)",
        *(
            f"  {name:<18} {_number(metrics.get(name)):>6}  {_interval(intervals.get(name))}"
            for name in names
            if name in metrics
        ),
    ]
    for variant, value in (results.get("modalities") or {}).items():
        lines.append(
            f"  inputs {variant:<8} n={value['metrics']['n_samples']:<5} "
            + "  ".join(f"{n} {_number(value['metrics'].get(n))}" for n in GROUP_METRICS[1:4])
        )
    return "\n".join(lines)
