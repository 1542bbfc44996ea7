"""Evaluate a checkpoint folder or Hub id on a data split: predictions, metrics with intervals,
per-source and per-input results, figures and the report.

The split comes from :mod:`.inputs`; a folder holding only some of a classifier's classes goes to
the external validation (:mod:`.external`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hf_covid.checkpoints import (
    EVAL_RESULTS_FILE,
    DatasetRecord,
    EvaluationResults,
    default_output_dir,
    load_checkpoint,
    resolve_checkpoint,
)
from hf_covid.data.summary import read_build_summary
from hf_covid.data.xray_ct import PAIRING_DESCRIPTIONS
from hf_covid.registry import ModelFamily, get_model_family

from .anchors import published_anchor
from .external import evaluate_external_model, is_external_folder
from .figures import draw_evaluation_figures
from .inputs import load_evaluation_split, prepare_inputs, run_build_options
from .predict import (
    MODALITY_VARIANTS,
    class_names_of,
    group_metrics,
    metrics_per_column,
    patient_groups,
    predict,
    summarize_predictions,
)
from .report import EXTERNAL_SPLIT, write_report

__all__ = ["evaluate_checkpoint"]


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
    mask_source: str = "auto",
    mask_model: str | None = None,
    dataset_name: str | None = None,
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
    diagram, training curves when the checkpoint has ``trainer_state.json``). Where the data
    names each image's patient, the intervals resample patients, not images
    (``interval_unit``).

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
        mask_source: where the lung masks of a mask-reading or lung-cropping model come from
            (:func:`hf_covid.evaluation.inputs.prepare_inputs`: ``"auto"``, ``"unet"``,
            ``"dataset"``); the results' ``masks`` says which were used.
        mask_model: a lung U-Net checkpoint for those masks instead of the checkpoint's own.
        dataset_name: the name of an external data set (external validation only): the results
            of a local checkpoint are stored with it and added to its model card
            (:func:`hf_covid.evaluation.external.evaluate_external`).

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
        and is_external_folder(Path(data_dir).expanduser(), family, class_names)
    ):
        if data_dir is None:
            raise ValueError(f"split '{EXTERNAL_SPLIT}' evaluates a data folder: pass data_dir")
        return evaluate_external_model(
            model, processor, checkpoint, data_dir, output_dir, run, summary, figures, dataset_name
        )
    if dataset_name is not None:
        raise ValueError(
            f"dataset_name names an external data set, but this is an evaluation of the "
            f"'{split}' split of the run's data ({data_dir or 'the dataset given'} holds all "
            f"of the model's classes); pass split='{EXTERNAL_SPLIT}' (--split {EXTERNAL_SPLIT}) "
            "to evaluate every image of the folder as an external set"
        )
    raw = load_evaluation_split(
        family,
        class_names or [],
        split,
        data_dir=data_dir,
        dataset=dataset,
        build_options=run_build_options(path, family.dataset_kind) | dict(build_options or {}),
    )
    prepared, collator, settings = prepare_inputs(
        model, processor, raw, mask_source=mask_source, mask_model=mask_model
    )
    predictions = predict(model, prepared, collator, **run)
    groups = patient_groups(raw)

    output_dir = default_output_dir(checkpoint, f"evaluation_{split}", output_dir)
    results = EvaluationResults(
        model_type=model.config.model_type,
        task=family.pipeline_tag,
        split=split,
        class_names=class_names,
        confidence=confidence,
        n_resamples=n_resamples,
        interval_unit="image" if groups is None else "patient",
        dataset=_evaluated_dataset(family, raw, data_dir, settings["image_size"]),
        checkpoint=str(checkpoint),
        masks=settings["masks"],
        published=published_anchor(
            family.dataset_kind, family.task, getattr(read_build_summary(raw), "kind", None)
        ),
        **summarize_predictions(predictions, class_names, groups=groups, **summary),
    )

    results.per_source = metrics_per_column(raw, "source", predictions, class_names)
    results.per_age_group = metrics_per_column(raw, "age_group", predictions, class_names)

    if "ct_available" in family.input_names:
        results.modalities = _modality_results(
            model, prepared, collator, predictions, class_names, run, summary
        )

    if figures:
        results.figures = draw_evaluation_figures(path, predictions, class_names, output_dir)
    results.save(output_dir / EVAL_RESULTS_FILE)
    written = results.to_dict()
    write_report(written, output_dir / "report.md")
    return written


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
