"""The Markdown report and the console summary of an evaluation (also of an external validation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hf_covid.checkpoints import EXTERNAL_SPLIT

from .metrics import HEADLINE_METRICS
from .predict import GROUP_METRICS, SEGMENTATION_METRICS

__all__ = [
    "EXTERNAL_METRICS",
    "EXTERNAL_SPLIT",
    "METRIC_TITLES",
    "format_summary",
    "markdown_table",
    "missing_classes",
    "write_report",
]

EXTERNAL_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "covid_sensitivity",
    "specificity_COVID",
    "roc_auc_COVID",
)
"""Metrics of an external validation (keys of ``classification_metrics``), given with intervals
where the classes present define them: COVID sensitivity needs COVID images, specificity needs
others, ROC-AUC of COVID vs the rest needs both. Accuracy counts a prediction of a class missing
from the folder as an error; balanced accuracy averages the recall of the classes present."""

METRIC_TITLES: dict[str, str] = {
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
    "specificity_COVID": "COVID specificity (vs the classes present)",
    "roc_auc_COVID": "ROC-AUC, COVID vs the classes present",
    "missing_class_predictions": "Predicted as a class missing from the data",
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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _group_table(groups: Mapping[str, Mapping], first: str) -> list[str]:
    names = [name for name in GROUP_METRICS if any(name in g for g in groups.values())]
    if any("dice" in g for g in groups.values()):
        names = ["n_samples", *SEGMENTATION_METRICS]
    rows = [[group, *(_number(values.get(n)) for n in names)] for group, values in groups.items()]
    return markdown_table([first, *(METRIC_TITLES[n] for n in names)], rows)


def missing_classes(results: Mapping) -> list[str]:
    """The model's classes without an image in the evaluated data (external validation)."""
    dataset = results.get("dataset") or {}
    counts = (dataset.get("class_counts") or {}).get(results["split"], {})
    return [name for name in results.get("class_names") or [] if counts.get(name, 0) == 0]


def _headline_rows(results: Mapping, names: Sequence[str]) -> list[list[str]]:
    metrics = results["metrics"]
    intervals = results.get("confidence_intervals") or {}
    return [
        [METRIC_TITLES[name], _number(metrics.get(name)), _interval(intervals.get(name))]
        for name in names
        if name in metrics
    ]


def _classification_sections(results: Mapping, percent: int) -> list[str]:
    """Headline metrics, per-class table and confusion matrix of a test-split evaluation."""
    metrics = results["metrics"]
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
    lines = ["## Headline metrics", ""]
    lines += markdown_table(
        ["Metric", "Value", f"{percent}% CI"], _headline_rows(results, headline)
    )
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
        lines += markdown_table([*header, "Support"], rows)
        lines += _confusion_section(class_names, matrix, class_names)
    return lines


def _confusion_section(
    class_names: Sequence[str], matrix: Sequence[Sequence[int]], rows: Sequence[str]
) -> list[str]:
    lines = ["", "## Confusion matrix (rows: true class, columns: predicted)", ""]
    return lines + markdown_table(
        ["true \\ predicted", *class_names],
        [[name, *map(str, matrix[class_names.index(name)])] for name in rows],
    )


def _external_sections(results: Mapping, percent: int) -> list[str]:
    """What an external validation on some of the model's classes can say."""
    metrics = results["metrics"]
    class_names = results["class_names"]
    missing = missing_classes(results)
    present = [name for name in class_names if name not in missing]
    lines = [
        "## Classes",
        "",
        f"- Present in the data (matched by folder name): {', '.join(present)}.",
        f"- Missing: {', '.join(missing) if missing else 'none'}."
        + (
            " Metrics that need them (macro averages, their ROC-AUC, PPV and PR-AUC, which also "
            "depend on this folder's prevalence) are not reported."
            if missing
            else ""
        ),
        "",
        "## Metrics that the classes present define",
        "",
    ]
    names = [*EXTERNAL_METRICS, "missing_class_predictions"]
    lines += markdown_table(["Metric", "Value", f"{percent}% CI"], _headline_rows(results, names))
    lines += ["", "## Sensitivity per class present", ""]
    matrix = metrics["confusion_matrix"]
    lines += markdown_table(
        ["Class", "Sensitivity", "Images"],
        [
            [
                name,
                _number(metrics.get(f"recall_{name}")),
                str(sum(matrix[class_names.index(name)])),
            ]
            for name in present
        ],
    )
    return lines + _confusion_section(class_names, matrix, present)


def write_report(results: Mapping, path: str | Path) -> Path:
    """A Markdown report of evaluation results (``EvaluationResults.to_dict()``): tables, figures.

    External validations (split ``"external"``) get the classes present and missing and the
    metrics those classes define instead of the per-class tables.
    """
    metrics = results["metrics"]
    percent = round(100 * results.get("confidence", 0.95))
    dataset = results.get("dataset") or {}
    external = results["split"] == EXTERNAL_SPLIT
    title = "external data" if external else f"the {results['split']} split"
    lines = [
        f"# Evaluation of `{results['model_type']}` on {title}",
        "",
        f"- Checkpoint: `{results.get('checkpoint') or 'this folder'}`",
        f"- Data: `{dataset.get('source')}` ({metrics['n_samples']} images, "
        f"{dataset.get('image_size')} px)",
    ]
    if dataset.get("pairing"):
        lines.append(
            f"- X-ray/CT pairing: **{dataset['pairing']}**. {dataset.get('pairing_note') or ''}"
        )
    unit = (
        "patients (every image of a drawn patient with it)"
        if results.get("interval_unit") == "patient"
        else "images"
    )
    lines += [
        f"- Intervals: {percent}% percentile bootstrap over {results.get('n_resamples')} "
        f"resamples of the {unit}, stratified by class for classification.",
    ]
    if results.get("masks"):
        lines.append(f"- Lung masks: {results['masks']}.")
    published = results.get("published")
    if published:
        lines.append(
            f"- Published for comparison (other data, other models): {published['what']} "
            f"({published['reference']})."
        )
    lines += ["- Research software, evaluated on the data above; not a medical device.", ""]
    lines += (_external_sections if external else _classification_sections)(results, percent)
    if results.get("modalities"):
        lines += ["", "## Inputs used by the dual-input model", ""]
        lines += _group_table(
            {name: value["metrics"] for name, value in results["modalities"].items()}, "Inputs"
        )
    for field, title in (("per_source", "Source"), ("per_age_group", "Age group")):
        if results.get(field):
            lines += ["", f"## Per {title.lower()}", ""]
            lines += _group_table(results[field], title)
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
    if results["split"] == EXTERNAL_SPLIT:
        names = (*EXTERNAL_METRICS, "missing_class_predictions")
    elif "dice" in metrics:
        names = SEGMENTATION_METRICS
    else:
        names = (*HEADLINE_METRICS, "ece")
    missing = missing_classes(results) if results["split"] == EXTERNAL_SPLIT else []
    lines = [
        f"{results['model_type']} on {results['split']} ({metrics['n_samples']} images)",
        *([f"  classes missing from the data: {', '.join(missing)}"] if missing else []),
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
