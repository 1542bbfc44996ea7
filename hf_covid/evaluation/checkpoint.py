"""Evaluate a checkpoint folder or Hub id on a data split: data, inputs, figures, results.

Also external validation (:func:`evaluate_external`): every image of a Radiography-layout folder
the model was not trained on, which may hold only some of the model's classes (just ``COVID/``
and ``Normal/``, say); classes are matched by folder name and only the metrics that stay
meaningful are reported.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, Image, concatenate_datasets, load_from_disk
from transformers import PreTrainedModel

from hf_covid import plots
from hf_covid.checkpoints import (
    EVAL_RESULTS_FILE,
    FIGURES_DIR,
    TRAINER_STATE_FILE,
    DatasetRecord,
    EvaluationResults,
    RunRecord,
    default_output_dir,
    load_checkpoint,
    resolve_checkpoint,
)
from hf_covid.data import DATASET_BUILDERS, ChestBatchCollator, preprocess_for_training
from hf_covid.data.io import normalize_folder_name
from hf_covid.data.public.compose import compose_radiography, compose_xray_ct, find_collections
from hf_covid.data.radiography import build_radiography_dataset
from hf_covid.data.summary import read_build_summary
from hf_covid.data.xray_ct import PAIRING_DESCRIPTIONS
from hf_covid.registry import ModelFamily, get_dataset_kind, get_model_family

from .metrics import (
    ECE_BINS,
    bootstrap_confidence_intervals,
    calibration_bins,
    classification_metrics,
    one_vs_rest_curves,
)
from .predict import (
    MODALITY_VARIANTS,
    class_names_of,
    group_metrics,
    predict,
    summarize_predictions,
)
from .report import EXTERNAL_METRICS, EXTERNAL_SPLIT, write_report

__all__ = [
    "EXTERNAL_METRICS",
    "EXTERNAL_SPLIT",
    "build_dataset",
    "evaluate_checkpoint",
    "evaluate_external",
    "external_metrics",
    "folder_classes",
    "load_evaluation_split",
    "model_image_size",
    "prepare_inputs",
    "run_build_options",
]


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _select_split(data, split: str, where: str):
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"{where} has no split '{split}'; available: {sorted(data)}")
        return data[split]
    return data


def load_evaluation_split(
    family: ModelFamily,
    class_names: Sequence[str],
    split: str,
    *,
    data_dir: str | Path | None = None,
    dataset=None,
    build_options: Mapping | None = None,
):
    """The raw split (image columns + ``label``) a model of ``family`` is evaluated on.

    ``dataset`` (a ``DatasetDict``, a ``Dataset``, or the folder of one saved with
    ``save_to_disk``) is used as is; otherwise ``data_dir`` is a saved dataset, a collections
    root or a dataset root (:func:`build_dataset`, with ``build_options``, e.g. the split seed
    and ratios used in training).

    Raises:
        ValueError: no data given, no such split, no labels, or classes that differ from the
            model's.
    """
    if dataset is None and data_dir is None:
        raise ValueError("pass data_dir (a dataset folder) or dataset (a built dataset)")
    source = dataset if dataset is not None else Path(data_dir)
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data folder '{path}' does not exist")
        options = dict(build_options or {})
        labels = family.dataset.labels
        if family.dataset.ct_column is None and class_names and set(class_names) < set(labels):
            options.setdefault("classes", list(class_names))
        source = build_dataset(path, family.dataset_kind, options)
    where = f"data '{data_dir}'" if dataset is None else "the dataset"
    data = _select_split(source, split, where)
    if "label" not in data.column_names:
        raise ValueError(
            f"split '{split}' of {where} has no 'label' column (columns: {data.column_names}); "
            "evaluation needs labelled data"
        )
    image_column = family.dataset.image_column
    if image_column not in data.column_names:
        raise ValueError(
            f"split '{split}' of {where} has no '{image_column}' column (columns: "
            f"{data.column_names}); the {family.key} model needs the {family.dataset.name}"
        )
    if family.task == "segmentation":
        mask_column = family.dataset.mask_column
        if mask_column not in data.column_names:
            raise ValueError(
                f"split '{split}' of {where} has no '{mask_column}' column for the "
                f"{family.display_name}"
            )
        masks = data.select_columns([mask_column]).cast_column(mask_column, Image(decode=False))
        data = data.select(
            [index for index, mask in enumerate(masks[mask_column]) if mask is not None]
        )
        if len(data) == 0:
            raise ValueError(f"split '{split}' of {where} has no lung masks to evaluate Dice on")
        return data
    feature = data.features["label"]
    data_classes = list(getattr(feature, "names", None) or [])
    if not data_classes:
        raise ValueError(f"split '{split}' of {where}: 'label' is not a ClassLabel with names")
    if data_classes != list(class_names):
        raise ValueError(
            f"label mismatch: the model predicts {list(class_names)} but split '{split}' of "
            f"{where} has the classes {data_classes}"
        )
    if len(data) == 0:
        raise ValueError(f"split '{split}' of {where} is empty")
    if min(data["label"]) < 0:
        raise ValueError(f"split '{split}' of {where} has unlabelled examples (label -1)")
    return data


def build_dataset(data_dir: str | Path, dataset_kind: str, options: Mapping | None = None):
    """The dataset in ``data_dir``: saved with ``save_to_disk``, a collections root, or a folder.

    A collections root (the public collections side by side, see
    :func:`hf_covid.data.public.compose.find_collections`) is composed into the ``dataset_kind``
    layout; any other folder is built with that layout's builder. Options a builder does not
    take (e.g. ``group_by`` for a composition) are dropped.

    Args:
        data_dir: The folder.
        dataset_kind: ``"radiography"`` or ``"xray_ct"``.
        options: Builder keyword arguments (split ratios, seed, classes, pairing, ...).
    """
    path = Path(data_dir).expanduser()
    if _is_saved_dataset(path):
        return load_from_disk(str(path))
    options = dict(options or {})
    if find_collections(path):
        compose = compose_xray_ct if dataset_kind == "xray_ct" else compose_radiography
        accepted = inspect.signature(compose).parameters
        return compose(path, **{key: value for key, value in options.items() if key in accepted})
    return DATASET_BUILDERS[dataset_kind](path, **options)


def run_build_options(checkpoint_dir: str | Path | None, dataset_kind: str) -> dict:
    """Dataset-builder options that reproduce a checkpoint's training split (its run record);
    {} without one."""
    record = RunRecord.read(checkpoint_dir) if checkpoint_dir is not None else None
    if record is None:
        return {}
    data = record.data
    options = {
        "split_ratios": tuple(data["split_ratios"]) if data.get("split_ratios") else None,
        "seed": data.get("split_seed"),
        "deduplicate": data.get("deduplicate"),
    }
    if dataset_kind == "xray_ct":
        options |= {
            "pairing": data.get("pairing"),
            "keep_unpaired": data.get("keep_unpaired"),
            "metadata_file": data.get("metadata_file"),
        }
    else:
        options |= {"group_by": data.get("group_by"), "classes": data.get("classes")}
    return {key: value for key, value in options.items() if value is not None}


def _build_options(checkpoint_dir: Path, family: ModelFamily) -> dict:
    """:func:`run_build_options` under its old name, which ``hf_covid.explain.visualize``
    imports; switch that import to ``run_build_options`` and delete this."""
    return run_build_options(checkpoint_dir, family.dataset_kind)


def model_image_size(config, processor) -> int:
    """Side of a model's input: its saved processor's, else its config's (224 by default)."""
    if processor is None:
        return int(getattr(config, "image_size", 224))
    size = processor.size
    return int(size["height"] if isinstance(size, Mapping) else size.height)


