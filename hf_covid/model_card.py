"""Model cards: rendered offline from a checkpoint folder and the Jinja templates of ``model_cards/``.

The card describes the model (its registered family), how to use it with and without hf_covid,
the data it was trained on and that data's known problems (for a composition of the public
collections: the collections, their licences and the class x source x age group x view table,
:mod:`hf_covid.card_data`), the test metrics with their confidence intervals beside those on
every external set it was evaluated on, per-source numbers and the study's probes
(:mod:`hf_covid.card_results`), and its intended and out-of-scope use. The metadata names the
Hub dataset (``datasets:``) and the base model (``base_model``) where there is one, declares the
licence the training images allow (:func:`hf_covid.card_data.card_license`), counts the
parameters as ``num_parameters()`` does, carries ``model-index`` results for a dataset on the
Hub and for each external set, and a widget example (a synthetic phantom X-ray, pushed with the
card). Nothing here calls ``ModelCard.validate`` (a network call). Example::

    from hf_covid.model_card import write_model_card

    write_model_card("outputs/demo/checkpoints/cnn_lstm")  # README.md in the checkpoint
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants
from PIL import Image

from hf_covid.card_data import card_license, training_data_context
from hf_covid.card_results import (
    comparison_table,
    external_eval_results,
    group_tables,
    is_number,
    probes_context,
)
from hf_covid.checkpoint_results import StudyProbes, read_external_evaluations
from hf_covid.checkpoints import (
    CONFIG_FILE,
    FIGURES_DIR,
    MODEL_CARD_FILE,
    PROCESSOR_FILE,
    TRAINER_STATE_FILE,
    DatasetRecord,
    EvaluationResults,
    RunRecord,
    is_hub_id,
    read_json_object,
)
from hf_covid.data.synthetic import PhantomPatient, render_xray
from hf_covid.registry import DATASET_KINDS, ModelFamily, get_model_family

__all__ = [
    "TEMPLATE_DIR",
    "WIDGET_EXAMPLE_FILE",
    "card_template",
    "library_url",
    "num_parameters",
    "render_model_card",
    "widget_example_png",
    "write_model_card",
]

TEMPLATE_DIR = Path(str(importlib.resources.files("hf_covid.model_cards")))
"""Folder of ``model_card_template.md`` and ``dataset_card_template.md``: the repository's
``model_cards/``, installed as the package data ``hf_covid/model_cards/``."""

WIDGET_EXAMPLE_FILE = "examples/synthetic_phantom_xray.png"
"""Where in a model repo the widget's example image lies (uploaded with the card)."""

_WIDGET_EXAMPLE_TITLE = "Synthetic phantom chest X-ray (not a patient)"
_WIDGET_EXAMPLE_SIZE = 256

# (model-index metric type, display name) for the metrics of eval_results.json, in card order.
_CARD_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "Accuracy"),
    "balanced_accuracy": ("balanced_accuracy", "Balanced accuracy"),
    "f1_macro": ("f1", "F1 (macro)"),
    "precision_macro": ("precision", "Precision (macro)"),
    "recall_macro": ("recall", "Recall (macro)"),
    "specificity_macro": ("specificity", "Specificity (macro)"),
    "covid_sensitivity": ("sensitivity", "COVID sensitivity"),
    "covid_ppv": ("ppv", "COVID positive predictive value"),
    "roc_auc": ("roc_auc", "ROC-AUC"),
    "pr_auc": ("pr_auc", "PR-AUC (average precision)"),
    "ece": ("ece", "Expected calibration error (lower is better)"),
    "dice": ("dice", "Dice"),
    "iou": ("iou", "IoU"),
}

_PER_CLASS_METRICS = ("precision", "recall", "specificity", "f1", "roc_auc")

# config.json keys that are not architecture hyperparameters.
_CONFIG_BOOKKEEPING = frozenset(
    (
        "architectures",
        "auto_map",
        "id2label",
        "label2id",
        "model_type",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "custom_pipelines",
    )
)


