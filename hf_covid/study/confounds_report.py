"""The confound section of the study document and its figures, from :func:`run_confounds`'s
result (:mod:`hf_covid.study.confounds`). Research software, not a diagnostic device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hf_covid.evaluation.report import markdown_table

__all__ = ["confounds_markdown", "draw_confound_figures"]


def _plot_intervals(
    rows: Sequence[tuple[str, float, Sequence[float] | None]],
    path: Path,
    title: str,
    label: str,
    chance: float | None = None,
) -> Path:
    """Points with 95% intervals, one row each (what the probes measured)."""
    figure = Figure(figsize=(7, 0.5 * len(rows) + 1.4))
    axis = figure.subplots()
    positions = np.arange(len(rows))[::-1]
    for position, (_, value, interval) in zip(positions, rows, strict=True):
        low, high = interval if interval else (value, value)
        axis.errorbar(value, position, xerr=[[value - low], [high - value]], fmt="o", capsize=4)
    if chance is not None:
        axis.axvline(chance, color="grey", linestyle="--", label="chance")
        axis.legend(loc="lower right")
    axis.set_yticks(positions, [name for name, _, _ in rows])
    axis.set_xlim(0, 1.02)
    axis.set_xlabel(label)
    axis.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _condition_name(condition: Mapping) -> str:
    """``"outside lungs (unet masks)"``; the whole image names no mask."""
    source = condition.get("mask_source")
    shown = condition["region"] != "whole" and source
    return condition["region"].replace("_", " ") + (f" ({source} masks)" if shown else "")


def draw_confound_figures(result: Mapping, folder: Path) -> dict[str, str]:
    """Draw the collection-probe and lungs-only charts of ``result`` into ``folder``.

    Returns:
        Figure role (``collection_probe``, ``lungs_only``) -> file name, for those drawn.
    """
    drawn = {}
    probe = result.get("collection_probe")
    if probe and probe.get("conditions"):
        rows = [
            (
                _condition_name(c),
                c["metrics"]["balanced_accuracy"],
                c["confidence_intervals"]["balanced_accuracy"],
            )
            for c in probe["conditions"]
        ]
        path = _plot_intervals(
            rows,
            folder / "confounds_collection_probe.png",
            "Telling ieee8023 (adult) from Kermany (pediatric) images",
            "balanced accuracy of a small CNN (95% CI)",
            chance=0.5,
        )
        drawn["collection_probe"] = path.name
    models = result.get("lungs_only") or []
    if models:
        rows = [
            (
                f"{m['model']}: {_condition_name(c)}",
                c["metrics"]["accuracy"],
                c["confidence_intervals"]["accuracy"],
            )
            for m in models
            for c in m["conditions"]
        ]
        path = _plot_intervals(
            rows,
            folder / "confounds_lungs_only.png",
            "Trained classifiers, whole image vs lungs only",
            "test accuracy (95% CI)",
        )
        drawn["lungs_only"] = path.name
    return drawn


def _value(scores: Mapping, name: str) -> str:
    value = scores["metrics"].get(name)
    interval = scores["confidence_intervals"].get(name)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _above_chance(scores: Mapping, name: str, chance: float) -> bool:
    interval = scores["confidence_intervals"].get(name)
    return bool(interval) and interval[0] > chance


def _probe_section(probe: Mapping) -> list[str]:
    if probe.get("skipped"):
        return ["### (a) Can the collection be read off the image?", "", probe["skipped"]]
    counts = ", ".join(f"{name} {count}" for name, count in probe["test_counts"].items())
    lines = [
        "### (a) Can the collection be read off the image?",
        "",
        f"A small CNN (three convolution blocks) learns to tell ieee8023 (adult COVID-19 "
        f"cases) from Kermany (children aged 1-5) on {probe['n_train']} training images and is "
        f"tested on {probe['n_test']} held-out patients' images ({counts}; majority-class "
        f"accuracy {probe['chance']['accuracy']:.3f}, chance balanced accuracy and AUC 0.5).",
        "",
    ]
    rows = [
        [_condition_name(c), *(_value(c, n) for n in ("accuracy", "balanced_accuracy", "roc_auc"))]
        for c in probe["conditions"]
    ]
    lines += markdown_table(["Image shown", "Accuracy", "Balanced accuracy", "ROC-AUC"], rows)
    outside = [
        c
        for c in probe["conditions"]
        if c["region"] == "outside_lungs" and c["mask_source"] == "unet"
    ]
    if any(c["mask_source"] == "human" for c in probe["conditions"]):
        lines += [
            "",
            "The *human masks* rows mix two mask sources along the collection line (human masks "
            "exist for ieee8023 images only, the U-Net draws the rest), so the outline of the "
            "blanked region alone can give the collection away there; the *unet masks* rows, one "
            "mask source for every image, are the fair comparison.",
        ]
    if outside:
        readable = _above_chance(outside[0], "balanced_accuracy", 0.6)
        lines += [
            "",
            "With the lungs blanked (U-Net masks) the collection is "
            + (
                "still predicted far above chance: the images carry their source (age, hospital, "
                "device, processing) outside the lungs, where no disease is, so any "
                "COVID-vs-control number on this mix can be earned by that alone."
                if readable
                else "not clearly predicted above chance from outside the lungs here."
            ),
            "The shape and size of the blanked region also differ between adults and children, "
            "so part of this signal is anatomy, not hospital; either way it is not COVID-19.",
        ]
    return lines


def _lungs_only_section(models: Sequence[Mapping]) -> list[str]:
    lines = [
        "",
        "### (b) Trained classifiers with everything outside the lungs blanked",
        "",
        "Each classifier on its own test split; the drop is whole-image accuracy minus "
        "lungs-only accuracy, with a paired bootstrap interval over the test images.",
        "",
    ]
    rows = []
    for model in models:
        for condition in model["conditions"]:
            drop = condition.get("accuracy_drop")
            interval = condition.get("accuracy_drop_interval")
            fractions = condition["predicted_fractions"]
            top = max(fractions, key=fractions.get)
            rows.append(
                [
                    model["model"],
                    _condition_name(condition),
                    _value(condition, "accuracy"),
                    _value(condition, "covid_sensitivity"),
                    "" if drop is None else f"{drop:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]",
                    f"{top} {fractions[top]:.0%}",
                ]
            )
    header = ["Model", "Image shown", "Accuracy", "COVID sensitivity", "Drop", "Most predicted"]
    lines += markdown_table(header, rows)
    lines += [
        "",
        "None of these models saw blanked images in training, so part of any drop is the change "
        "of input distribution; a large drop still says the model relied on what lies outside "
        "the lungs. *Most predicted* shows when the blanked images collapse onto one class. "
        "With *human masks* the COVID images (ieee8023) are cut by human outlines and the "
        "others by the U-Net's, so the outline itself differs by class there.",
    ]
    return lines


def _loso_section(loso: Mapping) -> list[str]:
    lines = ["", "### (c) Leave one COVID source out", ""]
    if loso.get("skipped") or not loso.get("held_out"):
        return lines + [loso.get("skipped") or "No ieee8023 source was large enough to hold out."]
    lines += [
        "A small COVID vs Non-COVID CNN is trained without one ieee8023 source (the site of the "
        "image's `url` in `metadata.csv`, with every image of its patients), then tested on that "
        "source's COVID images against the test split's Non-COVID images, and in distribution "
        "on the test split without that source.",
        "",
    ]
    rows = [
        [
            fold["source"],
            str(fold["n_held_out_covid"]),
            _value(fold["in_distribution"], "covid_sensitivity"),
            _value(fold["held_out_source"], "covid_sensitivity"),
            _value(fold["in_distribution"], "roc_auc"),
            _value(fold["held_out_source"], "roc_auc"),
        ]
        for fold in loso["held_out"]
    ]
    header = [
        "Held-out source",
        "COVID images",
        "Sensitivity in distribution",
        "Sensitivity held out",
        "ROC-AUC in distribution",
        "ROC-AUC held out",
    ]
    lines += markdown_table(header, rows)
    lines += [
        "",
        "Every COVID source here is adult and every control pediatric, so a shortcut shared by "
        "all COVID sources (age, adult hospital equipment) survives holding one source out: a "
        "small drop does not clear the model, a large one shows source-specific shortcuts.",
    ]
    return lines


def _dual_input_section(dual: Mapping) -> list[str]:
    lines = ["", "### (d) The dual-input model: which input carries the fused number", ""]
    if dual.get("skipped"):
        return [*lines, dual["skipped"]]
    names = {"xray+ct": "X-ray + CT", "xray": "X-ray only", "ct": "CT only"}
    ranking = {
        name: tuple(
            dual["variants"][variant]["metrics"].get(m) or 0.0 for m in ("accuracy", "roc_auc")
        )
        for variant, name in (("xray", "X-ray"), ("ct", "CT"))
    }
    better = (
        "X-ray and CT alike" if ranking["X-ray"] == ranking["CT"] else max(ranking, key=ranking.get)
    )
    rows = [
        [
            names.get(v, v),
            _value(s, "accuracy"),
            _value(s, "covid_sensitivity"),
            _value(s, "roc_auc"),
        ]
        for v, s in dual["variants"].items()
    ]
    lines += [f"On the {dual['n_pairs']} test pairs with both images:", ""]
    lines += markdown_table(["Inputs", "Accuracy", "COVID sensitivity", "ROC-AUC"], rows)
    if dual.get("fused_follows_xray") is not None:
        lines += [
            "",
            f"The X-ray-only and CT-only predictions disagree on {dual['single_inputs_disagree']} "
            f"pairs; there the fused prediction follows the X-ray in "
            f"{100 * dual['fused_follows_xray']:.0f}% and the CT in "
            f"{100 * dual['fused_follows_ct']:.0f}% of cases.",
        ]
    lines += [
        "",
        f"Pairing: **{dual['pairing']}** ({dual['pairing_note'].rstrip('.')}). Both images of a "
        "pair carry the pair's label by construction, so either one suffices, and a fused "
        "accuracy near the "
        f"better single input's (here: {better}) is explained by that input alone; the X-ray "
        "also carries the collection shortcut of (a). The fused number says nothing about how "
        "an X-ray and a CT of the same patient would combine.",
    ]
    return lines


def confounds_markdown(result: Mapping) -> str:
    """The confound section of the study document, from :func:`run_confounds`'s result."""
    lines = [
        "## Confounds, measured",
        "",
        "Research software: these numbers describe the public collections used here, not any "
        "clinical performance. Intervals are 95% percentile bootstraps over test images.",
        "",
    ]
    lines += _probe_section(result["collection_probe"])
    if result.get("lungs_only"):
        lines += _lungs_only_section(result["lungs_only"])
    lines += _loso_section(result["leave_one_source_out"])
    if result.get("dual_input"):
        lines += _dual_input_section(result["dual_input"])
    figures = result.get("figures") or {}
    if figures:
        lines += ["", "Figures: " + ", ".join(f"`{name}`" for name in figures.values()) + "."]
    if result.get("notes"):
        lines += ["", *(f"- {note}" for note in result["notes"])]
    return "\n".join(lines) + "\n"
