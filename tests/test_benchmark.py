"""scripts/benchmark.py --quick: every case runs and writes well-formed results (not speeds);
quick results never land in the repository's benchmarks/ folder unless asked for."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from hf_covid.benchmarks import NO_CUDA_NOTE, BenchmarkSettings, measure_startup, startup_commands
from hf_covid.benchmarks.run import REPOSITORY_ROOT, output_folder, parse_arguments
from hf_covid.registry import list_models

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
MODEL_KEYS = list_models()


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("benchmarks")
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--quick", "--output-dir", str(output_dir)]) == 0
    return output_dir, json.loads((output_dir / "results.json").read_text())


def test_quick_run_writes_outside_the_committed_results_unless_told():
    committed = REPOSITORY_ROOT / "benchmarks"
    quick = output_folder(parse_arguments(["--quick"]))
    assert quick.is_dir() and not quick.resolve().is_relative_to(committed.resolve())
    quick.rmdir()
    assert output_folder(parse_arguments([])) == committed
    told = parse_arguments(["--quick", "--output-dir", str(committed)])
    assert output_folder(told) == committed


def test_benchmark_script_is_the_package_entry_point():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0


@pytest.mark.slow
def test_quick_benchmark_writes_json_and_markdown_into_output_dir(quick_run):
    output_dir, written = quick_run
    assert written["settings"]["quick"] is True
    assert set(written) >= {
        "settings",
        "machine",
        "startup",
        "data",
        "training",
        "inference",
        "onnx",
        "app",
        "cuda",
    }
    assert written["total_seconds"] > 0
    markdown = (output_dir / "results.md").read_text()
    for model_type in MODEL_KEYS:
        assert f"| {model_type} |" in markdown
    assert "| chest_xray/dual_channel |" in markdown


@pytest.mark.slow
def test_quick_benchmark_startup_case_times_the_help_against_import_torch(quick_run):
    output_dir, written = quick_run
    startup = written["startup"]
    assert set(startup["seconds"]) == {"import torch", "hf-covid --help"}
    assert set(startup["ratios"]) == {"hf-covid --help / import torch"}
    assert _positive(startup["ratios"]["hf-covid --help / import torch"]["value"])
    assert "| hf-covid --help / import torch |" in (output_dir / "results.md").read_text()


def test_startup_case_takes_the_median_of_interleaved_rounds_in_fresh_processes():
    commands = {"quick": ["-c", "pass"], "slow": ["-c", "import time; time.sleep(0.3)"]}
    result = measure_startup(commands, repeats=3, ratios={"slow / quick": ("slow", "quick", 2.0)})
    assert [len(runs) for runs in result["runs_s"].values()] == [3, 3]
    assert result["seconds"]["slow"] == sorted(result["runs_s"]["slow"])[1]
    assert min(result["runs_s"]["slow"]) >= 0.3  # each run is a new process that slept
    ratio = result["ratios"]["slow / quick"]
    assert ratio["value"] == result["seconds"]["slow"] / result["seconds"]["quick"]
    assert ratio["target"] == 2.0 and len(result["load_average"]) == 3
    assert set(startup_commands()) >= {"hf-covid --help", "scripts/train.py --help"}


@pytest.mark.slow
def test_quick_benchmark_records_the_machine(quick_run):
    machine = quick_run[1]["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    assert machine["torch_version"] == torch.__version__
    assert len(machine["load_average"]) == 3
    assert machine["device"] == ("cpu" if not torch.cuda.is_available() else machine["device"])


@pytest.mark.slow
def test_quick_benchmark_data_case_compares_both_pipelines(quick_run):
    data = quick_run[1]["data"]
    assert set(data) == {"with_augmentation", "without_augmentation"}
    for row in data.values():
        assert row["images"] == 100
        for pipeline in ("naive", "preprocessed"):
            assert _positive(row[pipeline]["samples_per_second"])
        assert row["speedup"] == pytest.approx(
            row["preprocessed"]["samples_per_second"] / row["naive"]["samples_per_second"]
        )
    assert data["with_augmentation"]["augment"] and not data["without_augmentation"]["augment"]


@pytest.mark.slow
def test_quick_benchmark_training_case_has_a_ratio_per_model(quick_run):
    training = quick_run[1]["training"]
    assert set(training) == set(MODEL_KEYS)
    for row in training.values():
        assert _positive(row["trainer_samples_per_second"])
        assert _positive(row["plain_samples_per_second"])
        assert row["trainer_to_plain"] == pytest.approx(
            row["trainer_samples_per_second"] / row["plain_samples_per_second"]
        )


@pytest.mark.slow
def test_quick_benchmark_inference_case_compares_variants_with_eager(quick_run):
    inference = quick_run[1]["inference"]
    assert set(inference) == set(MODEL_KEYS)
    for row in inference.values():
        assert row["baseline"] == "eager"
        assert set(row["variants"]) == {"eager", "channels_last"}  # --quick: no compile
        assert row["variants"]["eager"]["p50_ratio"] == pytest.approx(1.0)
        for result in row["variants"].values():
            assert 0 < result["batch1_p50_ms"] <= result["batch1_p95_ms"]
            assert _positive(result["throughput_samples_per_second"])
            assert _positive(result["throughput_ratio"])


@pytest.mark.slow
def test_quick_benchmark_lung_crop_case_times_serving_and_preprocessing(quick_run):
    output_dir, written = quick_run
    crop = written["lung_crop"]
    assert crop["model"] == "resnet"
    for variant in ("without_crop", "with_crop"):
        latency = crop["serving"][variant]
        assert 0 < latency["p50_ms"] <= latency["p95_ms"]
    assert crop["serving"]["p50_ratio"] == pytest.approx(
        crop["serving"]["with_crop"]["p50_ms"] / crop["serving"]["without_crop"]["p50_ms"]
    )
    training = crop["training_preprocessing_s"]
    assert training["images"] == 100
    assert all(training[name] > 0 for name in ("without_crop", "with_crop_first_run"))
    # The second run reads every mask and every image back from the caches.
    assert training["with_crop_cached"] < training["with_crop_first_run"]
    assert "## Lung crop" in (output_dir / "results.md").read_text()


def test_quick_benchmark_onnx_case_times_onnxruntime_against_eager(quick_run):
    output_dir, written = quick_run
    onnx = written["onnx"]
    assert set(onnx["models"]) == set(BenchmarkSettings.quick_run().onnx_models)
    assert len(onnx["load_average"]) == len(onnx["load_average_after"]) == 3
    assert isinstance(onnx["shared_machine"], bool)
    assert onnx["threads"] == quick_run[1]["machine"]["torch_threads"]
    for row in onnx["models"].values():
        assert row["baseline"] == "eager"
        assert set(row["variants"]) == {"eager", "onnxruntime"}
        assert row["max_abs_difference"]["logits"] <= 1e-4
        for result in row["variants"].values():
            assert 0 < result["batch1_p50_ms"] <= result["batch1_p95_ms"]
            assert _positive(result["throughput_samples_per_second"])
        onnxruntime = row["variants"]["onnxruntime"]
        assert onnxruntime["p50_ratio"] == pytest.approx(
            onnxruntime["batch1_p50_ms"] / row["variants"]["eager"]["batch1_p50_ms"]
        )
    assert {row["exporter"] for row in onnx["models"].values()} == {"dynamo", "torchscript"}
    markdown = (output_dir / "results.md").read_text()
    assert "## ONNX: onnxruntime against eager PyTorch" in markdown
    assert "| dual_input | onnxruntime" in markdown


@pytest.mark.slow
def test_quick_benchmark_app_case_answers_every_tab_without_errors(quick_run):
    app = quick_run[1]["app"]
    assert set(app) == {
        "xray_ct/dual_input",
        "chest_xray/cnn_lstm",
        "chest_xray/dual_channel",
        "chest_xray/resnet",
    }
    for row in app.values():
        assert row["n_errors"] == 0, row["errors"]
        assert 0 < row["p50_s"] <= row["p95_s"]
        assert _positive(row["p50_ratio"])


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the note written without CUDA")
def test_quick_benchmark_notes_the_missing_cuda_device(quick_run):
    assert quick_run[1]["cuda"] == {"note": NO_CUDA_NOTE}
