"""The study's document: ``public_study.md`` rendered from the dict ``results.json`` holds.

Every number comes from that dict; the text around them says what the data allows. The
interpretation does not depend on how high the numbers are: the composition puts every COVID-19
image in one collection and most of the others in another, so a high internal number is not
evidence of COVID-19 detection, and the document says so with the counts that show why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hf_covid.registry import get_model_family

__all__ = ["PUBLISHED_ANCHORS", "study_markdown"]

PUBLISHED_ANCHORS: dict[str, dict[str, Any]] = {
    "radiography_3_class": {
        "dataset_kind": "radiography",
        "task": "classification",
        "metric": "accuracy",
        "value": 0.979,
        "what": "3-class accuracy (COVID-19 / viral pneumonia / normal)",
        "reference": "Chowdhury et al. 2020, IEEE Access 8:132665 (COVID-19 Radiography "
        "Database: adult COVID-19 images against pediatric Kermany controls)",
    },
    "covid_ct": {
        "dataset_kind": "xray_ct",
        "task": "classification",
        "metric": "f1 / roc_auc (CT)",
        "value": {"f1": 0.85, "roc_auc": 0.94},
        "what": "COVID-CT slices, F1 0.85 and AUC 0.94",
        "reference": "Yang et al. 2020, COVID-CT-Dataset, arXiv:2003.13865",
    },
    "lung_segmentation": {
        "dataset_kind": "radiography",
        "task": "segmentation",
        "metric": "dice",
        "value": 0.969,
        "what": "lung segmentation Dice on their masks",
        "reference": "Rahman et al. 2021, Computers in Biology and Medicine 132:104319",
    },
}
"""The published numbers the study sets its results beside (issue 14), each for the models of
one dataset kind and task (:class:`hf_covid.registry.ModelFamily` fields), so a new family meets
the anchor of its task without an entry here."""

HEADLINE = {
    "classification": ("accuracy", "balanced_accuracy", "f1_macro", "covid_sensitivity", "roc_auc"),
    "segmentation": ("dice", "iou"),
}


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _with_interval(metrics: Mapping, intervals: Mapping | None, name: str) -> str:
    value = metrics.get(name)
    if value is None:
        return "-"
    interval = (intervals or {}).get(name)
    if not interval:
        return f"{value:.3f}"
    return f"{value:.3f} ({interval[0]:.3f}-{interval[1]:.3f})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _anchor_of(key: str) -> dict[str, Any] | None:
    family = get_model_family(key)
    return next(
        (
            anchor
            for anchor in PUBLISHED_ANCHORS.values()
            if (anchor["dataset_kind"], anchor["task"]) == (family.dataset_kind, family.task)
        ),
        None,
    )


def _anchor_text(anchor: dict[str, Any] | None) -> str:
    if anchor is None:
        return "-"
    value = anchor["value"]
    shown = (
        ", ".join(f"{k} {v:g}" for k, v in value.items())
        if isinstance(value, dict)
        else f"{value:g}"
    )
    return f"{shown} ({anchor['reference'].split(',')[0]})"


def _headline_rows(models: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, model in models.items():
        metrics = model["test"]["metrics"] or {}
        intervals = model["test"]["confidence_intervals"]
        task = get_model_family(key).task
        cells = [model["display_name"], str(metrics.get("n_samples", "-"))]
        if task == "segmentation":
            cells += ["-", "-", "-", "-", "-"]
            cells += [_with_interval(metrics, intervals, name) for name in HEADLINE[task]]
        else:
            cells += [_with_interval(metrics, intervals, name) for name in HEADLINE[task]]
            cells += ["-", "-"]
        rows.append([*cells, _anchor_text(_anchor_of(key))])
    return rows


def _covid_test_sources(data: Mapping[str, Any]) -> set[str]:
    """The sources with COVID images in a test split (where COVID sensitivity is defined)."""
    sources: set[str] = set()
    for layout in data.values():
        for name, counts in layout.get("per_split_class_source", {}).get("test", {}).items():
            if name == "COVID":
                sources.update(source for source, count in counts.items() if count)
    return sources


def _per_source_rows(models: Mapping[str, Any], data: Mapping[str, Any]) -> list[list[str]]:
    # Results written before per-source metrics gave None where undefined hold a 0.0 there.
    with_covid = _covid_test_sources(data)
    rows = []
    for model in models.values():
        for source, metrics in (model["test"].get("per_source") or {}).items():
            sensitivity = metrics.get("covid_sensitivity") if source in with_covid else None
            rows.append(
                [
                    model["display_name"],
                    source,
                    str(metrics.get("n_samples", "-")),
                    _number(metrics.get("accuracy", metrics.get("dice"))),
                    _number(sensitivity),
                    _number(metrics.get("roc_auc")),
                ]
            )
    return rows


def _composition_lines(data: Mapping[str, Any]) -> list[str]:
    lines = []
    for layout, title in (("radiography", "Radiography label set"), ("xray_ct", "X-ray + CT")):
        if layout not in data:
            continue
        summary = data[layout]
        lines.append(f"**{title}** (splits {summary['split_sizes']}):")
        lines.append("")
        rows = []
        for split, classes in summary["per_split_class_source"].items():
            for name, sources in classes.items():
                rows.append(
                    [split, name, ", ".join(f"{s} {n}" for s, n in sorted(sources.items()))]
                )
        by = "rows by X-ray source" if layout == "xray_ct" else "rows by source"
        lines += _table(["split", "class", by], rows)
        lines += [f"- {note}" for note in summary["notes"]] + [""]
    return lines


def _source_confound(data: Mapping[str, Any]) -> str:
    """The sentence with the counts that make the shortcut possible."""
    counts = data.get("radiography", {}).get("per_split_class_source", {})
    covid_sources: dict[str, int] = {}
    other_sources: dict[str, int] = {}
    for classes in counts.values():
        for name, sources in classes.items():
            target = covid_sources if name == "COVID" else other_sources
            for source, count in sources.items():
                target[source] = target.get(source, 0) + count
    covid_total, other_total = sum(covid_sources.values()), sum(other_sources.values())
    if not covid_total or not other_total:
        return ""
    kermany_share = other_sources.get("kermany", 0) / other_total
    ieee_covid = covid_sources.get("ieee8023", 0) / covid_total
    return (
        f"In the Radiography composition {ieee_covid:.0%} of the COVID images come from ieee8023 "
        f"(adults, figures from papers and websites) and {kermany_share:.0%} of the Normal and "
        "Viral Pneumonia images from Kermany (children aged 1-5, one hospital in Guangzhou). "
        "The collection, and so age, hospital and image processing, predicts the label almost "
        "as well as the label itself."
    )


def _mask_lines(model: Mapping[str, Any]) -> list[str]:
    """A lung-mask model's test images with human masks: human vs U-Net masks as its input."""
    comparison = model["mask_comparison"]
    if not comparison.get("n_images"):
        return [
            f"{model['display_name']}: no test image has a human mask; the comparison was not "
            "possible.",
            "",
        ]
    rows = []
    for name, title in (("human_masks", "human (v7labs) masks"), ("unet_masks", "U-Net masks")):
        result = comparison[name]
        rows.append(
            [
                title,
                _with_interval(result["metrics"], result["confidence_intervals"], "accuracy"),
                _with_interval(
                    result["metrics"], result["confidence_intervals"], "covid_sensitivity"
                ),
            ]
        )
    return [
        f"{model['display_name']}, on the {comparison['n_images']} test images that have a "
        "human lung mask (all of them "
        "ieee8023 X-rays, nearly all COVID-19, so accuracy here is close to COVID sensitivity):",
        "",
        *_table(["mask given to the model", "accuracy (95% CI)", "COVID sensitivity"], rows),
    ]