def prepare_inputs(
    model: PreTrainedModel, processor, raw
) -> tuple[object, ChestBatchCollator, dict]:
    """Preprocess a raw split for ``model`` and build its collator (no augmentation).

    Args:
        model: a loaded model of a registered family (its ``config.model_type`` picks the
            columns and inputs).
        processor: its ``ChestImageProcessor`` (image size, channels, normalisation), or None
            (one grayscale channel in [0, 1] at the config's ``image_size``).
        raw: a split of ``build_radiography_dataset`` / ``build_xray_ct_dataset``.

    Returns:
        ``(prepared dataset, collator, settings)``; the collator yields the model's inputs plus
        ``labels``, settings holds ``image_size`` and ``num_channels``.
    """
    family = get_model_family(model.config.model_type)
    image_size = model_image_size(model.config, processor)
    dataset = family.dataset
    prepared = preprocess_for_training(
        DatasetDict({"evaluation": raw}),
        image_size=image_size,
        image_column=dataset.image_column,
        mask_column=dataset.mask_column if family.uses_mask else None,
        ct_column=dataset.ct_column,
    )["evaluation"]
    collator = ChestBatchCollator(
        None, processor, input_names=family.input_names, label_key=family.target
    )
    settings = {"image_size": image_size, "num_channels": collator.processor.num_channels}
    return prepared, collator, settings


