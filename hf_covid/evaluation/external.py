"""External validation: a classifier on every image of a Radiography-layout folder it was not
trained on, which may hold only some of the model's classes (just ``COVID/`` and ``Normal/``,
say); classes are matched by folder name and only the metrics that stay meaningful are reported.

Named (``dataset_name``), the results of a local checkpoint folder are stored with it, in
``<checkpoint>/evaluation_external_<slug of the name>/`` (replacing an earlier evaluation under
that name), and its model card is rendered again with them: a ``model-index`` entry for the data
set and its numbers beside the internal ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets
from transformers import PreTrainedModel

from hf_covid.checkpoint_results import external_evaluation_folder, weights_sha256
from hf_covid.checkpoints import (
    EVAL_RESULTS_FILE,
    EXTERNAL_SPLIT,
    DatasetRecord,
    EvaluationResults,
    default_output_dir,
    load_checkpoint,
    resolve_checkpoint,
)
from hf_covid.data.builders import is_saved_dataset
from hf_covid.data.io import normalize_folder_name
from hf_covid.data.radiography import build_radiography_dataset
from hf_covid.model_card import write_model_card
from hf_covid.registry import ModelFamily, get_dataset_kind, get_model_family

from .figures import draw_evaluation_figures
from .inputs import prepare_inputs
from .metrics import bootstrap_confidence_intervals, classification_metrics, undefined_metrics
from .predict import class_names_of, predict
from .report import EXTERNAL_METRICS, write_report

__all__ = [
    "card_checkpoint",
    "evaluate_external",
    "evaluate_external_model",
    "external_metrics",
    "external_output_dir",
    "folder_classes",
    "is_external_folder",
]


def folder_classes(data_dir: str | Path, class_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Which of a model's classes a Radiography-layout folder holds, matched by folder name.

    Names are compared case- and punctuation-insensitively (``viral_pneumonia`` is
    ``Viral Pneumonia``).

    Returns:
        ``(present, ignored)``: the model's classes that have a folder, in the model's order,
        and the names of the other sub-folders.

    Raises:
        FileNotFoundError: ``data_dir`` is not a folder.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder '{root}' does not exist")
    folders = {normalize_folder_name(p.name): p.name for p in root.iterdir() if p.is_dir()}
    present = [name for name in class_names if normalize_folder_name(name) in folders]
    matched = {normalize_folder_name(name) for name in present}
    ignored = sorted(name for key, name in folders.items() if key not in matched)
    return present, ignored


def is_external_folder(path: Path, family: ModelFamily, class_names: Sequence[str] | None) -> bool:
    """Whether ``path`` is a Radiography-layout folder with only some of the model's classes."""
    if family.dataset_kind != "radiography" or not class_names or is_saved_dataset(path):
        return False
    if not path.is_dir():
        return False
    present, _ = folder_classes(path, class_names)
    return 0 < len(present) < len(class_names)


def external_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    positive_class: str = "COVID",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence | None = None,
) -> dict:
    """The metrics that stay meaningful on data holding only some of the model's classes.

    Of :data:`EXTERNAL_METRICS`, those the classes present define (see there), the sensitivity
    (``recall_<class>``) of every class present, and ``missing_class_predictions``: the fraction
    of images predicted as a class absent from the data. Macro averages over all classes, PPV
    and PR-AUC are left out: they depend on the missing classes or on the data's prevalence.

    Args:
        labels: (n,) class ids into ``class_names`` (the model's classes).
        probabilities: (n, K) the model's probabilities over all its classes.
        class_names: the model's classes, in id order.
        positive_class: the class whose sensitivity, specificity and ROC-AUC are reported.
        n_resamples, confidence, seed: of the stratified bootstrap intervals.
        groups: each image's patient (None where unknown): the bootstrap resamples patients.

    Returns:
        ``{"metrics": {...}, "confidence_intervals": {metric: [low, high] or None}}`` with
        ``n_samples`` and the full ``confusion_matrix`` (rows of missing classes are zeros).
    """
    labels = np.asarray(labels)
    full = classification_metrics(labels, probabilities, class_names, positive_class)
    present = [name for index, name in enumerate(class_names) if np.any(labels == index)]
    undefined = undefined_metrics(labels, probabilities, class_names, positive_class)
    names = [name.replace("COVID", positive_class) for name in EXTERNAL_METRICS]
    names = [name for name in names if name not in undefined and full.get(name) is not None]
    intervals = bootstrap_confidence_intervals(
        labels,
        probabilities,
        class_names,
        names,
        n_resamples,
        confidence,
        seed,
        positive_class,
        groups=groups,
    )
    matrix = np.asarray(full["confusion_matrix"])
    missing = [index for index, name in enumerate(class_names) if name not in present]
    metrics = {name: full[name] for name in names}
    metrics |= {f"recall_{name}": full[f"recall_{name}"] for name in present}
    metrics["missing_class_predictions"] = float(matrix[:, missing].sum() / matrix.sum())
    metrics["confusion_matrix"] = full["confusion_matrix"]
    metrics["n_samples"] = full["n_samples"]
    return {
        "metrics": metrics,
        "confidence_intervals": {k: list(v) if v else None for k, v in intervals.items()},
    }


