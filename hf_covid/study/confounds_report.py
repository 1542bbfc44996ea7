"""The probe and explanation sections of the study document, and its charts, rendered from
``results.json`` (:mod:`hf_covid.study.run`). Research software, not a diagnostic device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from hf_covid.evaluation.report import markdown_table

__all__ = [
    "draw_study_figures",
    "explanations_section",
    "interval_text",
    "loso_section",
    "lungs_only_section",
    "probe_section",
    "reads_the_collection",
]

INTERNAL_COLOR = "tab:blue"
"""Colour of internal (own test split) numbers in the study's charts."""
FILMS_COLOR = "tab:orange"
"""Colour of the unseen hospital films' numbers."""
REGION_COLORS = {"whole": "tab:blue", "outside_lungs": "tab:red", "lungs_only": "tab:green"}
"""Colour of each image region the collection probe is shown."""


def interval_text(
    metrics: Mapping, intervals: Mapping | None, name: str, signed: bool = False
) -> str:
    """``0.812 [0.750, 0.861]``, or ``-`` for an undefined metric."""
    value = metrics.get(name)
    if value is None:
        return "-"
    number = "{:+.3f}" if signed else "{:.3f}"
    interval = (intervals or {}).get(name)
    if not interval:
        return number.format(value)
    return f"{number.format(value)} [{number.format(interval[0])}, {number.format(interval[1])}]"


def _scores_text(scores: Mapping, name: str) -> str:
    return interval_text(scores.get("metrics", {}), scores.get("confidence_intervals"), name)


def reads_the_collection(
    probe: Mapping, region: str = "lungs_only", margin: float = 0.1
) -> bool | None:
    """Whether the probe's balanced accuracy on ``region`` lies above chance by more than
    ``margin`` (its interval's lower end); None when the probe did not run."""
    for condition in probe.get("conditions", []):
        if condition["region"] == region:
            low = condition["confidence_intervals"].get("balanced_accuracy")
            if not low:
                return None
            return low[0] > probe["chance"]["balanced_accuracy"] + margin
    return None


def _shared_views(configurations: Sequence[Mapping]) -> list[Mapping]:
    """One configuration per view (the first to show those images)."""
    return [c for c in configurations if c.get("view_of") == c["key"]]


def probe_section(configurations: Sequence[Mapping]) -> list[str]:
    """(a) The collection probe of every view."""
    lines = [
        "### (a) Can the collection be read off the image?",
        "",
        "A small CNN (three convolution blocks, 48 px) learns to tell the collections of a "
        "configuration's composition apart, from the images as that configuration shows them "
        "(after its lung crop and standardisation), trained on the train and validation splits "
        "and tested on the test split's patients. Every condition's decision rule is corrected "
        "on the validation split (the learnt class priors divided out), so a probe that ranks "
        "well but predicts one class is not mistaken for chance. Balanced accuracy and macro "
        "ROC-AUC, 95% intervals over patients; chance is 1 / collections for the balanced "
        "accuracy and 0.5 for the AUC.",
        "",
    ]
    rows = []
    for configuration in _shared_views(configurations):
        probe = configuration["collection_probe"]
        if "skipped" in probe:
            rows.append([configuration["title"], probe["skipped"], "", "", "", ""])
            continue
        for condition in probe["conditions"]:
            rows.append(
                [
                    configuration["title"],
                    ", ".join(f"{k} {v}" for k, v in probe["test_counts"].items()),
                    condition["region"].replace("_", " "),
                    _scores_text(condition, "balanced_accuracy"),
                    f"{probe['chance']['balanced_accuracy']:.3f}",
                    _scores_text(condition, "roc_auc"),
                ]
            )
    header = ["View", "Test images", "Shown", "Balanced accuracy", "Chance", "ROC-AUC"]
    lines += markdown_table(header, rows)
    titles = {c["key"]: c["title"] for c in configurations}
    sharing = [
        f"{c['title']} shows the images as {titles.get(c.get('view_of'), c.get('view_of'))} does"
        for c in configurations
        if c.get("view_of") not in (None, c["key"])
    ]
    if sharing:
        lines += ["", "; ".join(sharing) + " (it changes training only): that view's probes apply."]
    still = [
        c["title"]
        for c in _shared_views(configurations)
        if reads_the_collection(c["collection_probe"])
    ]
    lines += [
        "",
        "Views whose collection a CNN still reads from the lungs alone (balanced accuracy more "
        "than 0.1 above chance at the interval's lower end): "
        + (", ".join(still) if still else "none")
        + ". Such a view lets any classifier on it score by collection: a COVID-vs-control "
        "number on it can be earned by the collection alone.",
        "",
    ]
    return lines


