"""The Trainer of every model: validation metrics, class imbalance, resumption, ``build_trainer``."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    EarlyStoppingCallback,
    EvalPrediction,
    Trainer,
    set_seed,
)

from hf_covid.checkpoints import CHECKPOINTS_SUBDIR, TRAINER_STATE_FILE
from hf_covid.evaluation.metrics import (
    classification_metrics,
    load_classification_metric,
    segmentation_metrics,
)
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.registry import ModelFamily, get_model_family

from .arguments import ChestTrainingArguments, ConfigurationError, DataArguments, ModelArguments
from .data import (
    TrainingData,
    build_collators,
    build_image_processor,
    build_model,
    expected_classes,
    load_training_data,
)

__all__ = [
    "BalancedClassSampler",
    "ChestTrainer",
    "build_trainer",
    "class_weights_from_labels",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "make_compute_metrics",
    "metric_names",
    "optimizer_class_and_kwargs",
    "resolve_resume",
    "sampling_groups",
    "remove_stale_checkpoints",
]

logger = logging.getLogger(__name__)


def _logits(outputs) -> torch.Tensor:
    """Logits from what the Trainer gathered (a tuple when the output has extra fields)."""
    return outputs[0] if isinstance(outputs, tuple | list) else outputs


def _probabilities_for_metrics(outputs, labels) -> torch.Tensor:
    """Keep class probabilities only, so evaluation never accumulates hidden states."""
    return _logits(outputs).float().softmax(dim=-1)


def _masks_for_metrics(outputs, labels) -> torch.Tensor:
    """Keep 0/1 masks (uint8) only: the logits of a whole split would not fit in memory."""
    return (_logits(outputs) > 0).to(torch.uint8)


def _validation_metrics(metrics: dict[str, Any], class_names: Sequence[str]) -> dict[str, float]:
    """The classification metrics logged at each evaluation (the test split keeps them all).

    Accuracy, balanced accuracy, macro and per-class precision / recall / F1, COVID sensitivity
    and PPV, ROC-AUC; numbers only (undefined values are left out).
    """
    names = ["accuracy", "balanced_accuracy", "roc_auc", "covid_sensitivity", "covid_ppv"]
    for metric in ("precision", "recall", "f1"):
        names += [f"{metric}_macro", *(f"{metric}_{name}" for name in class_names)]
    return {name: metrics[name] for name in names if isinstance(metrics.get(name), int | float)}


def make_compute_metrics(
    task: str, class_names: Sequence[str]
) -> Callable[[EvalPrediction], dict[str, float]]:
    """``compute_metrics`` for the Trainer.

    Classifiers go through the ``chest_classification`` ``evaluate`` module
    (:func:`~hf_covid.evaluation.metrics.load_classification_metric`); the lung U-Net through
    :func:`~hf_covid.evaluation.metrics.segmentation_metrics` (masks are too large for Arrow).
    """
    if task == "segmentation":

        def compute_segmentation_metrics(prediction: EvalPrediction) -> dict[str, float]:
            return segmentation_metrics(prediction.predictions, prediction.label_ids)

        return compute_segmentation_metrics

    metric = load_classification_metric()

    def compute_classification_metrics(prediction: EvalPrediction) -> dict[str, float]:
        metrics = metric.compute(
            predictions=prediction.predictions,
            references=prediction.label_ids,
            class_names=list(class_names),
        )
        return _validation_metrics(metrics, class_names)

    return compute_classification_metrics


def metric_names(task: str, class_names: Sequence[str]) -> list[str]:
    """Names ``metric_for_best_model`` may take for a task."""
    if task == "segmentation":
        return ["dice", "iou", "loss"]
    size = len(class_names)
    perfect = classification_metrics(np.arange(size), np.eye(size), list(class_names))
    return [*_validation_metrics(perfect, class_names), "loss"]


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def class_weights_from_labels(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * n_c)`` (1 for a balanced set)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if np.any(counts == 0):
        raise ConfigurationError(
            f"class_weights: every class needs training examples, got counts {counts.tolist()}"
        )
    return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


class BalancedClassSampler(torch.utils.data.Sampler[int]):
    """Draws training indices with replacement so that every class is equally likely, and within
    a class every group (a source x view combination, say) equally likely.

    With ``groups``, the sampled data no longer tells a class by its groups: a class whose
    images come 90% from one collection and 10% from another is drawn half from each (the small
    group's images repeat more often). Reseeded each epoch (``set_epoch``) from ``seed``, so
    every process of a data-parallel run draws the same order (accelerate then shards it) and a
    resumed run repeats it.

    Args:
        labels: Class of every training example.
        seed: Seed of the draws.
        groups: A hashable group key per example (e.g. ``(source, view)``), or None.
    """

    def __init__(self, labels: np.ndarray, seed: int = 0, groups: Sequence | None = None):
        labels = np.asarray(labels, dtype=np.int64)
        keys = list(zip(labels.tolist(), groups, strict=True)) if groups is not None else None
        class_counts = np.bincount(labels)
        if keys is None:
            weights = 1.0 / class_counts[labels]
        else:
            group_counts = Counter(keys)
            groups_per_class = Counter(label for label, _ in group_counts)
            weights = np.array(
                [1.0 / (groups_per_class[key[0]] * group_counts[key]) for key in keys]
            )
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, len(self.weights), True, generator=generator)
        yield from drawn.tolist()


class ChestTrainer(Trainer):
    """``Trainer`` with class-weighted loss, a balanced sampler and a separate eval collator.

    Args:
        class_weights: (K,) cross-entropy weights; None uses the model's own loss.
        balanced_sampling_labels: training labels; when given, the balanced sampler is used.
        balanced_sampling_groups: a group key per training example (``balance_by``), or None.
        eval_data_collator: collator of the evaluation and test loaders (no augmentation).
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(
        self,
        *args,
        class_weights: torch.Tensor | None = None,
        balanced_sampling_labels: np.ndarray | None = None,
        balanced_sampling_groups: Sequence | None = None,
        eval_data_collator: Callable | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights
        self.balanced_sampling_labels = balanced_sampling_labels
        self.balanced_sampling_groups = balanced_sampling_groups
        self.eval_data_collator = eval_data_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float()
        loss = F.cross_entropy(
            logits,
            labels,
            weight=self.class_weights.to(logits.device),
            label_smoothing=self.args.label_smoothing_factor,
        )
        outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        if self.balanced_sampling_labels is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return BalancedClassSampler(
            self.balanced_sampling_labels, seed=seed, groups=self.balanced_sampling_groups
        )

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, **kwargs):
        if kwargs.get("is_training") or self.eval_data_collator is None:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, **kwargs)
        # The DataLoader keeps the collator it is built with, so swapping here is enough.
        training_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, **kwargs)
        finally:
            self.data_collator = training_collator