def external_output_dir(
    checkpoint: str | Path, dataset_name: str | None, output_dir: str | Path | None = None
) -> Path:
    """Where an external evaluation's results go: ``output_dir`` if given, else
    ``<checkpoint>/evaluation_external_<slug of dataset_name>`` (``evaluation_external`` without
    a name) for a local checkpoint, and ``./evaluation_external_<slug>_<repository name>`` for a
    Hub id (see :func:`hf_covid.checkpoints.default_output_dir`)."""
    folder = (
        f"evaluation_{EXTERNAL_SPLIT}"
        if dataset_name is None
        else external_evaluation_folder(dataset_name)
    )
    return default_output_dir(checkpoint, folder, output_dir)


def card_checkpoint(
    checkpoint: str | Path, dataset_name: str | None, output_dir: str | Path | None = None
) -> Path | None:
    """The local checkpoint folder whose model card lists this external evaluation, or None.

    Only a named evaluation stored with a local checkpoint folder (``output_dir`` left out, or
    the folder it defaults to) goes on the card: the card reads the results there
    (:func:`hf_covid.checkpoint_results.read_external_evaluations`). A Hub id's download in the
    Hub cache is never written to.
    """
    folder = Path(checkpoint).expanduser()
    if dataset_name is None or not folder.is_dir():
        return None
    stored = (folder / external_evaluation_folder(dataset_name)).resolve()
    chosen = external_output_dir(checkpoint, dataset_name, output_dir).expanduser().resolve()
    return folder if chosen == stored else None


def evaluate_external(
    checkpoint: str | Path,
    data_dir: str | Path,
    output_dir: str | Path | None = None,
    batch_size: int = 32,
    *,
    dataset_name: str | None = None,
    device: str | torch.device | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    figures: bool = True,
    progress: bool = True,
) -> dict:
    """External validation: a classifier on every image of a Radiography-layout folder.

    The folder may hold only some of the model's classes (e.g. ``COVID/`` and ``Normal/``);
    they are matched to the model's by folder name (:func:`folder_classes`), the missing ones
    are named in the report (their ``class_counts`` are 0), and :func:`external_metrics` are
    reported. Nothing is written into ``data_dir``: the results go to ``output_dir`` (default:
    :func:`external_output_dir`), the scan caches to the datasets cache. A named evaluation
    stored with a local checkpoint (:func:`card_checkpoint`) replaces any earlier one under that
    name and re-renders the checkpoint's model card with it.
    :func:`evaluate_checkpoint` calls this for ``split="external"`` and for a folder that holds
    only some of the model's classes.

    Args:
        checkpoint: checkpoint folder or Hub repository id of a Radiography classifier.
        data_dir: the folder (``<class>/images/*.png`` or ``<class>/*.png``).
        output_dir, batch_size, device, n_resamples, confidence, seed, figures, progress: as in
            :func:`evaluate_checkpoint`.
        dataset_name: the external data set's name (a site, a hospital export): recorded as the
            results' ``dataset.name``, and the data set's type and name in the card's
            ``model-index``.

    Returns:
        The contents of ``eval_results.json`` (split ``"external"``).

    Raises:
        ValueError: the model is not a Radiography classifier, the folder holds none of its
            classes, or ``output_dir`` lies inside ``data_dir``.
    """
    path = resolve_checkpoint(checkpoint)
    model, processor = load_checkpoint(path)
    run = {"batch_size": batch_size, "device": device, "progress": progress}
    summary = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    return evaluate_external_model(
        model, processor, checkpoint, data_dir, output_dir, run, summary, figures, dataset_name
    )