def lungs_only_section(configurations: Sequence[Mapping]) -> list[str]:
    """(b) Every model with everything outside the lungs blanked."""
    lines = [
        "### (b) The trained classifiers with everything outside the lungs blanked",
        "",
        "Each model on its own test split (its own view), whole and lungs only (U-Net mask); "
        "the drop is whole-image minus lungs-only accuracy, paired bootstrap over patients. "
        "None of these models saw blanked images in training, so part of any drop is the change "
        "of input; a large drop still says the model relied on what lies outside the lungs. A "
        "cropped view has little outside the lungs left to blank.",
        "",
    ]
    rows = []
    for configuration in configurations:
        for key, model in configuration["models"].items():
            whole, lungs = model["lungs_only"]["conditions"]
            most = max(lungs["predicted_fractions"].items(), key=lambda item: item[1])
            low, high = lungs["accuracy_drop_interval"]
            rows.append(
                [
                    configuration["title"],
                    key,
                    _scores_text(whole, "accuracy"),
                    _scores_text(lungs, "accuracy"),
                    f"{lungs['accuracy_drop']:+.3f} [{low:+.3f}, {high:+.3f}]",
                    f"{most[0]} {most[1]:.0%}",
                ]
            )
    header = [
        "Configuration",
        "Model",
        "Whole",
        "Lungs only",
        "Drop",
        "Most predicted (lungs only)",
    ]
    return lines + markdown_table(header, rows) + [""]


def loso_section(configurations: Sequence[Mapping]) -> list[str]:
    """(c) Leave one COVID source out, per view."""
    lines = [
        "### (c) Leave one COVID source out",
        "",
        "A small COVID vs non-COVID CNN of each view is trained without one COVID source (an "
        "ieee8023 web site, with every image of its patients, or COVID-CXNet's hospital films as "
        "a whole) and tested on that source's COVID images against the test split's non-COVID "
        "images; *in distribution* is the test split without that source. Where the composition "
        "holds no COVID-CXNet (the first study's), its films are tested as they are: never "
        "seen. Intervals over patients.",
        "",
    ]
    rows = []
    for configuration in _shared_views(configurations):
        loso = configuration["leave_one_source_out"]
        for held in loso.get("held_out", []):
            inside = held.get("in_distribution")
            rows.append(
                [
                    configuration["title"],
                    held["source"]
                    + (" (not in the composition)" if held.get("not_in_composition") else ""),
                    str(held["n_held_out_covid"]),
                    _scores_text(inside, "covid_sensitivity") if inside else "-",
                    _scores_text(held["held_out_source"], "covid_sensitivity"),
                    _scores_text(inside, "roc_auc") if inside else "-",
                    _scores_text(held["held_out_source"], "roc_auc"),
                ]
            )
    header = [
        "View",
        "Held-out source",
        "COVID images",
        "Sensitivity in distribution",
        "Sensitivity held out",
        "ROC-AUC in distribution",
        "ROC-AUC held out",
    ]
    return lines + markdown_table(header, rows) + [""]


def explanations_section(configurations: Sequence[Mapping]) -> list[str]:
    """CAM energy inside human lung masks and deletion faithfulness, per model."""
    lines = [
        "### (d) Where the models look",
        "",
        "COVID-19 test X-rays with a human (v7labs) lung mask, in each model's own view (the "
        "mask cropped with the image); maps for the COVID class. *Excess* is the share of the "
        "map's energy inside the lungs minus the lung area fraction (what a uniform map "
        "scores); *deletion* is the drop of P(COVID) when the top 20% most-attributed pixels "
        "are removed (filled in from their neighbours) minus the drop for the bottom 20%; above "
        "0, the map points at pixels the model uses. Intervals over patients. A map shows what a "
        "model used, not where disease is.",
        "",
    ]
    rows = []
    for configuration in configurations:
        for key, model in configuration["models"].items():
            entry = model["explanations"]
            if "skipped" in entry:
                rows.append([configuration["title"], key, "-", entry["skipped"], "-", "-"])
                continue
            for method, scores in entry["methods"].items():
                excess = scores.get("excess_over_uniform")
                deletion = scores["deletion"].get("0.2") or next(iter(scores["deletion"].values()))
                rows.append(
                    [
                        configuration["title"],
                        key,
                        {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}.get(method, method),
                        interval_text({"v": excess["mean"]}, {"v": excess["interval"]}, "v", True)
                        if excess
                        else "-",
                        scores["verdict"],
                        interval_text(
                            {"v": deletion["faithfulness"]["mean"]},
                            {"v": deletion["faithfulness"]["interval"]},
                            "v",
                            True,
                        ),
                    ]
                )
    header = [
        "Configuration",
        "Model",
        "Map",
        "Excess over uniform",
        "Compared with uniform",
        "Deletion",
    ]
    return lines + markdown_table(header, rows) + [""]


