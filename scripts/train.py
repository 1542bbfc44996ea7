"""Train a hf_covid model from a recipe and/or command-line arguments.

A recipe is a packaged one by name (hf_covid/recipes/<name>.yaml) or a YAML file of your own.

Examples:
    python scripts/train.py cnn_lstm_synthetic --data_dir outputs/demo/data/radiography
    python scripts/train.py --config my_recipes/dual_input.yaml --num_train_epochs 5
    accelerate launch --num_processes 2 --multi_gpu scripts/train.py resnet
    torchrun --nproc_per_node 2 scripts/train.py hf_covid/recipes/resnet_synthetic.yaml

Several processes train with data parallelism (DDP; gloo on a machine without GPUs, where
torchrun or ``accelerate launch --multi_gpu`` start the processes: accelerate 1.x's ``--cpu``
alone starts one process unless MPI is set up). Only the main process writes the checkpoint.

Every field of hf_covid.training.ModelArguments, DataArguments and ChestTrainingArguments (which
extends transformers.TrainingArguments) is an option; run with --help for the list. Same as
``hf-covid train`` (:func:`hf_covid.training.command.main`).
"""

import sys

from hf_covid.training.command import main

if __name__ == "__main__":
    sys.exit(main())