def evaluate_external_model(
    model: PreTrainedModel,
    processor,
    checkpoint: str | Path,
    data_dir: str | Path,
    output_dir: str | Path | None,
    run: Mapping,
    summary: Mapping,
    figures: bool,
    dataset_name: str | None = None,
) -> dict:
    """:func:`evaluate_external` with the model already loaded (``evaluate_checkpoint`` calls it).

    Args:
        model, processor: the loaded classifier and its processor (or None).
        checkpoint: what the results name as the checkpoint (folder or Hub id).
        data_dir, output_dir, figures, dataset_name: as in :func:`evaluate_external`.
        run: keyword arguments of :func:`~hf_covid.evaluation.predict.predict` (``batch_size``,
            ``device``, ``progress``).
        summary: ``n_resamples``, ``confidence`` and ``seed`` of the bootstrap intervals.
    """
    family = get_model_family(model.config.model_type)
    if family.dataset_kind != "radiography" or family.task != "classification":
        raise ValueError(
            f"external validation takes a classifier of the {get_dataset_kind('radiography').name} "
            f"layout; the {family.display_name} ({family.key}) is not one"
        )
    class_names = class_names_of(model.config)
    root = Path(data_dir).expanduser().resolve()
    present, ignored = folder_classes(root, class_names)
    if not present:
        raise ValueError(
            f"'{root}' holds none of the model's classes {class_names} as sub-folders "
            f"(found {ignored})"
        )
    card_folder = card_checkpoint(checkpoint, dataset_name, output_dir)
    output_dir = external_output_dir(checkpoint, dataset_name, output_dir)
    if output_dir.expanduser().resolve().is_relative_to(root):
        raise ValueError(
            f"output_dir '{output_dir}' lies inside the data folder '{root}'; evaluation never "
            "writes into the data: choose another output_dir"
        )
    built = build_radiography_dataset(
        root, classes=present, split_ratios=(1.0, 0.0, 0.0), deduplicate=False
    )
    raw = concatenate_datasets([built[name] for name in built if len(built[name])])
    to_model_id = np.array([class_names.index(name) for name in raw.features["label"].names])
    prepared, collator, settings = prepare_inputs(model, processor, raw)
    predictions = predict(model, prepared, collator, **run)
    predictions["labels"] = to_model_id[predictions["labels"]]
    counts = np.bincount(predictions["labels"], minlength=len(class_names)).tolist()
    results = EvaluationResults(
        model_type=model.config.model_type,
        task=family.pipeline_tag,
        split=EXTERNAL_SPLIT,
        class_names=class_names,
        confidence=summary["confidence"],
        n_resamples=summary["n_resamples"],
        dataset=DatasetRecord(
            kind=family.dataset_kind,
            name=dataset_name or f"external folder in the {family.dataset.name} layout",
            source=root.name,
            image_size=settings["image_size"],
            split_sizes={EXTERNAL_SPLIT: len(raw)},
            class_counts={EXTERNAL_SPLIT: dict(zip(class_names, counts, strict=True))},
        ),
        checkpoint=str(checkpoint),
        masks=settings["masks"],
        **external_metrics(
            predictions["labels"], predictions["probabilities"], class_names, **summary
        ),
    )
    if card_folder is not None:
        results.weights_sha256 = weights_sha256(card_folder)
        if output_dir.is_dir():
            shutil.rmtree(output_dir)  # the earlier evaluation under this name, figures included
    if figures:
        results.figures = draw_evaluation_figures(None, predictions, class_names, output_dir)
    results.save(output_dir / EVAL_RESULTS_FILE)
    written = results.to_dict()
    write_report(written, output_dir / "report.md")
    if card_folder is not None:
        write_model_card(card_folder)
    return written