class _ChartRow(NamedTuple):
    """One point of a study chart: its label, value, interval, colour and chance level."""

    label: str
    value: float
    interval: Sequence[float] | None
    color: str
    chance: float | None = None


def _point_rows(
    figure: Figure,
    panels: Sequence[tuple[str, Sequence[_ChartRow]]],
    label: str,
    reference: float | None,
) -> None:
    """Points with their intervals, one panel per model; each row's chance as a grey bar, a
    reference common to every row as a dashed line."""
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axis, (title, rows) in zip(axes, panels, strict=True):
        positions = np.arange(len(rows))[::-1]
        for position, row in zip(positions, rows, strict=True):
            low, high = row.interval if row.interval else (row.value, row.value)
            axis.errorbar(
                row.value,
                position,
                xerr=[[row.value - low], [high - row.value]],
                fmt="o",
                capsize=3,
                color=row.color,
            )
            if row.chance is not None:
                axis.plot(row.chance, position, marker="|", markersize=14, color="grey")
        if reference is not None:
            axis.axvline(reference, color="grey", linestyle="--")
        axis.set_yticks(positions, [row.label for row in rows])
        axis.set_xlim(0, 1.02)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(label, fontsize=8)


def draw_study_figures(results: Mapping, folder: Path) -> dict[str, str]:
    """The ablation chart (internal vs held-out hospital films, per model) and the collection
    probe chart, into ``folder``; figure role -> file name."""
    configurations = results.get("configurations") or []
    drawn: dict[str, str] = {}
    if not configurations:
        return drawn
    folder.mkdir(parents=True, exist_ok=True)
    models = list(configurations[0]["models"])
    panels = []
    for key in models:
        rows = []
        for configuration in configurations:
            model = configuration["models"].get(key)
            if model is None:
                continue
            test = model["test_covid"]
            films = model["hospital_films"]
            rows.append(
                _ChartRow(
                    f"{configuration['title']}: internal",
                    test["metrics"].get("roc_auc_COVID") or 0.0,
                    test["confidence_intervals"].get("roc_auc_COVID"),
                    INTERNAL_COLOR,
                )
            )
            rows.append(
                _ChartRow(
                    f"{configuration['title']}: unseen hospital films",
                    films["metrics"].get("roc_auc_COVID") or 0.0,
                    films["confidence_intervals"].get("roc_auc_COVID"),
                    FILMS_COLOR,
                )
            )
        panels.append((key, rows))
    figure = Figure(figsize=(4 + 3.2 * len(panels), 0.32 * len(panels[0][1]) + 1.6))
    _point_rows(figure, panels, "ROC-AUC of COVID (95% CI over patients; dashed: chance)", 0.5)
    path = folder / "ablation_roc_auc.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    drawn["ablation"] = path.name
    probe_rows = [
        _ChartRow(
            f"{configuration['title']}: {condition['region'].replace('_', ' ')}",
            condition["metrics"]["balanced_accuracy"],
            condition["confidence_intervals"].get("balanced_accuracy"),
            REGION_COLORS.get(condition["region"], INTERNAL_COLOR),
            configuration["collection_probe"]["chance"]["balanced_accuracy"],
        )
        for configuration in _shared_views(configurations)
        for condition in configuration["collection_probe"].get("conditions", [])
    ]
    if probe_rows:
        figure = Figure(figsize=(7.5, 0.32 * len(probe_rows) + 1.6))
        _point_rows(
            figure,
            [("Telling the collections apart", probe_rows)],
            "balanced accuracy (95% CI over patients; grey bar: chance)",
            None,
        )
        path = folder / "collection_probe.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        drawn["collection_probe"] = path.name
    return drawn
