"""Training: arguments and YAML recipes, the Trainer subclass, and the checkpoint folder it writes.

One entry point, :func:`train`, serves every model of the toolkit::

    from hf_covid.training import train_from_recipe
    results = train_from_recipe("scripts/configs/cnn_lstm_synthetic.yaml",
                                {"data_dir": "outputs/demo/data/radiography"})

``scripts/train.py`` is a thin command line over :func:`main`. It runs as a plain Python process or
under ``accelerate launch`` / ``torchrun`` (data parallelism; only the main process writes files).

The output folder is a complete, Hub-ready checkpoint (see shared/DESIGN.md): weights
(safetensors), ``config.json`` with ``auto_map`` and the remote-code files, the image processor,
``eval_results.json`` on the held-out test split, ``trainer_state.json``, figures and a model card.
The Trainer's intermediate ``checkpoint-*`` folders live under ``<output_dir>/checkpoints/``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from transformers import (
    EarlyStoppingCallback,
    EvalPrediction,
    HfArgumentParser,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from . import hub, models, plots
from .data import (
    ChestAugmentation,
    ChestBatchCollator,
    build_radiography_dataset,
    build_xray_ct_dataset,
    preprocess_for_training,
)
from .data.summary import read_build_summary
from .data.synthetic import LESION_MASK_FOLDER
from .evaluation import classification_metrics, segmentation_metrics, summarize_predictions
from .models.image_processing_chest import ChestImageProcessor
from .models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS, label_maps

logger = logging.getLogger(__name__)

MODEL_TYPES: tuple[str, ...] = ("dual_input", "cnn_lstm", "dual_channel", "resnet", "lung_unet")
"""Model names accepted by ``model_type``."""

CHECKPOINTS_SUBDIR = "checkpoints"
"""Sub-folder of ``output_dir`` that holds the Trainer's intermediate ``checkpoint-*`` folders."""

LABEL_PAIRING_NOTE = (
    "Label pairing joins an X-ray and a CT of the same class from different people: the public "
    "dataset has no patient ids, so the pairs are not real patients."
)

_CURVE_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "covid_sensitivity", "dice", "iou")
"""Validation metrics drawn in ``figures/training_curves.png`` (the rest stay in the logs)."""


class ConfigurationError(ValueError):
    """A recipe, a command-line argument or the data does not fit; raised before any training."""


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    model_type: Literal["dual_input", "cnn_lstm", "dual_channel", "resnet", "lung_unet"] = field(
        metadata={"help": f"The model to train, one of {', '.join(MODEL_TYPES)}."}
    )
    config_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for the model's config (a dict in YAML, a JSON string on the "
            "command line), e.g. '{\"widths\": [16, 32, 64]}'. For ResNet, fields of ResNetConfig."
        },
    )
    pretrained: str | None = field(
        default=None,
        metadata={
            "help": "ResNet only: Hub id or local folder of pretrained weights "
            "(e.g. microsoft/resnet-50); null trains from scratch."
        },
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "ResNet only: train the classification head only."}
    )

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ConfigurationError(
                f"model_type: unknown model {self.model_type!r}; expected one of "
                f"{', '.join(MODEL_TYPES)}"
            )
        self.config_overrides = _json_dict(self.config_overrides, "config_overrides")
        if self.model_type != "resnet" and (self.pretrained or self.freeze_backbone):
            raise ConfigurationError(
                f"pretrained / freeze_backbone apply to model_type 'resnet' only, "
                f"not {self.model_type!r}"
            )