def _interval(value: Any) -> tuple[float, float] | None:
    """``(low, high)`` from a ``[low, high]`` list; None for anything else (e.g. null)."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(map(is_number, value)):
        return float(value[0]), float(value[1])
    return None


def _size_text(size: Any) -> str | None:
    """``"224x224"`` from a processor ``size`` dict or a config ``image_size``."""
    if isinstance(size, Mapping) and "height" in size and "width" in size:
        return f"{size['height']}x{size['width']}"
    if isinstance(size, Mapping) and "shortest_edge" in size:
        return f"shortest edge {size['shortest_edge']}"
    if isinstance(size, int):
        return f"{size}x{size}"
    return None


def library_url() -> str | None:
    """The project's home page, from the installed package's metadata (``[project.urls]``)."""
    try:
        urls = importlib.metadata.metadata("hf_covid").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return None
    pages = dict(entry.split(", ", 1) for entry in urls if ", " in entry)
    return pages.get("Homepage") or next(iter(pages.values()), None)


def card_template(name: str) -> str:
    """The path of the card template ``name`` in :data:`TEMPLATE_DIR`.

    Raises:
        FileNotFoundError: the template is missing.
    """
    path = TEMPLATE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"card template {path} is missing (expected in {TEMPLATE_DIR})")
    return str(path)


def num_parameters(checkpoint_dir: str | Path) -> int | None:
    """The model's ``num_parameters()``, from its ``config.json`` alone (built on the meta device,
    so no weights are read nor downloaded); None for a model type that is not registered."""
    config = read_json_object(Path(checkpoint_dir) / CONFIG_FILE)
    try:
        family = get_model_family(config.get("model_type", ""))
    except KeyError:
        return None
    with torch.device("meta"):
        model = family.model_class(family.config_class.from_pretrained(checkpoint_dir))
    return model.num_parameters()


def widget_example_png() -> bytes:
    """The widget's example: a PNG of a normal-chest synthetic phantom (deterministic)."""
    rng = np.random.default_rng(0)
    phantom = render_xray(
        PhantomPatient.sample(rng, None),
        height=_WIDGET_EXAMPLE_SIZE,
        width=_WIDGET_EXAMPLE_SIZE,
        rng=rng,
    )
    buffer = io.BytesIO()
    Image.fromarray(phantom.image).save(buffer, format="PNG")
    return buffer.getvalue()


def _widget(repo_id: str | None) -> list[dict[str, str]] | None:
    """The ``widget`` metadata: the example image as the Hub serves it from ``repo_id``."""
    if not is_hub_id(repo_id):
        return None
    url = f"{constants.ENDPOINT}/{repo_id}/resolve/main/{WIDGET_EXAMPLE_FILE}"
    return [{"src": url, "example_title": _WIDGET_EXAMPLE_TITLE}]


def _base_model(run: RunRecord | None, config: Mapping[str, Any]) -> str | None:
    """The Hub model a checkpoint was fine-tuned from: the run's ``pretrained`` weights, or the
    dual-input model's ``backbone_pretrained``; a local folder is no base model."""
    candidates = (run.model.get("pretrained") if run is not None else None,)
    candidates += (config.get("backbone_pretrained"),)
    return next((name for name in candidates if is_hub_id(name)), None)


