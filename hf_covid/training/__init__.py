"""Training: arguments and recipes, the Trainer, and the checkpoint folder it writes.

One entry point, :func:`train`, serves every registered model family::

    from hf_covid.training import train_from_recipe
    results = train_from_recipe("cnn_lstm_synthetic", {"data_dir": "outputs/demo/data/radiography"})

``scripts/train.py`` is a thin command line over :func:`main` (:mod:`.command`). It runs as a
plain Python process or under ``accelerate launch`` / ``torchrun`` (data parallelism; only the
main process writes files).

Every name below is imported from its module on first use (``import hf_covid.training`` imports
none of them, so the command line's ``--help`` loads the arguments only). Modules:
:mod:`.arguments` (dataclasses, checked recipes, parsing), :mod:`.data` (model, processor,
collators, dataset), :mod:`.trainer` (``ChestTrainer``, metrics, resumption, ``build_trainer``),
:mod:`.run` (train, write the checkpoint), :mod:`.command` (the command line), :mod:`.overhead`
(Trainer against a plain loop).
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY_EXPORTS: dict[str, str] = {
    "ARGUMENT_CLASSES": "hf_covid.training.arguments",
    "ChestTrainingArguments": "hf_covid.training.arguments",
    "ConfigurationError": "hf_covid.training.arguments",
    "DataArguments": "hf_covid.training.arguments",
    "ModelArguments": "hf_covid.training.arguments",
    "checked_recipe": "hf_covid.training.arguments",
    "parse_arguments": "hf_covid.training.arguments",
    "TrainingData": "hf_covid.training.data",
    "build_collators": "hf_covid.training.data",
    "build_image_processor": "hf_covid.training.data",
    "build_model": "hf_covid.training.data",
    "load_training_data": "hf_covid.training.data",
    "measure_trainer_overhead": "hf_covid.training.overhead",
    "main": "hf_covid.training.command",
    "format_summary": "hf_covid.training.run",
    "train": "hf_covid.training.run",
    "train_from_recipe": "hf_covid.training.run",
    "write_checkpoint_folder": "hf_covid.training.run",
    "BalancedClassSampler": "hf_covid.training.trainer",
    "ChestTrainer": "hf_covid.training.trainer",
    "build_trainer": "hf_covid.training.trainer",
    "class_weights_from_labels": "hf_covid.training.trainer",
    "is_complete_checkpoint": "hf_covid.training.trainer",
    "latest_checkpoint": "hf_covid.training.trainer",
    "make_compute_metrics": "hf_covid.training.trainer",
    "metric_names": "hf_covid.training.trainer",
    "optimizer_class_and_kwargs": "hf_covid.training.trainer",
}

__all__ = sorted(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_EXPORTS)