@dataclass
class DataArguments:
    """Where the data is, which classes to expect, and how to split and preprocess it."""

    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Dataset root: the COVID-19 Radiography Database layout for cnn_lstm, "
            "dual_channel, resnet and lung_unet; the X-ray + CT layout for dual_input."
        },
    )
    classes: list[str] | None = field(
        default=None,
        metadata={
            "help": "Class names the recipe expects, in label-id order; the data must have exactly "
            "these (Radiography data: a subset of the four classes selects those folders). "
            "Default: all four Radiography classes, or Non-COVID/COVID for the X-ray + CT data."
        },
    )
    image_size: int = field(default=224, metadata={"help": "Side of the square model input."})
    split_ratios: list[float] = field(
        default_factory=lambda: [0.7, 0.15, 0.15],
        metadata={"help": "Train / validation / test fractions."},
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the split (kept apart from the training seed)."}
    )
    deduplicate: bool = field(
        default=True,
        metadata={"help": "Keep near-duplicate images (perceptual hash) in one split."},
    )
    group_by: str | None = field(
        default=None,
        metadata={"help": "Radiography data: 'source' keeps each source in one split."},
    )
    pairing: Literal["label", "patient"] = field(
        default="label",
        metadata={
            "help": "X-ray + CT data: 'label' joins an X-ray and a CT of the same class (different "
            "people); 'patient' needs a metadata file with patient ids."
        },
    )
    keep_unpaired: bool = field(
        default=False,
        metadata={"help": "X-ray + CT data: keep single-modality examples (patient pairing)."},
    )
    metadata_file: str | None = field(
        default=None, metadata={"help": "X-ray + CT data: CSV with file, modality, patient_id."}
    )
    skip_bad_images: bool = field(
        default=False, metadata={"help": "Skip unreadable images instead of failing."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "datasets cache folder for the decoded images."}
    )
    augment: bool = field(
        default=True, metadata={"help": "Augment the training split (ChestAugmentation)."}
    )
    augmentation: dict | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments of ChestAugmentation (a dict in YAML, JSON on the command "
            "line), e.g. '{\"rotation_degrees\": 5}'."
        },
    )

    def __post_init__(self) -> None:
        self.augmentation = _json_dict(self.augmentation, "augmentation")
        if len(self.split_ratios) != 3 or not math.isclose(sum(self.split_ratios), 1.0):
            raise ConfigurationError(
                f"split_ratios: expected three fractions summing to 1, got {self.split_ratios}"
            )
        if self.image_size < 16:
            raise ConfigurationError(
                f"image_size: expected at least 16 pixels, got {self.image_size}"
            )


