"""scripts/gpu_check.sh on its CPU path: the same code as the CUDA run, at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_covid.benchmarks.cuda import SMOKE_SIZES, format_gpu_check_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cpu_path_trains_every_demo_model_and_writes_both_result_files(tmp_path):
    benchmarks_before = sorted((ROOT / "benchmarks").glob("results_cuda*"))
    environment = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # the CPU path even on a machine with a GPU
        "OUTPUT_DIR": str(tmp_path),
        "PYTHON": sys.executable,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_DATASETS_CACHE": str(tmp_path / "datasets_cache"),
    }
    finished = subprocess.run(
        ["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=900
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "CPU smoke path" in finished.stdout

    results = json.loads((tmp_path / "results_cuda.json").read_text())
    assert results["smoke"] is True
    demo = {row["model"]: row for row in results["demo_training"]}
    assert set(demo) == {"dual_input", "cnn_lstm", "dual_channel", "resnet", "lung_unet"}
    for row in demo.values():
        assert row["logits_match"], row  # the checkpoint reloads on the CPU
        assert row["mixed_precision"] == "no"  # "auto" picks no mixed precision on a CPU
        assert row["first_losses_mean"] > 0 and row["last_losses_mean"] > 0
    resnet = results["resnet50"]
    assert resnet["data_free"]["images_per_second"] > 0
    assert resnet["trainer"]["trainer_samples_per_second"] > 0
    assert "trainer_compiled" not in resnet  # left out of the smoke run
    assert results["data_pipeline"]["samples_per_second"] > 0
    table = (tmp_path / "results_cuda.md").read_text()
    assert table == format_gpu_check_table(results)
    assert "SMOKE RUN" in table and f"| lung_unet | {SMOKE_SIZES.demo_steps} |" in table
    # The smoke run never writes into benchmarks/.
    assert sorted((ROOT / "benchmarks").glob("results_cuda*")) == benchmarks_before
