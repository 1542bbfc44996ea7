"""Train a hf_covid model from a YAML recipe and/or command-line arguments.

Examples:
    python scripts/train.py scripts/configs/cnn_lstm_synthetic.yaml --data_dir outputs/demo/data/radiography
    python scripts/train.py --config scripts/configs/dual_input.yaml --num_train_epochs 5
    accelerate launch --num_processes 2 --multi_gpu scripts/train.py scripts/configs/resnet.yaml
    torchrun --nproc_per_node 2 scripts/train.py scripts/configs/resnet_synthetic.yaml

Several processes train with data parallelism (DDP; gloo on a machine without GPUs, where
torchrun or ``accelerate launch --multi_gpu`` start the processes: accelerate 1.x's ``--cpu``
alone starts one process unless MPI is set up). Only the main process writes the checkpoint.

Every field of hf_covid.training.ModelArguments, DataArguments and ChestTrainingArguments (which
extends transformers.TrainingArguments) is an option; run with --help for the list. Same as
``hf-covid train`` (:func:`hf_covid.training.run.main`).
"""

import sys

from hf_covid.training.run import main

if __name__ == "__main__":
    sys.exit(main())