def _training_rows(
    trainer_state: Mapping[str, Any], training: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """(label, value) lines of the card's training section, from what the run recorded."""
    best = training.get("best_metric")
    rows: list[tuple[str, Any]] = [
        ("Optimizer steps", trainer_state.get("global_step", training.get("global_steps"))),
        ("Epochs", trainer_state.get("epoch", training.get("epochs_trained"))),
        ("Optimizer", training.get("optimizer")),
        ("Learning rate", training.get("learning_rate")),
        ("Class imbalance handling", training.get("imbalance")),
        ("Mixed precision", training.get("mixed_precision")),
        ("Seed", training.get("seed")),
        ("Best epoch", training.get("best_epoch")),
    ]
    if isinstance(best, Mapping) and is_number(best.get("value")):
        rows.append((f"Best validation {best.get('name') or 'metric'}", round(best["value"], 4)))
    log_history = trainer_state.get("log_history") or []
    final_loss = next((entry["loss"] for entry in reversed(log_history) if "loss" in entry), None)
    if is_number(final_loss):
        rows.append(("Final training loss", round(final_loss, 4)))
    if is_number(training.get("train_runtime_s")):
        rows.append(("Training time", f"{training['train_runtime_s']:.0f} s"))
    return [
        (label, f"{value:g}" if isinstance(value, float) else value)
        for label, value in rows
        if value not in (None, "")
    ]


def _card_model(model_type: str) -> dict[str, Any]:
    """What the card says about the model: its registered family, or a generic description."""
    try:
        family: ModelFamily | None = get_model_family(model_type)
    except KeyError:
        family = None
    if family is None:
        return {
            "name": model_type,
            "summary": "A transformers image model.",
            "task": "image-classification",
            "auto_class": "AutoModelForImageClassification",
            "inputs": (),
            "dataset_kind": None,
        }
    return {
        "name": family.display_name,
        "summary": family.card_summary,
        "task": family.pipeline_tag,
        "auto_class": family.auto_class,
        # Images besides `pixel_values`; availability flags are not inputs a user passes.
        "inputs": tuple(
            name
            for name in family.input_names
            if name != "pixel_values" and not name.endswith("_available")
        ),
        "dataset_kind": family.dataset_kind,
    }


def _card_dataset(
    evaluation: EvaluationResults | None, run: RunRecord | None
) -> DatasetRecord | None:
    """The data record a card describes: the evaluated one, else the one the run trained on."""
    if evaluation is not None and evaluation.dataset is not None:
        return evaluation.dataset
    return run.dataset if run is not None else None


def _masks(evaluation: EvaluationResults | None, run: RunRecord | None, inputs) -> str | None:
    """Which lung masks the model's test numbers used: as the evaluation recorded them, else,
    for a model that reads a mask, the U-Net the run made them with."""
    if evaluation is not None and evaluation.masks:
        return evaluation.masks
    mask_model = run.data.get("mask_model") if run is not None else None
    if "lung_mask" in inputs and mask_model:
        return f"made by the lung U-Net {mask_model} (the run's mask_model)"
    return None


def _model_card_context(folder: Path, repo_id: str | None) -> tuple[ModelCardData, dict[str, Any]]:
    config = read_json_object(folder / CONFIG_FILE)
    processor = read_json_object(folder / PROCESSOR_FILE)
    evaluation = EvaluationResults.read(folder)
    run = RunRecord.read(folder)
    external = read_external_evaluations(folder)
    # A card rendered again (after an external evaluation) keeps the Hub repo training named.
    recorded_repo = run.training.get("hub_model_id") if run is not None else None
    repo_id = repo_id or (recorded_repo if is_hub_id(recorded_repo) else None)
    model_type = config.get("model_type", "unknown")
    kind = _card_model(model_type)
    record = _card_dataset(evaluation, run)
    data = training_data_context(record)
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    recorded_kind = record.kind if record and record.kind in DATASET_KINDS else "radiography"
    dataset_kind = kind["dataset_kind"] or recorded_kind
    dataset = DATASET_KINDS[dataset_kind]
    synthetic = bool(record and record.synthetic)
    if synthetic:
        dataset_name = f"Synthetic phantoms in the layout of the {dataset.name}"
    else:
        dataset_name = record.name if data["composition"] else dataset.name
    weights_license = card_license(record.licenses if record and not synthetic else {})
    model_name = repo_id.split("/")[-1] if repo_id else folder.name
    metrics = {
        key: float(value)
        for key, value in (evaluation.metrics if evaluation else {}).items()
        if is_number(value)
    }
    intervals = {
        key: _interval(value)
        for key, value in (evaluation.confidence_intervals if evaluation else {}).items()
        if _interval(value)
    }
    split = evaluation.split if evaluation else "test"
    hub_dataset = record.hub_id if record is not None and is_hub_id(record.hub_id) else None

    # model-index results name their dataset by its Hub id: without one, the metrics are in the
    # card's table and eval_results.json only (no made-up dataset type). An external set is
    # named by the name its evaluation was given.
    metric_rows, eval_results = [], []
    for key, (metric_type, display) in _CARD_METRICS.items():
        if key not in metrics:
            continue
        value = metrics[key]
        metric_rows.append({"name": display, "value": value, "interval": intervals.get(key)})
        if hub_dataset is None:
            continue
        eval_results.append(
            EvalResult(
                task_type=kind["task"],
                dataset_type=hub_dataset,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=display,
                metric_value=round(value, 4),
            )
        )
    eval_results += external_eval_results(external, kind["task"])
    per_class = [
        {
            "label": label,
            "values": [metrics.get(f"{name}_{label}") for name in _PER_CLASS_METRICS],
        }
        for label in labels
        if any(f"{name}_{label}" in metrics for name in _PER_CLASS_METRICS)
    ]
    other_license = weights_license.license == "other"
    card_data = ModelCardData(
        model_name=model_name,
        license=weights_license.license,
        license_name=weights_license.name,
        # The card's own licence section lists the images' licences.
        license_link=f"{constants.ENDPOINT}/{repo_id}#license"
        if other_license and is_hub_id(repo_id)
        else None,
        library_name="transformers",
        pipeline_tag=kind["task"],
        tags=["medical-imaging", "chest-x-ray", "covid-19", "hf_covid", "research-only"]
        + (["ct"] if "ct_pixel_values" in kind["inputs"] else [])
        + (["synthetic-data"] if synthetic else []),
        base_model=_base_model(run, config),
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
        # Every registered family reads an X-ray as `pixel_values`.
        widget=_widget(repo_id) if kind["dataset_kind"] else None,
    )
    hyperparameters = {
        key: value
        for key, value in config.items()
        if key not in _CONFIG_BOOKKEEPING
        and not key.startswith("_")
        and isinstance(value, str | int | float | bool | list)
        and len(json.dumps(value)) <= 80
    }
    context = {
        "title": f"{kind['name']} for COVID-19 chest imaging",
        "repo_id": repo_id or f"<user>/{folder.name}",
        "model_type": model_type,
        "model_kind": kind,
        "architecture": (config.get("architectures") or [model_type])[0],
        "auto_class": kind["auto_class"],
        "remote_code": bool(config.get("auto_map")),
        "processor_remote_code": bool(processor.get("auto_map")),
        "crops_lungs": processor.get("lung_crop_margin") is not None,
        "labels": labels,
        "num_parameters": num_parameters(folder),
        "hyperparameters": hyperparameters,
        "has_processor": bool(processor),
        "input_size": _size_text(processor.get("size") or config.get("image_size")),
        "num_channels": processor.get("num_channels", config.get("num_channels")),
        "dataset": dataset,
        "dataset_kind": dataset_kind,
        "dataset_name": dataset_name,
        "synthetic": synthetic,
        **data,
        "pairing": record.pairing if record else None,
        "pairing_note": record.pairing_note if record else None,
        "split_sizes": record.split_sizes if record else {},
        "near_duplicates": record.near_duplicates if record else None,
        "training_rows": _training_rows(
            read_json_object(folder / TRAINER_STATE_FILE),
            (evaluation.training if evaluation else None) or {},
        ),
        "split": split,
        "n_samples": int(metrics["n_samples"]) if "n_samples" in metrics else None,
        "interval_unit": evaluation.interval_unit if evaluation else None,
        "masks": _masks(evaluation, run, kind["inputs"]),
        "metric_rows": metric_rows,
        "hub_dataset_index": hub_dataset is not None and bool(metric_rows),
        "confidence_percent": round(100 * (evaluation.confidence if evaluation else 0.95)),
        "per_class_names": _PER_CLASS_METRICS,
        "per_class": per_class,
        "confusion_matrix": (evaluation.metrics if evaluation else {}).get("confusion_matrix"),
        **group_tables(evaluation),
        "external_names": list(external),
        "comparison": comparison_table(evaluation, external, f"internal: {split} split"),
        "probes": probes_context(StudyProbes.read(folder)),
        "figures": sorted(
            path.relative_to(folder).as_posix() for path in folder.glob(f"{FIGURES_DIR}/*.png")
        ),
        "weights_license": weights_license,
        "code_license": "Apache-2.0",
        "library_url": library_url(),
    }
    return card_data, context


def render_model_card(checkpoint_dir: str | Path, *, repo_id: str | None = None) -> ModelCard:
    """Render the model card of a checkpoint folder, offline.

    Reads ``config.json``, ``preprocessor_config.json``, ``eval_results.json`` (metrics, confidence
    intervals, split, data and run summaries), ``training_config.json``, ``trainer_state.json``
    and ``figures/*.png``; every file but ``config.json`` may be missing,
    and the card then leaves out what it would have said. ``model-index`` metadata is built from
    the evaluation metrics.

    Args:
        checkpoint_dir: the checkpoint folder.
        repo_id: the Hub repo the card is for (used in the code examples).
    """
    folder = Path(checkpoint_dir)
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(f"cannot write a model card for {folder}: {CONFIG_FILE} is missing")
    card_data, context = _model_card_context(folder, repo_id)
    return ModelCard.from_template(
        card_data, template_path=card_template("model_card_template.md"), **context
    )


def write_model_card(checkpoint_dir: str | Path, *, repo_id: str | None = None) -> Path:
    """Render the model card of a checkpoint and save it as its ``README.md``; returns the path."""
    path = Path(checkpoint_dir) / MODEL_CARD_FILE
    render_model_card(checkpoint_dir, repo_id=repo_id).save(path)
    return path
