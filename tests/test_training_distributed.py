"""A real 2-process data-parallel CPU training (torchrun, gloo backend) through scripts/train.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_covid.data.synthetic import generate_radiography
from hf_covid.recipes import RECIPE_DIR

REPO = Path(__file__).resolve().parents[1]
TINY_CNN_LSTM = {"widths": [4, 8], "classifier_hidden_sizes": [8], "lstm_hidden_size": 8}


@pytest.mark.slow
def test_two_process_cpu_training_splits_the_batches_and_writes_once(tmp_path):
    data = generate_radiography(
        tmp_path / "data", images_per_class=6, image_size=48, mask_size=48, progress=False
    )
    output_dir = tmp_path / "run"
    batch_size, epochs = 4, 2
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "scripts" / "train.py"),
        str(RECIPE_DIR / "cnn_lstm_synthetic.yaml"),
        "--data_dir",
        str(data),
        "--output_dir",
        str(output_dir),
        "--config_overrides",
        json.dumps(TINY_CNN_LSTM),
        "--image_size",
        "32",
        "--num_train_epochs",
        str(epochs),
        "--per_device_train_batch_size",
        str(batch_size),
        "--early_stopping_patience",
        "0",
        "--disable_tqdm",
        "true",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("covid_cnn_lstm trained on") == 1  # main process only

    results = json.loads((output_dir / "eval_results.json").read_text())
    training, sizes = results["training"], results["dataset"]["split_sizes"]
    assert training["world_size"] == 2
    # Each optimizer step consumes one batch per process.
    assert training["global_steps"] == epochs * math.ceil(sizes["train"] / (2 * batch_size))
    # Test predictions are gathered from both processes without padding duplicates.
    assert results["metrics"]["n_samples"] == sizes["test"]
    assert (output_dir / "model.safetensors").is_file()
    assert (output_dir / "README.md").is_file()