def sampling_groups(train_split: Any, columns: Sequence[str] | None) -> list[tuple] | None:
    """The ``balance_by`` group key of every training example, or None without ``balance_by``.

    Raises:
        ConfigurationError: a column the training data does not have.
    """
    if not columns:
        return None
    available = train_split.column_names
    missing = [column for column in columns if column not in available]
    if missing:
        raise ConfigurationError(
            f"balance_by: the training data has no column(s) {missing}; it has {available}"
        )
    table = train_split.with_format(None).select_columns(list(columns)).to_dict()
    return list(zip(*(table[column] for column in columns), strict=True))


def optimizer_class_and_kwargs(
    args: ChestTrainingArguments, model: torch.nn.Module | None = None
) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The optimizer class and keyword arguments: ``args.optimizer``'s torch optimizer, or the
    Trainer's own choice for ``args.optim`` when ``optimizer`` is unset."""
    if args.optimizer is None:
        return Trainer.get_optimizer_cls_and_kwargs(args, model)
    if args.optimizer == "rmsprop":
        return torch.optim.RMSprop, {"lr": args.learning_rate, "eps": args.adam_epsilon}
    adam = {"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
    optimizer_class = torch.optim.Adam if args.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class, {"lr": args.learning_rate, **adam}


def is_complete_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished Trainer checkpoint.

    The Trainer writes ``trainer_state.json`` last, so a run killed while saving leaves that file
    missing, empty or cut short; only a state file that parses marks a complete checkpoint.
    """
    state = Path(folder) / TRAINER_STATE_FILE
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete ``checkpoint-*`` folder; incomplete newer ones are skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    numbered = [path for path in folder.glob("checkpoint-*") if path.name.split("-")[-1].isdigit()]
    for path in sorted(numbered, key=lambda path: int(path.name.split("-")[-1]), reverse=True):
        if is_complete_checkpoint(path):
            return path
        logger.warning("Skipping %s: its trainer_state.json is missing or incomplete", path)
    return None


def resolve_resume(value: str | None, checkpoints_dir: Path) -> str | None:
    """The checkpoint to resume from: None, the latest complete one (``last``), or ``value``.

    Raises:
        ConfigurationError: ``value`` names an incomplete checkpoint.
    """
    if value is None or str(value).lower() in ("false", "no", "none"):
        return None
    if str(value).lower() in ("last", "latest", "true"):
        found = latest_checkpoint(checkpoints_dir)
        if found is None:
            logger.warning(
                "No complete checkpoint under %s: training from scratch", checkpoints_dir
            )
        return None if found is None else str(found)
    if not is_complete_checkpoint(value):
        raise ConfigurationError(
            f"resume_from_checkpoint: {value} is not a complete checkpoint "
            "(trainer_state.json missing or unreadable; the run was probably killed while saving)"
        )
    return str(value)


def remove_stale_checkpoints(checkpoints_dir: Path) -> None:
    """A fresh run replaces the intermediate checkpoints of an earlier run in the same folder."""
    stale = sorted(checkpoints_dir.glob("checkpoint-*"))
    if stale:
        logger.warning(
            "Starting from scratch: removing %d checkpoint(s) of an earlier run in %s "
            "(use --resume_from_checkpoint to continue that run instead)",
            len(stale),
            checkpoints_dir,
        )
    for path in stale:
        shutil.rmtree(path)


def _validate_training_arguments(
    family: ModelFamily, class_names: Sequence[str], args: ChestTrainingArguments
) -> str:
    """Check the training options against the model; return the resolved best-model metric."""
    if not args.output_dir:
        raise ConfigurationError("output_dir: required (the checkpoint folder to write)")
    if family.task == "segmentation" and args.imbalance != "none":
        raise ConfigurationError(
            f"imbalance={args.imbalance!r} applies to classifiers; the lung U-Net needs 'none'"
        )
    if family.task == "segmentation" and args.label_smoothing_factor:
        raise ConfigurationError(
            "label_smoothing_factor applies to classifiers; the lung U-Net needs 0"
        )
    if args.activation_checkpointing and not family.model_class.supports_gradient_checkpointing:
        raise ConfigurationError(
            f"activation_checkpointing: {family.model_class.__name__} does not support it"
        )
    metric = args.metric_for_best_model or "auto"
    if metric == "auto":
        metric = "dice" if family.task == "segmentation" else "f1_macro"
    metric = metric.removeprefix("eval_")
    allowed = metric_names(family.task, class_names)
    if metric not in allowed:
        raise ConfigurationError(
            f"metric_for_best_model: {metric!r} is not computed for this model; expected one of "
            f"{', '.join(allowed)}"
        )
    if args.early_stopping_patience and not (
        args.load_best_model_at_end and args.eval_strategy != "no"
    ):
        raise ConfigurationError(
            "early_stopping_patience needs load_best_model_at_end: true and an eval_strategy"
        )
    if args.push_to_hub and not args.hub_model_id:
        raise ConfigurationError("push_to_hub: set hub_model_id (e.g. user/covid-cnn-lstm)")
    return metric


def _trainer_arguments(args: ChestTrainingArguments, metric: str) -> ChestTrainingArguments:
    """The Trainer's copy: checkpoints in a sub-folder, resolved metric, no Trainer-side push."""
    trainer_args = copy.copy(args)
    trainer_args.output_dir = str(Path(args.output_dir) / CHECKPOINTS_SUBDIR)
    trainer_args.push_to_hub = False
    # The Trainer pickles its arguments into every checkpoint (training_args.bin): never the token.
    trainer_args.hub_token = None
    trainer_args.metric_for_best_model = metric
    trainer_args.greater_is_better = not metric.endswith("loss")
    return trainer_args


def build_trainer(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
) -> tuple[ChestTrainer, TrainingData, ChestImageProcessor]:
    """Everything :func:`train` builds before ``trainer.train()``: the trainer, data and processor.

    Raises:
        ConfigurationError: any recipe, data or option problem (before training starts).
    """
    family = get_model_family(model_args.model_type)
    class_names = expected_classes(family, data_args)
    metric = _validate_training_arguments(family, class_names, training_args)
    with training_args.main_process_first(desc="dataset preprocessing"):
        data = load_training_data(family, data_args)
    set_seed(training_args.seed)
    model = build_model(model_args, data.class_names)
    if training_args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    processor = build_image_processor(model_args, data_args)
    train_collator, eval_collator = build_collators(family, processor, data_args)
    train_labels = (
        np.asarray(data.splits["train"].with_format(None)["labels"])
        if family.task == "classification"
        else None
    )
    callbacks = []
    if training_args.early_stopping_patience:
        callbacks.append(
            EarlyStoppingCallback(
                training_args.early_stopping_patience, training_args.early_stopping_threshold
            )
        )
    compute_metrics = make_compute_metrics(family.task, data.class_names)
    trainer = ChestTrainer(
        model=model,
        args=_trainer_arguments(training_args, metric),
        data_collator=train_collator,
        eval_data_collator=eval_collator,
        processing_class=processor,
        train_dataset=data.splits["train"],
        eval_dataset=data.splits["validation"],
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=_masks_for_metrics
        if family.task == "segmentation"
        else _probabilities_for_metrics,
        callbacks=callbacks,
        # None: the Trainer builds its own `optim` (some need its special cases, e.g. GaLore).
        optimizer_cls_and_kwargs=optimizer_class_and_kwargs(training_args)
        if training_args.optimizer
        else None,
        class_weights=class_weights_from_labels(train_labels, len(data.class_names))
        if training_args.imbalance == "class_weights"
        else None,
        balanced_sampling_labels=train_labels
        if training_args.imbalance == "balanced_sampler"
        else None,
        balanced_sampling_groups=sampling_groups(data.splits["train"], training_args.balance_by),
    )
    return trainer, data, processor
