"""Training arguments: the three dataclasses of a run, YAML recipes and command-line parsing.

A recipe (a packaged one by name, or a YAML file by path: :mod:`hf_covid.recipes`) is a flat
mapping of the fields of :class:`ModelArguments`, :class:`DataArguments` and
:class:`ChestTrainingArguments`; the command line overrides it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import HfArgumentParser, TrainingArguments
from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

from hf_covid.recipes import RecipeError, load_recipe
from hf_covid.registry import DATASET_KINDS, get_model_family, list_models, model_families

__all__ = [
    "ARGUMENT_CLASSES",
    "SAME_SETTING_NAMES",
    "ChestTrainingArguments",
    "ConfigurationError",
    "DataArguments",
    "ModelArguments",
    "checked_recipe",
    "parse_arguments",
]


logger = logging.getLogger(__name__)


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
            "help": "Dataset root in the layout of the model's dataset kind ("
            + "; ".join(
                f"{kind.name} for {', '.join(f.key for f in model_families() if f.dataset_kind == key)}"
                for key, kind in DATASET_KINDS.items()
            )
            + "), a public collections root, or a dataset saved with save_to_disk."
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
    composition: str | None = field(
        default=None,
        metadata={
            "help": "Collections root only: the named composition of the public collections "
            "into the Radiography classes ('pediatric_controls', the first study's; "
            "'adult_controls': adults only, NIH controls, COVID-CXNet hospital films). Default: "
            "pediatric_controls."
        },
    )
    class_map: dict | str | None = field(
        default=None,
        metadata={
            "help": "Collections root only: sources per class replacing the composition's, e.g. "
            '\'{"Viral Pneumonia": ["ieee8023:viral", "kermany:viral"]}\'.'
        },
    )
    age_groups: list[str] | None = field(
        default=None,
        metadata={
            "help": "Collections root only: age groups kept (adult, pediatric, unknown), "
            "replacing the composition's filter."
        },
    )
    lung_crop_margin: float | None = field(
        default=None,
        metadata={
            "help": "Crop every X-ray to its lungs: the bounding box of mask_model's lung mask, "
            "widened by this fraction of the box on every side (e.g. 0.08), in training, "
            "evaluation and serving alike; None: no crop."
        },
    )
    intensity_standardization: Literal["none", "equalize", "clahe"] = field(
        default="none",
        metadata={
            "help": "Standardise every image's intensities (after the crop, before the resize): "
            "'equalize' (histogram equalisation) or 'clahe' (contrast-limited adaptive)."
        },
    )
    mask_model: str | None = field(
        default=None,
        metadata={
            "help": "A lung U-Net checkpoint (folder or Hub id) whose mask replaces every image's "
            "mask (human masks kept in 'human_mask'), so that no class is told apart by having "
            "a mask: the input of models that read the lung mask (dual_channel; needed on a "
            "collections root, where only the ieee8023 COVID X-rays have human masks), the box "
            "of lung_crop_margin and the region of the outside-lungs augmentation. Saved in the "
            "checkpoint's lung_segmenter/ folder; its masks are cached per image."
        },
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
        self.class_map = _json_dict(self.class_map, "class_map")
        if self.lung_crop_margin is not None:
            if not 0 <= self.lung_crop_margin <= 1:
                raise ConfigurationError(
                    f"lung_crop_margin: expected a fraction in [0, 1], got {self.lung_crop_margin}"
                )
            if not self.mask_model:
                raise ConfigurationError(
                    "lung_crop_margin: the lung crop needs mask_model, the lung U-Net that draws "
                    "every image's lungs (in training and, saved with the checkpoint, in serving)"
                )
        if len(self.split_ratios) != 3 or not math.isclose(sum(self.split_ratios), 1.0):
            raise ConfigurationError(
                f"split_ratios: expected three fractions summing to 1, got {self.split_ratios}"
            )
        if self.image_size < 16:
            raise ConfigurationError(
                f"image_size: expected at least 16 pixels, got {self.image_size}"
            )


_TRAINER_DEFAULT_OPTIM = TrainingArguments.__dataclass_fields__["optim"].default
# hf_covid's optimizers and the Trainer's `optim` names for the same optimizer.
_SAME_AS_TRAINER_OPTIM = {"adamw": ("adamw_torch", "adamw_torch_fused"), "rmsprop": ("rmsprop",)}
# Trackers whose packages the `tracking` extra installs.
_TRACKING_EXTRA = ("tensorboard", "trackio")


@dataclass
class ChestTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` with this toolkit's defaults and options.

    ``output_dir`` is the final checkpoint folder; the Trainer's own checkpoints (and TensorBoard
    event files, under ``runs/``) go to ``<output_dir>/checkpoints/``. ``push_to_hub`` uploads
    that final folder with :func:`hf_covid.hub.push_checkpoint` (the Trainer itself never
    pushes). Settings that contradict each other, or Trainer options this toolkit would ignore,
    raise :class:`ConfigurationError` here, before any data is read.
    """

    optimizer: Literal["adam", "adamw", "rmsprop"] | None = field(
        default=None,
        metadata={
            "help": "adam, adamw or rmsprop (torch.optim, with learning_rate, weight_decay, "
            "adam_beta1/2 and adam_epsilon); default adamw. Or leave it unset and choose the "
            "Trainer's own `optim`: setting both is an error, except that `--optim` on the "
            "command line replaces a recipe's `optimizer` (and `--optimizer` a recipe's `optim`)."
        },
    )
    optim: str | None = field(
        default=None,
        metadata={
            "help": "The Trainer's optimizer (a transformers OptimizerNames value, e.g. "
            "adamw_torch, adafactor, sgd), used instead of `optimizer`."
        },
    )
    imbalance: Literal["none", "class_weights", "balanced_sampler"] = field(
        default="none",
        metadata={
            "help": "Class imbalance: 'class_weights' weighs the cross-entropy by inverse class "
            "frequency; 'balanced_sampler' draws every class (or every group of balance_by) "
            "equally often."
        },
    )
    balance_by: list[str] | None = field(
        default=None,
        metadata={
            "help": "With imbalance: balanced_sampler, the data columns besides the class whose "
            "combinations are drawn equally often, e.g. [source, view]: every source x class x "
            "view group equally likely, so that no source or view stands for a class."
        },
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = field(
        default="auto",
        metadata={
            "help": "'auto': the choice of `accelerate launch` (its config or --mixed_precision) "
            "when launched by it, else bf16 on GPUs that support it, fp16 on other GPUs, none on "
            "CPU; --bf16 / --fp16 set it too. Or 'no', 'bf16', 'fp16', which must agree with "
            "--bf16 / --fp16 and with an accelerate config that asks for fp16 or bf16."
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
        metadata={"help": "Must stay False: the collator picks each model's inputs."},
    )
    hub_strategy: str = field(
        default="end",
        metadata={
            "help": "Only 'end': with push_to_hub, the final checkpoint folder (weights, card, "
            "test results) is pushed once after the test evaluation; intermediate checkpoints "
            "are never uploaded."
        },
    )

    def __post_init__(self) -> None:
        self._resolve_optimizer()
        self._resolve_mixed_precision()
        self._check_unsupported_options()
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for; avoids a DataLoader warning
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                # torchrun on a machine without accelerator: accelerate sets up MULTI_CPU (gloo)
                # only when told the run is on CPU.
                self.use_cpu = True
        try:
            super().__post_init__()
        except ValueError as error:
            if isinstance(error, ConfigurationError):
                raise
            raise ConfigurationError(f"training arguments: {error}") from error
        self._check_trackers()

    def _resolve_optimizer(self) -> None:
        """One optimizer: hf_covid's ``optimizer`` (default adamw) or the Trainer's ``optim``."""
        if self.optim is None:
            self.optimizer = self.optimizer or "adamw"
            self.optim = _TRAINER_DEFAULT_OPTIM  # unused: optimizer_cls_and_kwargs replaces it
        elif self.optimizer is not None and self.optim not in _SAME_AS_TRAINER_OPTIM.get(
            self.optimizer, ()
        ):
            raise ConfigurationError(
                f"optimizer={self.optimizer!r} and optim={self.optim!r} both choose the "
                "optimizer; set one of them (on the command line, --optim replaces a recipe's "
                "optimizer)"
            )
        if self.optim_args and self.optimizer is not None:
            raise ConfigurationError(
                f"optim_args apply to the Trainer's optim only, not to optimizer="
                f"{self.optimizer!r}; set optim instead"
            )

    def _resolve_mixed_precision(self) -> None:
        """Set ``bf16`` / ``fp16`` from ``mixed_precision``, the flags and an accelerate launch."""
        flags = [name for name in ("bf16", "fp16") if getattr(self, name)]
        if len(flags) > 1:
            raise ConfigurationError("bf16 and fp16 are both set; choose one")
        flag = flags[0] if flags else None
        # `accelerate launch` exports its config's (or --mixed_precision's) choice.
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
        wanted = self.mixed_precision
        if wanted != "auto" and flag is not None and flag != wanted:
            raise ConfigurationError(f"mixed_precision={wanted!r} but {flag}=True; set one of them")
        if wanted == "auto":
            on_gpu = torch.cuda.is_available() and not self.use_cpu
            device_choice = (
                ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "no"
            )
            wanted = flag or launcher or device_choice
        elif launcher not in (None, "no", wanted):
            raise ConfigurationError(
                f"accelerate launch asks for mixed precision {launcher!r} (its config or "
                f"--mixed_precision) but mixed_precision={wanted!r}; make them agree, or set "
                "mixed_precision: auto to follow accelerate"
            )
        if wanted not in ("no", "bf16", "fp16"):
            raise ConfigurationError(
                f"mixed precision {wanted!r} (from accelerate launch) is not supported; "
                "expected no, bf16 or fp16"
            )
        self.bf16, self.fp16 = wanted == "bf16", wanted == "fp16"

    def _check_unsupported_options(self) -> None:
        """Trainer options that this toolkit's training would otherwise ignore or break on."""
        if self.balance_by and self.imbalance != "balanced_sampler":
            raise ConfigurationError(
                f"balance_by: {self.balance_by} applies to imbalance: balanced_sampler, not "
                f"imbalance: {self.imbalance}"
            )
        if self.hub_strategy != "end":
            raise ConfigurationError(
                f"hub_strategy={self.hub_strategy!r} is not supported: hf_covid pushes the final "
                "checkpoint folder once, after the test evaluation (intermediate checkpoints hold "
                "optimizer state and are never uploaded); use hub_strategy: end"
            )
        if self.hub_revision:
            raise ConfigurationError(
                f"hub_revision={self.hub_revision!r} is not supported: the checkpoint is pushed "
                "to the main branch (hf_covid.hub.push_checkpoint)"
            )
        if self.remove_unused_columns:
            raise ConfigurationError(
                "remove_unused_columns must be false: the collators need the image columns"
            )
        if self.prediction_loss_only:
            raise ConfigurationError(
                "prediction_loss_only must be false: validation metrics and the test "
                "evaluation need the predictions"
            )
        if not self.eval_do_concat_batches:
            raise ConfigurationError(
                "eval_do_concat_batches must be true: the metrics take one array per split"
            )
        if self.greater_is_better is not None:
            metric = (self.metric_for_best_model or "auto").removeprefix("eval_")
            if self.greater_is_better == metric.endswith("loss"):
                raise ConfigurationError(
                    f"greater_is_better={self.greater_is_better} contradicts "
                    f"metric_for_best_model={metric!r}; leave greater_is_better unset"
                )

    def _check_trackers(self) -> None:
        """Every ``report_to`` tracker is known and installed (the Trainer would fail later)."""
        unknown = [name for name in self.report_to if name not in INTEGRATION_TO_CALLBACK]
        if unknown:
            raise ConfigurationError(
                f"report_to: unknown tracker(s) {unknown}; expected some of "
                f"{', '.join(INTEGRATION_TO_CALLBACK)} or none"
            )
        installed = get_available_reporting_integrations()
        for name in self.report_to:
            if name not in installed:
                hint = (
                    "pip install 'hf_covid[tracking]'"
                    if name in _TRACKING_EXTRA
                    else f"install the package of {name}"
                )
                raise ConfigurationError(
                    f"report_to={name!r}: the {name} package is not installed; {hint}"
                )


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

SAME_SETTING_NAMES: tuple[tuple[str, ...], ...] = (("optimizer", "optim"),)
"""Arguments that choose one setting under two names: a name given on the command line replaces
the recipe's value of the others; both at the same level is a :class:`ConfigurationError`."""


def _recipe_keys() -> set[str]:
    return {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def checked_recipe(recipe: str | Path) -> dict[str, Any]:
    """The values of a recipe given by name or path (:func:`hf_covid.recipes.load_recipe`), its
    keys checked against the training arguments.

    Raises:
        ConfigurationError: the recipe does not exist, is not a mapping, or has unknown keys.
    """
    try:
        values = load_recipe(recipe)
    except RecipeError as error:
        raise ConfigurationError(str(error)) from None
    _check_keys(values, f"recipe {recipe}")
    return values


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

    Accepted forms: ``--config RECIPE [--key value ...]``, ``RECIPE [--key value ...]`` or only
    ``--key value`` pairs, where ``RECIPE`` is a packaged recipe's name (``cnn_lstm_synthetic``)
    or a YAML file's path (:func:`hf_covid.recipes.recipe_path`). Command-line values override
    the recipe's.

    Args:
        argv: command-line arguments without the program name (default ``sys.argv[1:]``).
        recipe: recipe values to start from (merged under those of ``--config``).

    Returns:
        ``(model_args, data_args, training_args)``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    values = dict(recipe or {})
    _check_keys(values, "recipe")
    if argv and not argv[0].startswith("-"):  # the one positional argument: the recipe
        argv = ["--config", *argv]
    if "--config" in argv or any(arg.startswith("--config=") for arg in argv):
        config_parser = _config_parser()
        known, argv = config_parser.parse_known_args(argv)
        values.update(checked_recipe(known.config))
    _let_command_line_replace_recipe(argv, values)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.add_argument(
        "--config",
        help="recipe: a packaged recipe's name or a YAML file; command-line arguments override it.",
    )
    parser.set_defaults(**values)
    for action in parser._actions:
        if action.dest in values:
            action.required = False  # the recipe provides it
    model_args, data_args, training_args, _ = parser.parse_args_into_dataclasses(
        args=argv, look_for_args_file=False
    )
    return model_args, data_args, training_args


def _let_command_line_replace_recipe(argv: Sequence[str], values: dict[str, Any]) -> None:
    """Drop the recipe's value of a setting that the command line gives under another name."""
    given = {arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")}
    for names in SAME_SETTING_NAMES:
        chosen = [name for name in names if name in given]
        for name in names:
            if chosen and name not in chosen and values.get(name) is not None:
                logger.warning(
                    "--%s on the command line replaces the recipe's %s: %s",
                    chosen[0],
                    name,
                    values.pop(name),
                )


def _config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", required=True)
    return parser
