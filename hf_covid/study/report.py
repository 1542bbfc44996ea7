"""The study's document: ``public_study.md`` rendered from the dict ``results.json`` holds.

Every number comes from that dict; the text around them says what the data allows. Internal
numbers are never read as evidence of COVID-19 detection on their own: the document sets each
beside the collection probe and the held-out hospital films, and says plainly which
configurations still learn the collection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from hf_covid.evaluation.anchors import PUBLISHED_ANCHORS
from hf_covid.evaluation.report import markdown_table

from .confounds_report import (
    draw_study_figures,
    explanations_section,
    interval_text,
    loso_section,
    lungs_only_section,
    probe_section,
    reads_the_collection,
)

__all__ = ["draw_study_figures", "study_markdown"]

DISCLAIMER = (
    "> **Research software, not a diagnostic device.** These models were trained on a few "
    "hundred public images whose classes come from different collections; no number below is "
    "evidence that any of them detects COVID-19, and none may be used on patients."
)


def _cell(scores: Mapping, name: str) -> str:
    return interval_text(scores.get("metrics", {}), scores.get("confidence_intervals"), name)


def _ablation_rows(configurations: Sequence[Mapping]) -> list[list[str]]:
    rows = []
    for configuration in configurations:
        for key, model in configuration["models"].items():
            test, covid, films = model["test"], model["test_covid"], model["hospital_films"]
            rows.append(
                [
                    configuration["title"],
                    key,
                    _cell(test, "accuracy"),
                    _cell(test, "f1_macro"),
                    _cell(covid, "covid_sensitivity"),
                    _cell(covid, "specificity_COVID"),
                    _cell(covid, "roc_auc_COVID"),
                    _cell(films, "covid_sensitivity"),
                    _cell(films, "specificity_COVID"),
                    _cell(films, "roc_auc_COVID"),
                ]
            )
    return rows


def _internal_and_films(configurations: Sequence[Mapping]) -> list[tuple[str, str, float, float]]:
    """(configuration title, model, internal ROC-AUC of COVID, unseen-film ROC-AUC) per model."""
    return [
        (
            configuration["title"],
            key,
            model["test_covid"]["metrics"]["roc_auc_COVID"],
            model["hospital_films"]["metrics"]["roc_auc_COVID"],
        )
        for configuration in configurations
        for key, model in configuration["models"].items()
        if model["test_covid"]["metrics"].get("roc_auc_COVID") is not None
        and model["hospital_films"]["metrics"].get("roc_auc_COVID") is not None
    ]


def _best(configurations: Sequence[Mapping]) -> tuple[Mapping, str, Mapping] | None:
    """The configuration and model with the highest held-out hospital-film ROC-AUC."""
    candidates = [
        (configuration, key, model)
        for configuration in configurations
        for key, model in configuration["models"].items()
        if model["hospital_films"]["metrics"].get("roc_auc_COVID") is not None
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda item: item[2]["hospital_films"]["metrics"]["roc_auc_COVID"])


def _best_checkpoint(configurations: Sequence[Mapping]) -> str:
    """``<configuration>/<model>`` of the best model on the unseen films (the first if none)."""
    best = _best(configurations)
    if best is None:
        configuration = configurations[0]
        return f"{configuration['key']}/{next(iter(configuration['models']), 'resnet')}"
    return f"{best[0]['key']}/{best[1]}"


def _findings(configurations: Sequence[Mapping]) -> list[str]:
    """What the numbers say, in sentences computed from them."""
    lines = ["## What this shows", ""]
    learning = [c["title"] for c in configurations if reads_the_collection(c["collection_probe"])]
    lines.append(
        "- Configurations whose images still give the collection away from the lungs alone "
        "(collection probe, see (a)): "
        + (", ".join(learning) if learning else "none")
        + ". A model trained on such a view can score by collection; its internal numbers are "
        "not evidence of COVID-19 detection."
    )
    partly = [
        c["title"]
        for c in configurations
        if c["title"] not in learning and reads_the_collection(c["collection_probe"], margin=0.0)
    ]
    if partly:
        lines.append(
            "- Configurations whose collection the probe still reads from the lungs alone above "
            "chance, by less (the interval's lower end above chance, but by 0.1 or less): "
            + ", ".join(partly)
            + ". They learn the collection less, not never: part of any number on them can "
            "still be the collection's."
        )
    pairs = _internal_and_films(configurations)
    if pairs:
        largest = max(pairs, key=lambda pair: pair[2] - pair[3])
        lines.append(
            f"- Internal ROC-AUC of COVID against the unseen hospital films: the gap is largest "
            f"for {largest[1]} in {largest[0]} ({largest[2]:.3f} internal, {largest[3]:.3f} on the "
            "films). Where internal and held-out numbers part, the internal one does not predict "
            "an unseen hospital."
        )
    if len(pairs) >= 3:
        rho = spearmanr([pair[2] for pair in pairs], [pair[3] for pair in pairs]).statistic
        lines.append(
            f"- Across the {len(pairs)} checkpoints, the rank correlation (Spearman) of internal "
            f"and unseen-film ROC-AUC is {rho:+.2f}: "
            + (
                "the internal number ranks the models as the unseen hospital does."
                if rho >= 0.5
                else "the internal number does not rank the models as the unseen hospital does; "
                "the held-out films, not the internal split, are the number to choose a model by."
            )
        )
    best = _best(configurations)
    if best is not None:
        configuration, key, model = best
        films = model["hospital_films"]
        lines.append(
            f"- Best on the unseen hospital films: {key} in {configuration['title']}: ROC-AUC "
            f"{_cell(films, 'roc_auc_COVID')}, COVID sensitivity "
            f"{_cell(films, 'covid_sensitivity')}, specificity {_cell(films, 'specificity_COVID')} "
            f"({films['n_films']} films of one Spanish hospital group against "
            f"{films['n_controls']} adult Normal test images)."
        )
    lines += [
        "- The external aim (ROC-AUC COVID vs Normal at least 0.85 with sensitivity and "
        "specificity at least 0.80 at every site of a set from hospitals no collection here "
        "contains) is judged by evaluating these checkpoints on such a set with `hf-covid "
        "evaluate CHECKPOINT --data_dir FOLDER --dataset_name NAME`; the held-out hospital "
        "films are this study's stand-in for it, not the set itself.",
        "",
    ]
    return lines


def _mitigation_lines(configurations: Sequence[Mapping]) -> list[str]:
    """Per model, what each configuration changed from the one before it: the change of the
    internal and of the unseen-film ROC-AUC of COVID."""
    rows, half_widths = [], []
    for before, after in zip(configurations, configurations[1:], strict=False):
        changed = (
            f"the data ({before['composition']} -> {after['composition']})"
            if after["composition"] != before["composition"]
            else "a mitigation"
        )
        for key, model in after["models"].items():
            earlier = before["models"].get(key)
            if earlier is None:
                continue
            changes = []
            for scores in ("test_covid", "hospital_films"):
                now = model[scores]["metrics"].get("roc_auc_COVID")
                then = earlier[scores]["metrics"].get("roc_auc_COVID")
                changes.append("-" if now is None or then is None else f"{now - then:+.3f}")
            interval = model["hospital_films"].get("confidence_intervals", {}).get("roc_auc_COVID")
            if interval:
                half_widths.append((interval[1] - interval[0]) / 2)
            rows.append([after["title"], changed, key, *changes])
    if not rows:
        return []
    spread = (
        f" (the unseen-film ROC-AUC intervals reach {float(np.median(half_widths)):.3f} either "
        "side of the value, median), so a change smaller than that is not a measured effect"
        if half_widths
        else ""
    )
    return [
        "## What each mitigation bought",
        "",
        "Change of each model's ROC-AUC of COVID from the configuration before, one training "
        f"seed each{spread}. Where the data changes, the internal number measures another task "
        "and its change is not the step's cost.",
        "",
        *markdown_table(
            [
                "Configuration",
                "Changes",
                "Model",
                "Internal ROC-AUC change",
                "Unseen-film ROC-AUC change",
            ],
            rows,
        ),
        "",
    ]


def _data_lines(configurations: Sequence[Mapping]) -> list[str]:
    lines = ["## Data", ""]
    seen = set()
    for configuration in configurations:
        name = configuration["composition"]
        if name in seen:
            continue
        seen.add(name)
        data = configuration["data"]
        lines += [f"**{name}** (splits {data['split_sizes']}, classes {data['classes']}):", ""]
        rows = [
            [row["class"], row["source"], row["age_group"], row["view"], str(row["images"])]
            for row in data["strata"]
        ]
        lines += markdown_table(["class", "source", "age group", "view", "images"], rows)
        lines += ["", *(f"- {note}" for note in data["notes"]), ""]
    return lines


def _per_group_lines(configurations: Sequence[Mapping], field: str, title: str) -> list[str]:
    rows = []
    for configuration in configurations:
        for key, model in configuration["models"].items():
            for group, metrics in (model["test"].get(field) or {}).items():
                rows.append(
                    [
                        configuration["title"],
                        key,
                        group,
                        str(metrics.get("n_samples", "-")),
                        interval_text(metrics, None, "accuracy"),
                        interval_text(metrics, None, "covid_sensitivity"),
                    ]
                )
    if not rows:
        return []
    header = ["Configuration", "Model", title, "n", "accuracy", "COVID sensitivity"]
    return [f"### Internal test split per {title.lower()}", "", *markdown_table(header, rows), ""]


def _time_rows(results: Mapping) -> list[list[str]]:
    rows = [["lung U-Net", "-", f"{results['unet']['train_wall_s']:.0f}", "-"]]
    for configuration in results["configurations"]:
        for key, model in configuration["models"].items():
            held = model.get("hospital_films_train_wall_s")
            rows.append(
                [
                    key,
                    configuration["title"],
                    f"{model['train_wall_s']:.0f}",
                    "-" if held is None else f"{held:.0f}",
                ]
            )
    return rows


def study_markdown(results: Mapping[str, Any]) -> str:
    """``public_study.md`` from the study results (the dict of ``results.json``)."""
    study = results["study"]
    configurations = results["configurations"]
    unet = results["unet"]
    figures = results.get("figures") or {}
    wall = study.get("wall_s")
    lines = [
        "# The real-data study, v2: from the first study's data to every shortcut mitigation",
        "",
        DISCLAIMER,
        "",
        f"Run: `hf-covid study --collections-root {study['collections_root']}` started "
        f"{study['started_utc']} UTC on a 2-core CPU"
        + (f", {wall / 60:.1f} min wall clock" if wall else "")
        + f" (load average at start `{study.get('loadavg_start')}`, at the end "
        f"`{study.get('loadavg_end')}`)"
        + (
            " **in --quick mode: tiny models, the numbers mean nothing**"
            if study.get("quick")
            else ""
        )
        + f". Collections found: {', '.join(study['collections_found'])}.",
        "",
        "Each configuration adds one mitigation to the one before; every model is a full "
        "checkpoint under `<output-dir>/models/<configuration>/<model>`, so that each can be "
        "evaluated on an external set with `hf-covid evaluate`.",
        "",
        *markdown_table(
            ["Configuration", "What it adds"],
            [[c["title"], c["adds"]] for c in configurations],
        ),
        "",
        *_findings(configurations),
        "## The ablation",
        "",
        "Internal: each model's own patient-grouped test split (accuracy and macro F1 over its "
        "classes; COVID sensitivity, specificity and ROC-AUC of COVID against its other "
        "classes). Unseen hospital films: all of "
        "COVID-CXNet's @ChestImaging films (PCR-positive adults, one Spanish hospital group), "
        "for the configurations whose composition holds them by models trained again without "
        "them (`<output-dir>/holdout/<configuration>/<model>`), against the adult Normal images "
        "of the adult composition's test split (NIH `No Finding`, a few ieee8023 `No Finding`), "
        "scored as an external COVID/ + Normal/ folder is: COVID sensitivity, specificity "
        "(Normals not called COVID) and ROC-AUC of P(COVID), COVID vs Normal. For configuration "
        "(0) both the films and the adult Normals are unseen; for the others the Normals come "
        "from NIH, a hospital their models did train on, so only the COVID side is unseen. "
        "Intervals: 95% bootstrap over patients.",
        "",
        *markdown_table(
            [
                "Configuration",
                "Model",
                "Internal accuracy",
                "Internal macro F1",
                "Internal COVID sensitivity",
                "Internal specificity",
                "Internal ROC-AUC (COVID)",
                "Films: COVID sensitivity",
                "Films: specificity",
                "Films: ROC-AUC",
            ],
            _ablation_rows(configurations),
        ),
        "",
    ]
    if "ablation" in figures:
        lines += [f"![internal vs unseen hospital films](public_study/{figures['ablation']})", ""]
    lines += [
        *_mitigation_lines(configurations),
        "## Confounds, measured",
        "",
        *probe_section(configurations),
    ]
    if "collection_probe" in figures:
        lines += [f"![collection probe](public_study/{figures['collection_probe']})", ""]
    lines += [
        *lungs_only_section(configurations),
        *loso_section(configurations),
        *explanations_section(configurations),
        "Grad-CAM overlays show the collections' own X-rays, whose licences (many CC BY-NC or "
        "CC BY-NC-ND, some none stated) keep them out of this repository: they stay in the "
        "study's output folder (`figures/explanations_<configuration>_<model>.png`).",
        "",
        *_per_group_lines(configurations, "per_source", "Source"),
        *_per_group_lines(configurations, "per_age_group", "Age group"),
        "## The lung U-Net",
        "",
        "Trained on the human v7labs lung masks of the ieee8023 X-rays (the only public masks "
        "here), Dice and IoU on held-out patients (anchor: "
        f"{PUBLISHED_ANCHORS['lung_segmentation']['value']} in "
        f"{PUBLISHED_ANCHORS['lung_segmentation']['reference']}): "
        f"Dice {_cell(unet['test'], 'dice')}, IoU {_cell(unet['test'], 'iou')}. Its masks crop "
        "and blank the lungs of every image of every collection, and are the dual-channel "
        "model's mask input, so no class is told apart by the source of its mask.",
        "",
        *_data_lines(configurations),
        "## Time",
        "",
        *markdown_table(
            ["Model", "Configuration", "training (s)", "training without the films (s)"],
            _time_rows(results),
        ),
        "",
        "## Reproduce",
        "",
        "```bash",
        "hf-covid study --collections-root public_data/ --output-dir /tmp/study --docs-dir docs",
        f"hf-covid evaluate /tmp/study/models/{_best_checkpoint(configurations)} "
        "--data_dir EXTERNAL_FOLDER --dataset_name my-hospital",
        "```",
        "",
        "Numbers are in `public_study/results.json`. The images are licence-restricted (many CC "
        "BY-NC, some ND, COVID-CT unlicensed) and are not part of this repository.",
    ]
    return "\n".join(lines) + "\n"
