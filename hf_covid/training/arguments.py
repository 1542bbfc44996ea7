"""Training arguments: the three dataclasses of a run, YAML recipes and command-line parsing.

A recipe (``scripts/configs/*.yaml``) is a flat mapping of the fields of :class:`ModelArguments`,
:class:`DataArguments` and :class:`ChestTrainingArguments`; the command line overrides it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from hf_covid.registry import get_model_family, list_models

__all__ = [
    "ARGUMENT_CLASSES",
    "ChestTrainingArguments",
    "ConfigurationError",
    "DataArguments",
    "ModelArguments",
    "load_recipe",
    "parse_arguments",
]


class ConfigurationError(ValueError):
    """A recipe, a command-line argument or the data does not fit; raised before any training."""


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    model_type: str = field(
        metadata={"help": f"The model to train, one of {', '.join(list_models())}."}
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
        try:
            family = get_model_family(self.model_type)
        except KeyError:
            raise ConfigurationError(
                f"model_type: unknown model {self.model_type!r}; expected one of "
                f"{', '.join(list_models())}"
            ) from None
        self.model_type = family.key
        self.config_overrides = _json_dict(self.config_overrides, "config_overrides")
        if not family.accepts_pretrained and (self.pretrained or self.freeze_backbone):
            takes = [key for key in list_models() if get_model_family(key).accepts_pretrained]
            raise ConfigurationError(
                f"pretrained / freeze_backbone apply to model_type {', '.join(takes)} only, "
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
