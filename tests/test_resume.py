"""Kill a training run with SIGKILL after its first epoch checkpoint, resume it, and get the same
model and test metrics as an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_covid.data.synthetic import generate_radiography
from hf_covid.recipes import RECIPE_DIR
from hf_covid.training import (
    ConfigurationError,
    is_complete_checkpoint,
    latest_checkpoint,
    train_from_recipe,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = RECIPE_DIR / "cnn_lstm_synthetic.yaml"
RUN = {
    "config_overrides": {"widths": [4, 8], "classifier_hidden_sizes": [8], "lstm_hidden_size": 8},
    "image_size": 32,
    "num_train_epochs": 3,
    "per_device_train_batch_size": 2,
    "early_stopping_patience": 0,
    "disable_tqdm": True,
}


def _command_line(values: dict) -> list[str]:
    argv = []
    for key, value in values.items():
        argv += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return argv


def _wait_for_checkpoint(process: subprocess.Popen, checkpoints: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while latest_checkpoint(checkpoints) is None:
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.01)


@pytest.mark.slow
def test_run_killed_after_an_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    data = generate_radiography(
        tmp_path / "data", images_per_class=6, image_size=48, mask_size=48, progress=False
    )
    run = {**RUN, "data_dir": str(data)}
    uninterrupted = train_from_recipe(RECIPE, {**run, "output_dir": str(tmp_path / "full")})

    output_dir = tmp_path / "resumed"
    command = [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        str(RECIPE),
        *_command_line({**run, "output_dir": str(output_dir)}),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_checkpoint(killed, output_dir / "checkpoints", timeout=240)
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (output_dir / "eval_results.json").exists()

    resumed = subprocess.run(
        [*command, "--resume_from_checkpoint"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert "checkpoint-" in results["training"]["resumed_from_checkpoint"]
    assert results["training"]["global_steps"] == uninterrupted["training"]["global_steps"]
    assert results["metrics"] == uninterrupted["metrics"]
    expected = load_file(tmp_path / "full" / "model.safetensors")
    for name, tensor in load_file(output_dir / "model.safetensors").items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)


def test_latest_checkpoint_skips_one_killed_while_saving(tmp_path, caplog):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')
    (tmp_path / "checkpoint-6").mkdir()  # killed before the state was written at all

    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert "checkpoint-4" in caplog.text and "checkpoint-6" in caplog.text
    assert not is_complete_checkpoint(tmp_path / "checkpoint-4")


def test_resuming_from_an_incomplete_checkpoint_names_it(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("")
    with pytest.raises(ConfigurationError, match="checkpoint-3 is not a complete checkpoint"):
        train_from_recipe(RECIPE, {"resume_from_checkpoint": str(checkpoint)})