def _modality_lines(model: Mapping[str, Any]) -> list[str]:
    """A model taking an X-ray and a CT: both inputs, the X-ray only and the CT only."""
    modalities = model["test"]["modalities"]
    rows = [
        [
            variant,
            str(result["metrics"].get("n_samples", "-")),
            _with_interval(result["metrics"], result.get("confidence_intervals"), "accuracy"),
            _with_interval(result["metrics"], result.get("confidence_intervals"), "roc_auc"),
        ]
        for variant, result in modalities.items()
    ]
    return [
        f"{model['display_name']}:",
        "",
        *_table(["inputs", "n", "accuracy (95% CI)", "ROC-AUC (95% CI)"], rows),
        "What label pairing means for the fused number: no public collection has an X-ray and a "
        "CT of one patient, so every row joins an X-ray and a CT *of the same label from two "
        "different people* (CTs reused across rows). The two inputs of a row agree on the label "
        "by construction, so either one alone carries the whole answer: the fused accuracy can "
        "never be better evidence than the better single modality, and it says nothing about "
        "combining the two images of one patient. The X-ray half inherits the source confound "
        "above (COVID X-rays from ieee8023, most Non-COVID X-rays from Kermany children); the "
        "CT half compares COVID-CT figure crops from papers with other figure crops.",
        "",
    ]


