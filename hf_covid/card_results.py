"""The results part of a model card: internal and external results side by side, their
``model-index`` entries, the per-source and per-age-group numbers, and the study's probes.

The internal results are the checkpoint's ``eval_results.json`` (its test split); the external
ones are those stored with it by ``hf-covid evaluate CHECKPOINT --data_dir FOLDER --dataset_name
NAME`` (:func:`~hf_covid.checkpoint_results.read_external_evaluations`). An external data set is
no Hub dataset: its ``model-index`` entry names it by NAME, as its type and its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult

from hf_covid.checkpoint_results import StudyProbes
from hf_covid.checkpoints import EXTERNAL_SPLIT, EvaluationResults

__all__ = [
    "COMPARED_METRICS",
    "GROUP_COLUMNS",
    "comparison_table",
    "external_eval_results",
    "group_tables",
    "is_number",
    "number_with_interval",
    "probes_context",
]

COMPARED_METRICS: dict[str, tuple[str, str]] = {
    "covid_sensitivity": ("sensitivity", "COVID sensitivity"),
    "specificity_COVID": ("specificity", "COVID specificity (vs the other classes present)"),
    "roc_auc_COVID": ("roc_auc", "ROC-AUC, COVID vs the other classes present"),
    "balanced_accuracy": ("balanced_accuracy", "Balanced accuracy (classes present)"),
    "accuracy": ("accuracy", "Accuracy"),
}
"""Metrics set side by side for the internal test split and each external set:
``eval_results.json`` key -> (``model-index`` metric type, card title)."""

GROUP_COLUMNS: dict[str, str] = {
    "n_samples": "Images",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "covid_sensitivity": "COVID sensitivity",
    "roc_auc": "ROC-AUC",
}
"""Columns of the per-source and per-age-group tables (of the evaluation's short metric set)."""

_UNITS = {"patient": "patients", "image": "images"}


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool, not None, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number_with_interval(value: Any, interval: Any = None) -> str:
    """``"0.940 (0.910 – 0.960)"``, ``"0.940"`` without an interval, ``"–"`` without a value."""
    if not is_number(value):
        return "–"
    text = f"{value:.3f}"
    if isinstance(interval, list | tuple) and len(interval) == 2 and all(map(is_number, interval)):
        text += f" ({interval[0]:.3f} – {interval[1]:.3f})"
    return text


def _column(name: str, results: EvaluationResults) -> dict[str, Any]:
    count = results.metrics.get("n_samples")
    return {
        "name": name,
        "split": results.split,
        "n": int(count) if is_number(count) else None,
        "unit": _UNITS.get(results.interval_unit, results.interval_unit),
        "confidence_percent": round(100 * results.confidence),
    }


def comparison_table(
    internal: EvaluationResults | None,
    external: Mapping[str, EvaluationResults],
    internal_name: str,
) -> dict[str, Any] | None:
    """The internal test results and every external set's, as one table.

    Args:
        internal: The checkpoint's own results (None: the external columns alone).
        external: Data set name -> its external evaluation.
        internal_name: What the internal column is called (the training data's name).

    Returns:
        ``columns`` (name, split, n, interval unit, confidence) and ``rows`` (metric title, one
        text cell per column), or None without external results.
    """
    if not external:
        return None
    evaluated = ([(internal_name, internal)] if internal is not None else []) + list(
        external.items()
    )
    rows = [
        {
            "title": title,
            "cells": [
                number_with_interval(
                    results.metrics.get(key), results.confidence_intervals.get(key)
                )
                for _, results in evaluated
            ],
        }
        for key, (_, title) in COMPARED_METRICS.items()
        if any(is_number(results.metrics.get(key)) for _, results in evaluated)
    ]
    return {"columns": [_column(name, results) for name, results in evaluated], "rows": rows}


def external_eval_results(
    external: Mapping[str, EvaluationResults], task_type: str
) -> list[EvalResult]:
    """``model-index`` results of the external sets: the given name is the dataset's type and
    name (they are no Hub datasets), split ``external``."""
    return [
        EvalResult(
            task_type=task_type,
            dataset_type=name,
            dataset_name=name,
            dataset_split=EXTERNAL_SPLIT,
            metric_type=metric_type,
            metric_name=title,
            metric_value=round(float(results.metrics[key]), 4),
        )
        for name, results in external.items()
        for key, (metric_type, title) in COMPARED_METRICS.items()
        if is_number(results.metrics.get(key))
    ]


def _group_table(groups: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any] | None:
    if not groups:
        return None
    keys = [key for key in GROUP_COLUMNS if any(key in values for values in groups.values())]
    rows = [
        [name]
        + [
            str(values[key])
            if key == "n_samples" and is_number(values.get(key))
            else number_with_interval(values.get(key))
            for key in keys
        ]
        for name, values in groups.items()
    ]
    return {"header": [GROUP_COLUMNS[key] for key in keys], "rows": rows}


def group_tables(evaluation: EvaluationResults | None) -> dict[str, Any]:
    """``per_source`` and ``per_age_group`` tables (``header``, ``rows``) of the internal
    results, each None where the evaluation has none."""
    return {
        "per_source": _group_table(evaluation.per_source if evaluation else None),
        "per_age_group": _group_table(evaluation.per_age_group if evaluation else None),
    }


def _scores(values: Mapping[str, Any] | None, key: str) -> str:
    values = values or {}
    return number_with_interval(
        (values.get("metrics") or {}).get(key), (values.get("confidence_intervals") or {}).get(key)
    )


def probes_context(probes: StudyProbes | None) -> dict[str, Any] | None:
    """The study-probes section of the card, as text cells; None without ``study_probes.json``."""
    if probes is None:
        return None
    lungs = probes.lungs_only or {}
    films = probes.hospital_films
    return {
        "configuration": probes.configuration,
        "title": probes.title,
        "collection_probe": [
            {
                "region": str(row["region"]).replace("_", " "),
                "balanced_accuracy": _scores(row, "balanced_accuracy"),
                "roc_auc": _scores(row, "roc_auc"),
            }
            for row in probes.collection_probe
        ],
        "lungs_only_drop": number_with_interval(
            lungs.get("accuracy_drop"), lungs.get("accuracy_drop_interval")
        )
        if probes.lungs_only
        else None,
        "hospital_films": None
        if films is None
        else {
            "n_films": films.get("n_films"),
            "n_controls": films.get("n_controls"),
            "trained_without_films": bool(films.get("trained_without_films")),
            "covid_sensitivity": _scores(films, "covid_sensitivity"),
            "specificity": _scores(films, "specificity_COVID"),
            "roc_auc": _scores(films, "roc_auc_COVID"),
        },
        "leave_one_source_out": [
            {
                "source": row["source"],
                "n_held_out_covid": row.get("n_held_out_covid"),
                "held_out_sensitivity": _scores(row["held_out_source"], "covid_sensitivity"),
                "held_out_roc_auc": _scores(row["held_out_source"], "roc_auc"),
                "in_distribution_roc_auc": _scores(row.get("in_distribution"), "roc_auc"),
            }
            for row in probes.leave_one_source_out
        ],
    }
