"""Training: arguments and YAML recipes, the Trainer, and the checkpoint folder it writes.

One entry point, :func:`train`, serves every registered model family::

    from hf_covid.training import train_from_recipe
    results = train_from_recipe("cnn_lstm_synthetic", {"data_dir": "outputs/demo/data/radiography"})

``scripts/train.py`` is a thin command line over :func:`main`. It runs as a plain Python process or
under ``accelerate launch`` / ``torchrun`` (data parallelism; only the main process writes files).

Modules: :mod:`.arguments` (dataclasses, checked recipes, parsing), :mod:`.data` (model, processor,
collators, dataset), :mod:`.trainer` (``ChestTrainer``, metrics, resumption, ``build_trainer``),
:mod:`.run` (train, write the checkpoint, command line), :mod:`.overhead` (Trainer against a plain
loop).
"""

from .arguments import (
    ARGUMENT_CLASSES,
    ChestTrainingArguments,
    ConfigurationError,
    DataArguments,
    ModelArguments,
    checked_recipe,
    parse_arguments,
)
from .data import (
    TrainingData,
    build_collators,
    build_image_processor,
    build_model,
    load_training_data,
)
from .overhead import measure_trainer_overhead
from .run import format_summary, main, train, train_from_recipe, write_checkpoint_folder
from .trainer import (
    BalancedClassSampler,
    ChestTrainer,
    build_trainer,
    class_weights_from_labels,
    is_complete_checkpoint,
    latest_checkpoint,
    make_compute_metrics,
    metric_names,
    optimizer_class_and_kwargs,
)

__all__ = [
    "ARGUMENT_CLASSES",
    "BalancedClassSampler",
    "ChestTrainer",
    "ChestTrainingArguments",
    "ConfigurationError",
    "DataArguments",
    "ModelArguments",
    "TrainingData",
    "build_collators",
    "build_image_processor",
    "build_model",
    "build_trainer",
    "checked_recipe",
    "class_weights_from_labels",
    "format_summary",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "load_training_data",
    "main",
    "make_compute_metrics",
    "measure_trainer_overhead",
    "metric_names",
    "optimizer_class_and_kwargs",
    "parse_arguments",
    "train",
    "train_from_recipe",
    "write_checkpoint_folder",
]