def _subset(predictions: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[keep] for name, values in predictions.items()}


def _evaluated_dataset(
    family: ModelFamily, raw, data_dir: str | Path | None, image_size: int
) -> DatasetRecord:
    """What the results say about the evaluated split (name, folder name, pairing, size)."""
    pairings = []
    if "pairing" in raw.column_names:
        pairings = sorted({value for value in raw["pairing"] if value})
    summary = read_build_summary(raw)
    notes = [PAIRING_DESCRIPTIONS[value] for value in pairings if value in PAIRING_DESCRIPTIONS]
    return DatasetRecord(
        kind=family.dataset_kind,
        name=family.dataset.name,
        source=Path(data_dir).name if data_dir is not None else "dataset object",
        synthetic=bool(summary and summary.synthetic),
        image_size=image_size,
        split_sizes={"evaluated": len(raw)},
        pairing=", ".join(pairings) or None,
        pairing_note="; ".join(notes) or None,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    dataset=None,
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 32,
    *,
    device: str | torch.device | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    build_options: Mapping | None = None,
    figures: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate a checkpoint folder (or Hub id) on a data split and write a report.

    The model is loaded by :func:`hf_covid.checkpoints.load_checkpoint`; its registered family
    picks the dataset builder, columns and inputs, and the saved ``preprocessor_config.json`` the
    image size, channels and normalisation. Unless given in ``build_options``, the split ratios,
    seed and pairing come from the checkpoint's run record (``training_config.json``), so
    ``split="test"`` is the training run's test split.

    Writes to ``output_dir`` (default: ``<checkpoint>/evaluation_<split>`` for a folder, see
    :func:`hf_covid.checkpoints.default_output_dir`): ``eval_results.json``
    (:class:`hf_covid.checkpoints.EvaluationResults`), ``report.md`` and ``figures/*.png``
    (confusion matrix in counts and row-normalised, ROC and precision-recall curves, reliability
    diagram, training curves when the checkpoint has ``trainer_state.json``).

    Args:
        checkpoint: checkpoint folder or Hub repository id.
        data_dir: dataset root, or a dataset saved with ``save_to_disk``.
        dataset: a built ``DatasetDict`` / ``Dataset`` instead of ``data_dir``.
        split: the split to evaluate.
        output_dir: where the results go.
        batch_size: images per forward pass.
        device: where to run (default: CUDA when available).
        n_resamples: bootstrap resamples of the confidence intervals.
        confidence: coverage of the intervals.
        seed: bootstrap seed.
        build_options: keyword arguments of the dataset builder.
        figures: draw the figures.
        progress: show progress bars.

    Returns:
        The contents of ``eval_results.json``: ``metrics``, ``confidence_intervals``,
        ``per_source`` (when the data names sources), ``modalities`` (dual-input model),
        ``dataset`` (with the pairing), ``figures``, and what was evaluated.
    """
    path = resolve_checkpoint(checkpoint)
    model, processor = load_checkpoint(path)
    family = get_model_family(model.config.model_type)
    segmentation = family.task == "segmentation"
    class_names = None if segmentation else class_names_of(model.config)
    run = {"batch_size": batch_size, "device": device, "progress": progress}
    summary = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    if split == EXTERNAL_SPLIT or (
        dataset is None
        and data_dir is not None
        and _is_external_folder(Path(data_dir).expanduser(), family, class_names)
    ):
        if data_dir is None:
            raise ValueError(f"split '{EXTERNAL_SPLIT}' evaluates a data folder: pass data_dir")
        return _evaluate_external(
            model, processor, checkpoint, data_dir, output_dir, run, summary, figures
        )
    raw = load_evaluation_split(
        family,
        class_names or [],
        split,
        data_dir=data_dir,
        dataset=dataset,
        build_options=run_build_options(path, family.dataset_kind) | dict(build_options or {}),
    )
    prepared, collator, settings = prepare_inputs(model, processor, raw)
    predictions = predict(model, prepared, collator, **run)

    output_dir = default_output_dir(checkpoint, f"evaluation_{split}", output_dir)
    results = EvaluationResults(
        model_type=model.config.model_type,
        task=family.pipeline_tag,
        split=split,
        class_names=class_names,
        confidence=confidence,
        n_resamples=n_resamples,
        dataset=_evaluated_dataset(family, raw, data_dir, settings["image_size"]),
        checkpoint=str(checkpoint),
        **summarize_predictions(predictions, class_names, **summary),
    )

    results.per_source = _per_source(raw, predictions, class_names)

    if "ct_available" in family.input_names:
        results.modalities = _modality_results(
            model, prepared, collator, predictions, class_names, run, summary
        )

    if figures:
        results.figures = _draw_figures(path, predictions, class_names, output_dir)
    results.save(output_dir / EVAL_RESULTS_FILE)
    written = results.to_dict()
    write_report(written, output_dir / "report.md")
    return written


def _per_source(raw, predictions: Mapping[str, np.ndarray], class_names) -> dict | None:
    """Short metric set per ``source`` value, or None when the data names no sources."""
    if "source" not in raw.column_names or len(raw) != len(next(iter(predictions.values()))):
        return None
    sources = np.array([str(source or "(unknown)") for source in raw["source"]])
    if set(sources) == {"(unknown)"}:
        return None
    return {
        source: group_metrics(_subset(predictions, sources == source), class_names)
        for source in sorted(set(sources))
    }


def _modality_results(model, prepared, collator, predictions, class_names, run, summary) -> dict:
    """Metrics of the dual-input model with both inputs, the X-ray only and the CT only."""
    available = {
        name: np.array([bool(flag) for flag in prepared[name]])
        for name in ("xray_available", "ct_available")
    }
    modalities = {}
    for variant, switched_off in MODALITY_VARIANTS.items():
        kept = [name for name in available if name not in switched_off]
        rows = np.flatnonzero(np.any([available[name] for name in kept], axis=0))
        if rows.size == 0:
            continue
        variant_predictions = (
            predictions
            if not switched_off
            else predict(model, prepared.select(rows), collator, switch_off=switched_off, **run)
        )
        variant_summary = summarize_predictions(variant_predictions, class_names, **summary)
        used = variant_predictions.get("modalities_used")
        modalities[variant] = {
            "metrics": group_metrics(variant_predictions, class_names),
            "confidence_intervals": variant_summary["confidence_intervals"],
            "inputs_used": None
            if used is None
            else {"xray": float(used[:, 0].mean()), "ct": float(used[:, 1].mean())},
        }
    return modalities


def _draw_figures(
    checkpoint_dir: Path | None,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str] | None,
    output_dir: Path,
) -> dict[str, str]:
    """Write the evaluation figures (training curves from ``checkpoint_dir`` unless None);
    returns name -> path relative to ``output_dir``."""
    folder = output_dir / FIGURES_DIR
    drawn: dict[str, Path] = {}
    if "probabilities" in predictions:
        labels, probabilities = predictions["labels"], predictions["probabilities"]
        matrix = classification_metrics(labels, probabilities, class_names)["confusion_matrix"]
        curves = one_vs_rest_curves(labels, probabilities, class_names)
        drawn["confusion_matrix"] = plots.plot_confusion_matrix(
            matrix, class_names, folder / "confusion_matrix.png"
        )
        drawn["confusion_matrix_normalized"] = plots.plot_confusion_matrix(
            matrix, class_names, folder / "confusion_matrix_normalized.png", normalize=True
        )
        # A curve needs positives and negatives: none is defined on a one-class folder.
        if curves["roc"]:
            drawn["roc_curves"] = plots.plot_roc_curves(curves["roc"], folder / "roc_curves.png")
        if curves["precision_recall"]:
            drawn["precision_recall_curves"] = plots.plot_precision_recall_curves(
                curves["precision_recall"], folder / "precision_recall_curves.png"
            )
        drawn["reliability_diagram"] = plots.plot_reliability_diagram(
            calibration_bins(labels, probabilities, ECE_BINS),
            folder / "reliability_diagram.png",
        )
    trainer_state = None if checkpoint_dir is None else checkpoint_dir / TRAINER_STATE_FILE
    if trainer_state is not None and trainer_state.is_file():
        state = plots.load_trainer_state(trainer_state)
        if state.get("log_history"):
            drawn["training_curves"] = plots.plot_training_curves(
                state, folder / "training_curves.png"
            )
    return {name: path.relative_to(output_dir).as_posix() for name, path in drawn.items()}


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


def _is_external_folder(path: Path, family: ModelFamily, class_names: Sequence[str] | None) -> bool:
    """Whether ``path`` is a Radiography-layout folder with only some of the model's classes."""
    if family.dataset_kind != "radiography" or not class_names or _is_saved_dataset(path):
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

    Returns:
        ``{"metrics": {...}, "confidence_intervals": {metric: [low, high] or None}}`` with
        ``n_samples`` and the full ``confusion_matrix`` (rows of missing classes are zeros).
    """
    labels = np.asarray(labels)
    full = classification_metrics(labels, probabilities, class_names, positive_class)
    present = [name for index, name in enumerate(class_names) if np.any(labels == index)]
    has_positive = positive_class in present
    has_negative = any(name != positive_class for name in present)
    defined = {
        "accuracy": True,
        "balanced_accuracy": True,
        "covid_sensitivity": has_positive,
        f"specificity_{positive_class}": has_negative and positive_class in class_names,
        f"roc_auc_{positive_class}": has_positive and has_negative,
    }
    names = [name.replace("COVID", positive_class) for name in EXTERNAL_METRICS]
    names = [name for name in names if defined[name] and full.get(name) is not None]
    intervals = bootstrap_confidence_intervals(
        labels, probabilities, class_names, names, n_resamples, confidence, seed, positive_class
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


def evaluate_external(
    checkpoint: str | Path,
    data_dir: str | Path,
    output_dir: str | Path | None = None,
    batch_size: int = 32,
    *,
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
    reported. Nothing is written into ``data_dir``: the results go to ``output_dir`` (default
    ``<checkpoint>/evaluation_external``), the scan caches to the datasets cache.
    :func:`evaluate_checkpoint` calls this for ``split="external"`` and for a folder that holds
    only some of the model's classes.

    Args:
        checkpoint: checkpoint folder or Hub repository id of a Radiography classifier.
        data_dir: the folder (``<class>/images/*.png`` or ``<class>/*.png``).
        output_dir, batch_size, device, n_resamples, confidence, seed, figures, progress: as in
            :func:`evaluate_checkpoint`.

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
    return _evaluate_external(
        model, processor, checkpoint, data_dir, output_dir, run, summary, figures
    )


def _evaluate_external(
    model: PreTrainedModel,
    processor,
    checkpoint: str | Path,
    data_dir: str | Path,
    output_dir: str | Path | None,
    run: Mapping,
    summary: Mapping,
    figures: bool,
) -> dict:
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
    output_dir = default_output_dir(checkpoint, f"evaluation_{EXTERNAL_SPLIT}", output_dir)
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
            name=f"external folder in the {family.dataset.name} layout",
            source=root.name,
            image_size=settings["image_size"],
            split_sizes={EXTERNAL_SPLIT: len(raw)},
            class_counts={EXTERNAL_SPLIT: dict(zip(class_names, counts, strict=True))},
        ),
        checkpoint=str(checkpoint),
        **external_metrics(
            predictions["labels"], predictions["probabilities"], class_names, **summary
        ),
    )
    if figures:
        results.figures = _draw_figures(None, predictions, class_names, output_dir)
    results.save(output_dir / EVAL_RESULTS_FILE)
    written = results.to_dict()
    write_report(written, output_dir / "report.md")
    return written
