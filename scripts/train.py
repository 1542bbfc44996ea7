"""Train a hf_covid model from a YAML recipe and/or command-line arguments.

Examples:
    python scripts/train.py scripts/configs/cnn_lstm_synthetic.yaml --data_dir outputs/demo/data/radiography
    python scripts/train.py --config scripts/configs/dual_input.yaml --num_train_epochs 5
    accelerate launch --num_processes 2 --cpu scripts/train.py scripts/configs/resnet_synthetic.yaml

Every argument of hf_covid.training.ModelArguments, DataArguments and ChestTrainingArguments
(which extends transformers.TrainingArguments) is accepted; run with --help for the list.
"""

import sys

from hf_covid.training import main

if __name__ == "__main__":
    sys.exit(main())