@dataclass
class ChestTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` with this toolkit's defaults and options.

    ``output_dir`` is the final checkpoint folder; the Trainer's own checkpoints go to
    ``<output_dir>/checkpoints/``. ``push_to_hub`` uploads that final folder with
    :func:`hf_covid.hub.push_checkpoint` (the Trainer itself never pushes).
    """

    optimizer: Literal["adam", "adamw", "rmsprop"] = field(
        default="adamw",
        metadata={
            "help": "adam, adamw or rmsprop (torch.optim); takes precedence over `optim`. "
            "Uses learning_rate, weight_decay, adam_beta1/2 and adam_epsilon."
        },
    )
    imbalance: Literal["none", "class_weights", "balanced_sampler"] = field(
        default="none",
        metadata={
            "help": "Class imbalance: 'class_weights' weighs the cross-entropy by inverse class "
            "frequency; 'balanced_sampler' draws every class equally often."
        },
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = field(
        default="auto",
        metadata={
            "help": "'auto': bf16 on GPUs that support it, fp16 on other GPUs, none on CPU "
            "(--bf16 / --fp16 win over 'auto'); or 'no', 'bf16', 'fp16'."
        },
    )
    channels_last: bool = field(
        default=False, metadata={"help": "Use the channels_last memory format (faster on GPUs)."}
    )
    early_stopping_patience: int = field(
        default=0,
        metadata={"help": "Stop after this many evaluations without improvement (0: never)."},
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Smallest change of the metric that counts as improvement."}
    )
    # Parent fields with the defaults this toolkit needs.
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Keep the best validation checkpoint at the end."}
    )
    metric_for_best_model: str | None = field(
        default="auto",
        metadata={
            "help": "Validation metric that picks the best checkpoint and drives early stopping: "
            "'auto' (f1_macro for classifiers, dice for the lung U-Net), a logged validation "
            "metric (accuracy, balanced_accuracy, roc_auc, covid_sensitivity, covid_ppv, "
            "precision/recall/f1 _macro or _<class>; dice, iou) or 'loss'."
        },
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many checkpoints (the best is kept)."}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Resume: a checkpoint folder, or the bare flag / 'last' for the latest "
            "complete one under <output_dir>/checkpoints.",
            "nargs": "?",
            "const": "last",
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the collator picks each model's inputs."},
    )

    def __post_init__(self) -> None:
        if self.mixed_precision != "auto" or not (self.bf16 or self.fp16):
            on_gpu = torch.cuda.is_available() and not self.use_cpu
            wanted = self.mixed_precision
            if wanted == "auto":
                wanted = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "no"
            self.bf16, self.fp16 = wanted == "bf16", wanted == "fp16"
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for; avoids a DataLoader warning
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                # torchrun on a machine without accelerator: accelerate sets up MULTI_CPU (gloo)
                # only when told the run is on CPU.
                self.use_cpu = True
        super().__post_init__()


def _json_dict(value: dict | str | None, name: str) -> dict:
    """A dict argument given as a dict (YAML) or a JSON string (command line)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"{name}: expected a JSON object, got {value!r}") from error
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name}: expected a mapping, got {value!r}")
    return dict(value)


ARGUMENT_CLASSES = (ModelArguments, DataArguments, ChestTrainingArguments)


def _recipe_keys() -> set[str]:
    return {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe (a flat mapping of argument names to values) and check its keys.

    Raises:
        ConfigurationError: the file is missing, is not a mapping, or has unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"recipe {path}: file not found")
    recipe = yaml.safe_load(path.read_text()) or {}
    if not isinstance(recipe, dict):
        raise ConfigurationError(f"recipe {path}: expected a mapping of argument names to values")
    _check_keys(recipe, f"recipe {path}")
    return recipe


def _check_keys(recipe: dict[str, Any], where: str) -> None:
    known = _recipe_keys()
    for key in recipe:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"{where}: unknown key {key!r}{hint}")


def parse_arguments(
    argv: Sequence[str] | None = None, recipe: dict[str, Any] | None = None
) -> tuple[ModelArguments, DataArguments, ChestTrainingArguments]:
    """Parse the training arguments from a YAML recipe plus command-line overrides.

    Accepted forms: ``--config recipe.yaml [--key value ...]``, ``recipe.yaml [--key value ...]``
    or only ``--key value`` pairs. Command-line values override the recipe's.

    Args:
        argv: command-line arguments without the program name (default ``sys.argv[1:]``).
        recipe: recipe values to start from (merged under those of ``--config``).

    Returns:
        ``(model_args, data_args, training_args)``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    values = dict(recipe or {})
    _check_keys(values, "recipe")
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml")):
        argv = ["--config", *argv]
    if "--config" in argv or any(arg.startswith("--config=") for arg in argv):
        config_parser = _config_parser()
        known, argv = config_parser.parse_known_args(argv)
        values.update(load_recipe(known.config))
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.add_argument("--config", help="YAML recipe; command-line arguments override it.")
    parser.set_defaults(**values)
    for action in parser._actions:
        if action.dest in values:
            action.required = False  # the recipe provides it
    model_args, data_args, training_args, _ = parser.parse_args_into_dataclasses(
        args=argv, look_for_args_file=False
    )
    return model_args, data_args, training_args


def _config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", required=True)
    return parser


# --------------------------------------------------------------------------------------------
# Models, data and collators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """What the training loop needs to know about one model type."""

    dataset: Literal["radiography", "xray_ct"]
    task: Literal["classification", "segmentation"]
    input_names: tuple[str, ...]
    """Batch keys passed to ``forward`` besides ``labels``."""
    label_key: str = "labels"
    """Batch key that becomes ``labels`` (the lung mask for the U-Net)."""

    @property
    def uses_mask(self) -> bool:
        return "lung_mask" in self.input_names or self.label_key == "lung_mask"


MODEL_SPECS: dict[str, ModelSpec] = {
    "dual_input": ModelSpec(
        "xray_ct",
        "classification",
        ("pixel_values", "ct_pixel_values", "xray_available", "ct_available"),
    ),
    "cnn_lstm": ModelSpec("radiography", "classification", ("pixel_values",)),
    "dual_channel": ModelSpec("radiography", "classification", ("pixel_values", "lung_mask")),
    "resnet": ModelSpec("radiography", "classification", ("pixel_values",)),
    "lung_unet": ModelSpec("radiography", "segmentation", ("pixel_values",), "lung_mask"),
}


def build_model(model_args: ModelArguments, class_names: Sequence[str]) -> PreTrainedModel:
    """Instantiate the model named by ``model_args`` for ``class_names``."""
    overrides = dict(model_args.config_overrides)
    if model_args.model_type == "resnet":
        return models.build_resnet_classifier(
            pretrained=model_args.pretrained,
            labels=tuple(class_names),
            freeze_backbone=model_args.freeze_backbone,
            config_overrides=overrides or None,
        )
    config_class, model_class = {
        "dual_input": (models.DualInputCNNConfig, models.DualInputCNNForImageClassification),
        "cnn_lstm": (models.CNNLSTMConfig, models.CNNLSTMForImageClassification),
        "dual_channel": (models.DualChannelCNNConfig, models.DualChannelCNNForImageClassification),
        "lung_unet": (models.LungUNetConfig, models.LungUNetForSegmentation),
    }[model_args.model_type]
    if model_args.model_type != "lung_unet":
        id2label, label2id = label_maps(tuple(class_names))
        overrides.update(id2label=id2label, label2id=label2id)
    try:
        config = config_class(**overrides)
    except TypeError as error:
        raise ConfigurationError(
            f"config_overrides: {error} (fields of {config_class.__name__})"
        ) from error
    return model_class(config)


def build_image_processor(model_args: ModelArguments, image_size: int) -> ChestImageProcessor:
    """The ``ChestImageProcessor`` saved with the checkpoint (ImageNet statistics for ResNet)."""
    size = {"height": image_size, "width": image_size}
    if model_args.model_type == "resnet":
        return ChestImageProcessor(
            size=size,
            num_channels=3,
            do_normalize=True,
            image_mean=list(IMAGENET_DEFAULT_MEAN),
            image_std=list(IMAGENET_DEFAULT_STD),
        )
    return ChestImageProcessor(size=size, num_channels=1)


class ModelInputCollator:
    """Collates with ``ChestBatchCollator`` and keeps only what the model's ``forward`` takes.

    Args:
        collator: a ``ChestBatchCollator``.
        input_names: batch keys passed to the model.
        label_key: batch key returned as ``labels`` (``lung_mask`` for segmentation).
    """

    def __init__(self, collator: Callable, input_names: Sequence[str], label_key: str = "labels"):
        self.collator = collator
        self.input_names = tuple(input_names)
        self.label_key = label_key

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        selected = {name: batch[name] for name in self.input_names}
        selected["labels"] = batch[self.label_key]
        return selected


def build_collators(
    spec: ModelSpec, processor: ChestImageProcessor, data_args: DataArguments
) -> tuple[ModelInputCollator, ModelInputCollator]:
    """Training collator (with augmentation when enabled) and evaluation collator (without)."""
    normalize = dict(
        num_channels=processor.num_channels,
        mean=processor.image_mean if processor.do_normalize else None,
        std=processor.image_std if processor.do_normalize else None,
    )
    augmentation = ChestAugmentation(**data_args.augmentation) if data_args.augment else None
    return (
        ModelInputCollator(
            ChestBatchCollator(augmentation=augmentation, **normalize),
            spec.input_names,
            spec.label_key,
        ),
        ModelInputCollator(ChestBatchCollator(**normalize), spec.input_names, spec.label_key),
    )


@dataclass
class TrainingData:
    """Preprocessed splits plus what the reports say about them."""

    splits: Any
    """``DatasetDict`` train / validation / test from ``preprocess_for_training``."""
    class_names: tuple[str, ...]
    summary: dict[str, Any]


def _expected_classes(spec: ModelSpec, data_args: DataArguments) -> tuple[str, ...]:
    if spec.dataset == "xray_ct":
        if data_args.classes and tuple(data_args.classes) != BINARY_LABELS:
            raise ConfigurationError(
                f"classes: the X-ray + CT data has the classes {list(BINARY_LABELS)}, "
                f"but the recipe expects {data_args.classes}"
            )
        return BINARY_LABELS
    classes = tuple(data_args.classes or RADIOGRAPHY_LABELS)
    unknown = [name for name in classes if name not in RADIOGRAPHY_LABELS]
    if unknown:
        raise ConfigurationError(
            f"classes: {unknown} are not Radiography classes; expected names from "
            f"{list(RADIOGRAPHY_LABELS)}"
        )
    return classes


def load_training_data(spec: ModelSpec, data_args: DataArguments) -> TrainingData:
    """Build, check and preprocess the dataset a model trains on.

    Raises:
        ConfigurationError: the data folder is missing or its classes differ from the recipe's.
    """
    if not data_args.data_dir:
        raise ConfigurationError("data_dir: required (the dataset root folder)")
    root = Path(data_args.data_dir)
    if not root.is_dir():
        raise ConfigurationError(f"data_dir: folder {root} does not exist")
    expected = _expected_classes(spec, data_args)
    common = dict(
        split_ratios=tuple(data_args.split_ratios),
        seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
        skip_bad_images=data_args.skip_bad_images,
        cache_dir=data_args.cache_dir,
    )
    try:
        if spec.dataset == "xray_ct":
            raw = build_xray_ct_dataset(
                root,
                pairing=data_args.pairing,
                keep_unpaired=data_args.keep_unpaired,
                metadata_file=data_args.metadata_file,
                **common,
            )
        else:
            raw = build_radiography_dataset(
                root,
                classes=list(expected) if data_args.classes else None,
                group_by=data_args.group_by,
                **common,
            )
    except (FileNotFoundError, ValueError) as error:  # missing folders, bad files, bad options
        raise ConfigurationError(f"data_dir {root}: {error}") from error
    if spec.dataset == "xray_ct":
        columns = dict(image_column="xray", mask_column=None, ct_column="ct")
    else:
        columns = dict(image_column="image", mask_column="mask" if spec.uses_mask else None)
    found = tuple(raw["train"].features["label"].names)
    if found != expected:
        raise ConfigurationError(
            f"{root}: the data has the classes {list(found)} but the recipe expects "
            f"{list(expected)} (set `classes` to match the data)"
        )
    for split in ("train", "validation", "test"):
        if split not in raw or len(raw[split]) == 0:
            raise ConfigurationError(f"{root}: the {split!r} split is empty; add images")
    summary = _dataset_summary(spec, data_args, raw)
    splits = preprocess_for_training(raw, image_size=data_args.image_size, **columns)
    return TrainingData(splits, expected, summary)


def _dataset_summary(spec: ModelSpec, data_args: DataArguments, raw) -> dict[str, Any]:
    """What ``eval_results.json`` and the model card say about the data."""
    names = raw["train"].features["label"].names
    summary: dict[str, Any] = {
        "name": "Extensive COVID-19 X-Ray and CT"
        if spec.dataset == "xray_ct"
        else "COVID-19 Radiography Database",
        "data_dir": str(data_args.data_dir),
        # Only the phantom generator writes lesion ground truth next to the class folders.
        "synthetic": (Path(data_args.data_dir) / LESION_MASK_FOLDER).is_dir(),
        "image_size": data_args.image_size,
        "split_sizes": {split: len(raw[split]) for split in raw},
        "class_counts": {
            split: dict(
                zip(
                    names,
                    np.bincount(raw[split]["label"], minlength=len(names)).tolist(),
                    strict=True,
                )
            )
            for split in raw
        },
        "split_seed": data_args.split_seed,
        "deduplicate": data_args.deduplicate,
        "near_duplicates": _near_duplicates(raw) if data_args.deduplicate else None,
    }
    if spec.dataset == "xray_ct":
        summary["pairing"] = data_args.pairing
        if data_args.pairing == "label":
            summary["pairing_note"] = LABEL_PAIRING_NOTE
    return summary


def _near_duplicates(raw) -> dict[str, Any] | None:
    """Near-duplicate counts from the builders' summary (each group is kept in one split)."""
    summary = read_build_summary(raw)
    if summary is None or summary.near_duplicates is None:
        return None
    return dataclasses.asdict(summary.near_duplicates)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


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
    """``compute_metrics`` for the Trainer: classification or segmentation metrics."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        if task == "segmentation":
            return segmentation_metrics(prediction.predictions, prediction.label_ids)
        metrics = classification_metrics(
            prediction.label_ids, prediction.predictions, list(class_names)
        )
        return _validation_metrics(metrics, class_names)

    return compute_metrics


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
    """Draws training indices with replacement so that every class is equally likely.

    Reseeded each epoch (``set_epoch``) from ``seed``, so every process of a data-parallel run
    draws the same order (accelerate then shards it) and a resumed run repeats it.
    """

    def __init__(self, labels: np.ndarray, seed: int = 0):
        labels = np.asarray(labels, dtype=np.int64)
        counts = np.bincount(labels)
        self.weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
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
        eval_data_collator: collator of the evaluation and test loaders (no augmentation).
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(
        self,
        *args,
        class_weights: torch.Tensor | None = None,
        balanced_sampling_labels: np.ndarray | None = None,
        eval_data_collator: Callable | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights
        self.balanced_sampling_labels = balanced_sampling_labels
        self.eval_data_collator = eval_data_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float()
        loss = F.cross_entropy(logits, labels, weight=self.class_weights.to(logits.device))
        outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        if self.balanced_sampling_labels is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return BalancedClassSampler(self.balanced_sampling_labels, seed=seed)

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, **kwargs):
        if kwargs.get("is_training") or self.eval_data_collator is None:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, **kwargs)
        # The DataLoader keeps the collator it is built with, so swapping here is enough.
        training_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, **kwargs)
        finally:
            self.data_collator = training_collator


def optimizer_class_and_kwargs(
    args: ChestTrainingArguments,
) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The torch optimizer named by ``args.optimizer`` and its keyword arguments."""
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
    state = Path(folder) / "trainer_state.json"
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


def _resolve_resume(value: str | None, checkpoints_dir: Path) -> str | None:
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


def _remove_stale_checkpoints(checkpoints_dir: Path) -> None:
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
    spec: ModelSpec, class_names: Sequence[str], args: ChestTrainingArguments
) -> str:
    """Check the training options against the model; return the resolved best-model metric."""
    if not args.output_dir:
        raise ConfigurationError("output_dir: required (the checkpoint folder to write)")
    if spec.task == "segmentation" and args.imbalance != "none":
        raise ConfigurationError(
            f"imbalance={args.imbalance!r} applies to classifiers; the lung U-Net needs 'none'"
        )
    metric = args.metric_for_best_model or "auto"
    if metric == "auto":
        metric = "dice" if spec.task == "segmentation" else "f1_macro"
    metric = metric.removeprefix("eval_")
    allowed = metric_names(spec.task, class_names)
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
    spec = MODEL_SPECS[model_args.model_type]
    class_names = _expected_classes(spec, data_args)
    metric = _validate_training_arguments(spec, class_names, training_args)
    with training_args.main_process_first(desc="dataset preprocessing"):
        data = load_training_data(spec, data_args)
    set_seed(training_args.seed)
    model = build_model(model_args, data.class_names)
    if training_args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    processor = build_image_processor(model_args, data_args.image_size)
    train_collator, eval_collator = build_collators(spec, processor, data_args)
    train_labels = (
        np.asarray(data.splits["train"].with_format(None)["labels"])
        if spec.task == "classification"
        else None
    )
    callbacks = []
    if training_args.early_stopping_patience:
        callbacks.append(
            EarlyStoppingCallback(
                training_args.early_stopping_patience, training_args.early_stopping_threshold
            )
        )
    compute_metrics = make_compute_metrics(spec.task, data.class_names)
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
        if spec.task == "segmentation"
        else _probabilities_for_metrics,
        callbacks=callbacks,
        optimizer_cls_and_kwargs=optimizer_class_and_kwargs(training_args),
        class_weights=class_weights_from_labels(train_labels, len(data.class_names))
        if training_args.imbalance == "class_weights"
        else None,
        balanced_sampling_labels=train_labels
        if training_args.imbalance == "balanced_sampler"
        else None,
    )
    return trainer, data, processor


# --------------------------------------------------------------------------------------------
# Train, evaluate and write the checkpoint folder
# --------------------------------------------------------------------------------------------


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
        The contents of ``eval_results.json``: ``metrics`` (test split, from
        :func:`hf_covid.evaluation.classification_metrics` or Dice/IoU),
        ``confidence_intervals`` (95% bootstrap, headline metrics; the model card shows them),
        ``dataset``, ``training`` (best epoch, runtime, ...) and ``output_dir``.

    Raises:
        ConfigurationError: bad recipe, options or data, before any training starts.
    """
    spec = MODEL_SPECS[model_args.model_type]
    output_dir = Path(training_args.output_dir or "")
    checkpoints_dir = output_dir / CHECKPOINTS_SUBDIR
    resume = _resolve_resume(training_args.resume_from_checkpoint, checkpoints_dir)
    trainer, data, processor = build_trainer(model_args, data_args, training_args)
    if resume is None and trainer.is_world_process_zero():
        _remove_stale_checkpoints(checkpoints_dir)
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started

    test = trainer.predict(data.splits["test"], metric_key_prefix="test")
    if spec.task == "segmentation":
        predictions = segmentation_metrics(test.predictions, test.label_ids, per_image=True)
    else:
        predictions = {"labels": test.label_ids, "probabilities": test.predictions}
    confidence = 0.95
    summary = summarize_predictions(predictions, list(data.class_names), confidence=confidence)
    metrics = summary["metrics"] | {"loss": test.metrics.get("test_loss")}
    results = {
        "model_type": trainer.model.config.model_type,
        "task": "image-segmentation" if spec.task == "segmentation" else "image-classification",
        "split": "test",
        "class_names": list(data.class_names),
        "metrics": metrics,
        "confidence_intervals": summary["confidence_intervals"],
        "confidence": confidence,
        "dataset": data.summary,
        "training": {
            **_training_summary(trainer, training_args, train_output, train_seconds),
            "resumed_from_checkpoint": resume,
        },
        "output_dir": str(output_dir),
    }
    if trainer.is_world_process_zero():
        write_checkpoint_folder(trainer, processor, results, model_args, data_args, training_args)
    trainer.accelerator.wait_for_everyone()
    return results


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
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "imbalance": args.imbalance,
        "seed": args.seed,
        "world_size": args.world_size,
        "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
    }


def write_checkpoint_folder(
    trainer: ChestTrainer,
    processor: ChestImageProcessor,
    results: dict[str, Any],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
) -> Path:
    """Write the final checkpoint folder (main process only) and push it when asked."""
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    if training_args.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    recipe = {
        "model": dataclasses.asdict(model_args),
        "data": dataclasses.asdict(data_args),
        "training": json.loads(training_args.to_json_string()),
    }
    (output_dir / "training_config.json").write_text(json.dumps(recipe, indent=2) + "\n")

    figures = output_dir / "figures"
    curve_keys = {"loss", "eval_loss"} | {f"eval_{name}" for name in _CURVE_METRICS}
    history = [
        {
            key: value
            for key, value in entry.items()
            if key in curve_keys or key in ("epoch", "step")
        }
        for entry in trainer.state.log_history
    ]
    plots.plot_training_curves({"log_history": history}, figures / "training_curves.png")
    if "confusion_matrix" in results["metrics"]:
        plots.plot_confusion_matrix(
            results["metrics"]["confusion_matrix"],
            results["class_names"],
            figures / "confusion_matrix.png",
        )
    hub.write_model_card(output_dir, repo_id=training_args.hub_model_id)
    if training_args.push_to_hub:
        url = hub.push_checkpoint(
            output_dir,
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            token=training_args.hub_token,
        )
        results["hub_commit_url"] = url
    return output_dir


def format_summary(results: dict[str, Any]) -> str:
    """A one-screen summary of a finished run."""
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
        f"  data: {dataset['data_dir']}  splits: {dataset['split_sizes']}",
    ]
    if "pairing_note" in dataset:
        lines.append(f"  pairing: label. {dataset['pairing_note']}")
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
    output_dir = Path(results["output_dir"])
    lines += [
        f"  checkpoint: {output_dir}  (model card README.md, eval_results.json)",
        f"  figures: {output_dir / 'figures'}",
    ]
    if "hub_commit_url" in results:
        lines.append(f"  pushed: {results['hub_commit_url']}")
    lines.append("=" * 72)
    return "\n".join(lines)


def train_from_recipe(
    recipe: str | Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train from a YAML recipe with some values replaced (e.g. ``data_dir``, ``output_dir``).

    Args:
        recipe: path of a recipe in ``scripts/configs/``.
        overrides: argument names and values that replace the recipe's.

    Returns:
        What :func:`train` returns.
    """
    values = load_recipe(recipe)
    values.update(overrides or {})
    return train(*parse_arguments([], recipe=values))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: parse, train, print the summary. Returns the exit status."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        model_args, data_args, training_args = parse_arguments(argv)
        results = train(model_args, data_args, training_args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if training_args.process_index == 0:
        print(format_summary(results))
    return 0


# --------------------------------------------------------------------------------------------
# Speed: Trainer against a plain PyTorch loop
# --------------------------------------------------------------------------------------------


class _StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def _steady_samples_per_second(times: list[float], batch_size: int, warmup: int) -> float:
    """Throughput between the end of step ``warmup`` and the end of the last step."""
    timed = times[warmup - 1 :]
    return (len(timed) - 1) * batch_size / (timed[-1] - timed[0])


def measure_trainer_overhead(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
    *,
    steps: int = 40,
    warmup_steps: int = 5,
    repeats: int = 3,
) -> dict[str, Any]:
    """Training throughput of the Trainer against a plain PyTorch loop, same model and data.

    Both start from the same weights and use the same collator (with augmentation), DataLoader
    settings, batch size, optimizer and gradient clipping; steady-state samples/s is timed from
    the end of step ``warmup_steps`` to the end of step ``steps``, without evaluation or saving.
    The two loops alternate ``repeats`` times and the medians are compared, so that a burst of
    load from other processes does not land on one side only.

    Returns:
        ``trainer_samples_per_second`` and ``plain_samples_per_second`` (medians), ``overhead``
        (``1 - trainer / plain``: 0.05 means the Trainer is 5 % slower), every repeat's rates,
        ``steps`` and ``batch_size``.
    """
    if steps <= warmup_steps + 1:
        raise ValueError(f"steps ({steps}) must exceed warmup_steps + 1 ({warmup_steps + 1})")
    args = copy.copy(training_args)
    with tempfile.TemporaryDirectory() as scratch:
        args.output_dir = scratch
        args.max_steps = steps
        args.eval_strategy = args.save_strategy = "no"
        args.load_best_model_at_end = False
        args.early_stopping_patience = 0
        args.push_to_hub = False
        args.metric_for_best_model = "loss"
        args.disable_tqdm = True
        trainer, data, _ = build_trainer(model_args, data_args, args)
        model = trainer.accelerator.unwrap_model(trainer.model)
        initial_state = copy.deepcopy(model.state_dict())
        timer = _StepTimer()
        trainer.add_callback(timer)
        trainer_rates, plain_rates = [], []
        for _ in range(repeats):
            model.load_state_dict(initial_state)
            timer.times.clear()
            trainer.train()
            trainer_rates.append(
                _steady_samples_per_second(
                    timer.times, args.per_device_train_batch_size, warmup_steps
                )
            )
            model.load_state_dict(initial_state)
            plain_rates.append(
                _plain_loop_samples_per_second(
                    model, data.splits["train"], trainer.data_collator, args, steps, warmup_steps
                )
            )
    trainer_rate, plain_rate = float(np.median(trainer_rates)), float(np.median(plain_rates))
    return {
        "trainer_samples_per_second": trainer_rate,
        "plain_samples_per_second": plain_rate,
        "overhead": 1.0 - trainer_rate / plain_rate,
        "trainer_runs": trainer_rates,
        "plain_runs": plain_rates,
        "steps": steps,
        "batch_size": args.per_device_train_batch_size,
    }


def _plain_loop_samples_per_second(
    model: torch.nn.Module,
    dataset,
    collator: Callable,
    args: ChestTrainingArguments,
    steps: int,
    warmup_steps: int,
) -> float:
    device = args.device
    model.to(device).train()
    optimizer_class, optimizer_kwargs = optimizer_class_and_kwargs(args)
    optimizer = optimizer_class(model.parameters(), **optimizer_kwargs)
    workers = args.dataloader_num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collator,
        num_workers=workers,
        pin_memory=args.dataloader_pin_memory,
        drop_last=True,
        # The Trainer's worker settings, so that both loops pay the same per-epoch start-up.
        persistent_workers=args.dataloader_persistent_workers and workers > 0,
        prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
    )
    times: list[float] = []
    while len(times) < steps:
        for batch in loader:
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter())
            if len(times) == steps:
                break
    return _steady_samples_per_second(times, args.per_device_train_batch_size, warmup_steps)