def _recipe_rows(models: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for model in models.values():
        recipe = model.get("recipe", {})
        training = model.get("training", {})
        rows.append(
            [
                model["display_name"],
                str(recipe.get("image_size", "-")),
                str(training.get("epochs_trained", "-")),
                str((recipe.get("config_overrides") or {}).get("widths", "-")),
                f"{model.get('train_wall_s', 0):.0f}",
            ]
        )
    return rows


def _classifier_count(models: Mapping[str, Any]) -> int:
    return sum(get_model_family(key).task == "classification" for key in models)


def _analysis_time(study: Mapping[str, Any]) -> str:
    """How long the probes took when they ran in a separate ``--only-analysis`` invocation."""
    if not study.get("only_analysis"):
        return ""
    return (
        f"the probes and explanations ran afterwards in {study['analysis_wall_s'] / 60:.1f} min; "
    )


def _analysis_lines(results: Mapping[str, Any], name: str, title: str) -> list[str]:
    """The probe's own markdown (with its heading), or why it is missing."""
    markdown = results.get(f"{name}_markdown")
    if markdown:
        return [markdown.strip(), ""]
    status = results.get(name) or {}
    return [
        f"## {title}",
        "",
        f"Not available in this run: `hf_covid.study.{name}` {status.get('status', 'not run')} "
        f"({status.get('reason', 'unknown')}). `python scripts/study.py ... --only-analysis` "
        "re-runs it on the saved checkpoints.",
        "",
    ]


def study_markdown(results: Mapping[str, Any]) -> str:
    """``public_study.md`` from the study results (the dict of ``results.json``)."""
    study = results["study"]
    models = results.get("models", {})
    data = results.get("data", {})
    quick = study.get("quick")
    lines = [
        f"# The real-data study: {len(models)} models on public chest X-rays and CTs",
        "",
        "> **Research software, not a diagnostic device.** These models were trained on a few "
        "hundred public images whose classes come from different collections; no number below "
        "is evidence that any of them detects COVID-19, and none may be used on patients.",
        "",
    ]
    if quick:
        lines += [
            "> This is a `--quick` run (tiny models at 32 px, one or two epochs): it checks "
            "that the study runs, its numbers mean nothing.",
            "",
        ]
    wall = study.get("training_wall_s")
    lines += [
        f"Run: `python scripts/study.py --collections-root {study.get('collections_root')}` "
        f"started {study.get('started_utc')} UTC on a shared 2-core CPU; training and "
        f"evaluation of the {len(models)} models took {wall / 60:.1f} min wall clock"
        if wall
        else "Run: (no training in this invocation)",
        f"({_analysis_time(study)}load average at start `{study.get('loadavg_start')}`, at the end "
        f"`{study.get('loadavg_end')}`: other jobs shared the machine). Collections found: "
        f"{', '.join(study.get('collections_found', []))}.",
        "",
        "## What this shows",
        "",
        _source_confound(data),
        "",
        "So the internal test numbers below measure how well a model tells these *collections* "
        "apart at least as much as how well it tells the *diseases* apart. A high 3-class "
        "accuracy here, like the published 97.9% on data built the same way, is not evidence "
        "of COVID-19 detection (DeGrave et al. 2021 showed such models key on source markers; "
        "Roberts et al. 2021 found none of 62 such models clinically usable). The confound "
        "probes further down measure how far the shortcut goes.",
        "",
        "## Headline: test metrics with 95% bootstrap intervals",
        "",
        "Patient-grouped test splits (no patient in two splits, near-duplicates kept together); "
        "intervals are percentile bootstraps over test images.",
        "",
        *_table(
            [
                "model",
                "n test",
                "accuracy",
                "balanced accuracy",
                "macro F1",
                "COVID sensitivity",
                "ROC-AUC",
                "Dice",
                "IoU",
                "published anchor",
            ],
            _headline_rows(models),
        ),
    ]
    for model in models.values():
        if model.get("confusion_matrix_figure"):
            lines.append(
                f"![{model['display_name']} confusion matrix]"
                f"(public_study/{model['confusion_matrix_figure']})"
            )
    lines += [
        "",
        "The anchors were measured on other data (the full Kaggle Radiography Database, the "
        "official COVID-CT split, Rahman's masks) with 224-299 px inputs and pretrained "
        "backbones: they are the numbers such work reports, not targets reached or missed here.",
        "",
        "## Per source",
        "",
        "The same test predictions split by the collection the image comes from. Within one "
        "collection the classes are few (Kermany has no COVID, ieee8023 mostly COVID), which "
        "is the confound itself: a metric that needs both classes, or COVID images, is `-` "
        "where they are missing.",
        "",
        *_table(
            ["model", "source", "n", "accuracy / Dice", "COVID sensitivity", "ROC-AUC"],
            _per_source_rows(models, data),
        ),
        "## The lung U-Net and the dual-channel model's masks",
        "",
        "The U-Net trained on the human v7labs lung masks of the ieee8023 X-rays; its Dice and "
        "IoU above are on held-out patients. Only ieee8023 COVID X-rays have human masks, so "
        "giving the dual-channel model 'the mask where there is one' would give the class away; "
        "it gets the U-Net's mask for every image instead (train, validation and test).",
        "",
        *(line for m in models.values() if m.get("mask_comparison") for line in _mask_lines(m)),
        "## X-ray + CT models: both inputs, X-ray only, CT only",
        "",
        *(
            line
            for m in models.values()
            if m["test"].get("modalities")
            for line in _modality_lines(m)
        ),
        *_analysis_lines(results, "confounds", "Confounds measured"),
        *_analysis_lines(results, "explanations", "Explanations on real X-rays"),
        *[f"![{name}](public_study/{name})" for name in results.get("analysis_figures") or []],
        "",
        "The explanation overlays show the collections' own X-rays; their licences (many "
        "CC BY-NC or CC BY-NC-ND, some none stated) keep them out of this repository, so they "
        "stay in the study's output folder (`figures/explanations_<model>.png`).",
        "",
        "## Recipes: sized for a 2-core CPU",
        "",
        *_table(
            ["model", "image size", "epochs run", "widths", "training (s)"], _recipe_rows(models)
        ),
        f"The {_classifier_count(models)} classifiers (`hf_covid/recipes/*_public.yaml`) train on "
        "96 px inputs with "
        "half the channel widths of the 224 px recipes, 6-8 epochs with early stopping on the "
        "validation macro F1; the U-Net on 64 px (its masks are resized to each image, and the "
        "dual-channel model reads them at 96 px) for 12 epochs on the ~300 masked training "
        "images. That keeps the whole study near 45 minutes on two CPU cores shared with other "
        "jobs: a 96 px step costs about a fifth of a 224 px step and halving the widths divides "
        "the convolution cost by about four. 96 px keeps the lung fields, heart and diaphragm, "
        "not fine texture. The study sets one torch thread (`--num-threads 1`): on a loaded "
        "2-core machine two threads were 4-9x slower per step than one. The ResNet is a small "
        "basic-block ResNet from random init because nothing can be downloaded here (the "
        "'transfer learning' in its name is its family's; `pretrained: microsoft/resnet-50` "
        "keeps the real `from_pretrained` path). On a GPU the 224 px recipes "
        "(`hf_covid/recipes/<model>.yaml`) would change: 224 px inputs, full widths, the "
        "ImageNet-pretrained ResNet-50, 30 epochs, a 224-256 px U-Net. That would likely raise "
        "every internal number without removing the confound, because the collections differ "
        "in ways a bigger model sees even better.",
        "",
        "## Data",
        "",
        *_composition_lines(data),
        "Lung_Opacity has no public source here; the 4-class models train with the three "
        "classes the collections fill (`classes: [COVID, Normal, Viral Pneumonia]`).",
        "",
        "## Reproduce",
        "",
        "```bash",
        "python scripts/study.py --collections-root public_data/ "
        "--output-dir /tmp/study --docs-dir docs",
        "python scripts/train.py cnn_lstm_public --data_dir public_data/   # one model alone",
        "```",
        "",
        "Numbers are in `public_study/results.json`. The images are licence-restricted (many "
        "CC BY-NC, some ND, COVID-CT unlicensed) and are not part of this repository.",
        "",
    ]
    return "\n".join(lines)
