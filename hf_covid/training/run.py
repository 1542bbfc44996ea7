"""Train, evaluate on the test split and write the checkpoint folder (the command line is
:mod:`.command`).

The output folder is a complete, Hub-ready checkpoint (:mod:`hf_covid.checkpoints`): weights
(safetensors), ``config.json`` with ``auto_map`` and the remote-code files, the image processor,
``eval_results.json`` on the held-out test split, ``training_config.json``,
``trainer_state.json``, figures and a model card. The Trainer's intermediate ``checkpoint-*``
folders live under ``<output_dir>/checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from hf_covid import hub, plots
from hf_covid.checkpoints import (
    CHECKPOINTS_SUBDIR,
    EVAL_RESULTS_FILE,
    FIGURES_DIR,
    RUN_RECORD_FILE,
    TRAINER_STATE_FILE,
    EvaluationResults,
    RunRecord,
    portable,
    save_model_and_processor,
)
from hf_covid.evaluation.inputs import CHECKPOINT_UNET, DATASET_MASKS, unet_masks
from hf_covid.evaluation.metrics import segmentation_metrics
from hf_covid.evaluation.predict import metrics_per_column, patient_groups, summarize_predictions
from hf_covid.lung_masks import LungSegmenter
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.registry import ModelFamily, get_model_family

from .arguments import (
    ChestTrainingArguments,
    DataArguments,
    ModelArguments,
    checked_recipe,
    parse_arguments,
)
from .data import TrainingData
from .trainer import ChestTrainer, build_trainer, remove_stale_checkpoints, resolve_resume

__all__ = ["format_summary", "train", "train_from_recipe", "write_checkpoint_folder"]

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
"""Coverage of the bootstrap intervals written into ``eval_results.json``."""


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
) -> dict[str, Any]:
    """Train a model, evaluate it on the test split and write the checkpoint folder.

    Args:
        model_args: which model to build.
        data_args: where the data is and how to preprocess it.
        training_args: Trainer options; ``output_dir`` is the final checkpoint folder.

    Returns:
        The contents of ``eval_results.json`` (:class:`hf_covid.checkpoints.EvaluationResults`):
        ``metrics`` (test split), ``confidence_intervals`` (95% bootstrap, headline metrics),
        ``dataset``, ``training`` (best epoch, runtime, ...).

    Raises:
        ConfigurationError: bad recipe, options or data, before any training starts.
    """
    family = get_model_family(model_args.model_type)
    output_dir = Path(training_args.output_dir or "")
    checkpoints_dir = output_dir / CHECKPOINTS_SUBDIR
    resume = resolve_resume(training_args.resume_from_checkpoint, checkpoints_dir)
    trainer, data, processor = build_trainer(model_args, data_args, training_args)
    if resume is None and trainer.is_world_process_zero():
        remove_stale_checkpoints(checkpoints_dir)
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started

    test = trainer.predict(data.splits["test"], metric_key_prefix="test")
    if family.task == "segmentation":
        predictions = segmentation_metrics(test.predictions, test.label_ids, per_image=True)
    else:
        predictions = {"labels": test.label_ids, "probabilities": test.predictions}
    test_rows = data.splits["test"].with_format(None)
    groups = patient_groups(test_rows)
    summary = summarize_predictions(
        predictions, list(data.class_names), confidence=CONFIDENCE, groups=groups
    )
    results = EvaluationResults(
        model_type=trainer.model.config.model_type,
        task=family.pipeline_tag,
        split="test",
        class_names=list(data.class_names),
        metrics=summary["metrics"] | {"loss": test.metrics.get("test_loss")},
        confidence_intervals=summary["confidence_intervals"],
        confidence=CONFIDENCE,
        interval_unit="image" if groups is None else "patient",
        dataset=data.record,
        masks=_test_masks(family, processor, data),
        training={
            **_training_summary(trainer, training_args, train_output, train_seconds),
            "resumed_from_checkpoint": resume,
        },
    )
    if family.task != "segmentation":
        results.per_source = metrics_per_column(test_rows, "source", predictions, data.class_names)
        results.per_age_group = metrics_per_column(
            test_rows, "age_group", predictions, data.class_names
        )
    if trainer.is_world_process_zero():
        write_checkpoint_folder(
            trainer,
            processor,
            results,
            model_args,
            data_args,
            training_args,
            lung_segmenter=data.segmenter,
        )
    trainer.accelerator.wait_for_everyone()
    return results.to_dict()


def _test_masks(
    family: ModelFamily, processor: ChestImageProcessor, data: TrainingData
) -> str | None:
    """Where the test split's lung masks came from, for a model that reads one or a processor
    that crops to the lungs (as an evaluation of the checkpoint would say it); else None."""
    if family.task == "segmentation" or not (family.uses_mask or processor.crops_lungs):
        return None
    return DATASET_MASKS if data.segmenter is None else unet_masks(CHECKPOINT_UNET)


def _training_summary(trainer, args, train_output, seconds: float) -> dict[str, Any]:
    state = trainer.state
    best_epoch = None
    if state.best_global_step:
        best_epoch = next(
            (
                entry.get("epoch")
                for entry in state.log_history
                if entry.get("step") == state.best_global_step and "epoch" in entry
            ),
            None,
        )
    return {
        "best_metric": {"name": trainer.args.metric_for_best_model, "value": state.best_metric},
        "best_epoch": best_epoch,
        "epochs_trained": state.epoch,
        "global_steps": state.global_step,
        "train_runtime_s": round(seconds, 2),
        "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "optimizer": args.optimizer or getattr(args.optim, "value", args.optim),
        "learning_rate": args.learning_rate,
        "imbalance": args.imbalance,
        "seed": args.seed,
        "world_size": args.world_size,
        "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
    }


def _run_record(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
    results: EvaluationResults,
) -> RunRecord:
    """The run record: ``TrainingArguments.to_dict`` masks tokens; local paths are stripped."""
    return RunRecord(
        model=dataclasses.asdict(model_args),
        data=dataclasses.asdict(data_args),
        training=training_args.to_dict(),
        dataset=results.dataset,
    )


def write_checkpoint_folder(
    trainer: ChestTrainer,
    processor: ChestImageProcessor,
    results: EvaluationResults,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
    *,
    lung_segmenter: LungSegmenter | None = None,
) -> Path:
    """Write the final checkpoint folder (main process only) and push it when asked.

    The ``mask_model`` U-Net the run's masks came from (``lung_segmenter``) is saved with it
    (`hf_covid.checkpoints.LUNG_SEGMENTER_FOLDER`), so that evaluation and serving make the same
    masks.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    if training_args.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    save_model_and_processor(
        model,
        processor,
        output_dir,
        lung_segmenter=None
        if lung_segmenter is None
        else (lung_segmenter.model, lung_segmenter.image_processor),
    )
    state = portable(dataclasses.asdict(trainer.state))
    (output_dir / TRAINER_STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    _run_record(model_args, data_args, training_args, results).save(output_dir / RUN_RECORD_FILE)

    figures = output_dir / FIGURES_DIR
    curve_keys = {"loss", "eval_loss"} | {f"eval_{name}" for name in plots.CURVE_METRICS}
    history = [
        {
            key: value
            for key, value in entry.items()
            if key in curve_keys or key in ("epoch", "step")
        }
        for entry in trainer.state.log_history
    ]
    plots.plot_training_curves({"log_history": history}, figures / "training_curves.png")
    if "confusion_matrix" in results.metrics:
        plots.plot_confusion_matrix(
            results.metrics["confusion_matrix"],
            results.class_names,
            figures / "confusion_matrix.png",
        )
    results.save(output_dir / EVAL_RESULTS_FILE)
    hub.write_model_card(output_dir, repo_id=training_args.hub_model_id)
    if training_args.push_to_hub:
        results.hub_commit_url = hub.push_checkpoint(
            output_dir,
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            token=training_args.hub_token,
        )
        results.save(output_dir / EVAL_RESULTS_FILE)
    return output_dir


def format_summary(results: dict[str, Any], output_dir: str | Path) -> str:
    """A one-screen summary of a finished run (``results`` as :func:`train` returns them)."""
    metrics = results["metrics"]
    training = results["training"]
    headline = (
        ("dice", "iou", "loss")
        if "dice" in metrics
        else ("accuracy", "balanced_accuracy", "f1_macro", "covid_sensitivity", "roc_auc", "loss")
    )
    best = training["best_metric"]
    best_value = "n/a" if best["value"] is None else f"{best['value']:.4f}"
    best_epoch = "n/a" if training["best_epoch"] is None else f"{training['best_epoch']:g}"
    dataset = results["dataset"]
    data_name = ("synthetic phantoms, " if dataset.get("synthetic") else "") + dataset["name"]
    lines = [
        "=" * 72,
        f"{results['model_type']} trained on {data_name}",
        f"  data: {dataset['source']}  splits: {dataset['split_sizes']}",
    ]
    if dataset.get("pairing"):
        lines.append(f"  pairing: {dataset['pairing']}. {dataset.get('pairing_note') or ''}")
    lines += [
        f"  epochs: {training['epochs_trained']:g}  best epoch: {best_epoch} "
        f"(validation {best['name']} {best_value})  time: {training['train_runtime_s']:.1f} s",
        "  test metrics: "
        + ", ".join(
            f"{name} {metrics[name]:.4f}" for name in headline if metrics.get(name) is not None
        ),
    ]
    if "f1_macro" in metrics:
        lines.append(
            "  per-class F1: "
            + ", ".join(f"{name} {metrics[f'f1_{name}']:.3f}" for name in results["class_names"])
        )
    output_dir = Path(output_dir)
    lines += [
        f"  checkpoint: {output_dir}  (model card README.md, {EVAL_RESULTS_FILE})",
        f"  figures: {output_dir / FIGURES_DIR}",
    ]
    if results.get("hub_commit_url"):
        lines.append(f"  pushed: {results['hub_commit_url']}")
    lines.append("=" * 72)
    return "\n".join(lines)


def train_from_recipe(
    recipe: str | Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train from a recipe with some values replaced (e.g. ``data_dir``, ``output_dir``).

    Args:
        recipe: a packaged recipe's name (``cnn_lstm_synthetic``) or a YAML file's path.
        overrides: argument names and values that replace the recipe's.

    Returns:
        What :func:`train` returns.
    """
    values = checked_recipe(recipe)
    values.update(overrides or {})
    return train(*parse_arguments([], recipe=values))
