"""Benchmarks of hf_covid: every case against its baseline, in one run (``scripts/benchmark.py``).

Not part of the library: nothing in ``hf_covid`` imports this package.

- :mod:`~hf_covid.benchmarks.startup`: each command's start-up against the import it cannot avoid.
- :mod:`~hf_covid.benchmarks.data_pipeline`: preprocessed pipeline against PIL open + resize.
- :mod:`~hf_covid.benchmarks.training_loop`: HF Trainer against a plain PyTorch loop.
- :mod:`~hf_covid.benchmarks.inference_speed`: eager against channels_last / torch.compile.
- :mod:`~hf_covid.benchmarks.onnx_runtime`: onnxruntime against eager PyTorch on the CPU.
- :mod:`~hf_covid.benchmarks.app_latency`: each app tab through ``gradio_client``
  (:mod:`~.app_client`: concurrent clients of a running app).
- :mod:`~hf_covid.benchmarks.model_stats`: parameters, FLOPs and training-step time.
- :mod:`~hf_covid.benchmarks.cuda`: ResNet-50 training next to NVIDIA's A100 figure.
- :mod:`~hf_covid.benchmarks.suite`: settings and the run; :mod:`~.report`: Markdown;
  :mod:`~.run`: the command line (:func:`main`).
"""

from .app_latency import free_loopback_port, measure_app_endpoints
from .cuda import NO_CUDA_NOTE, RESNET50_A100_REFERENCE, resnet50_training_throughput
from .data_pipeline import (
    NaiveImageFolderDataset,
    compare_data_pipelines,
    measure_dataloader_throughput,
)
from .demo_models import build_demo_model, load_demo_recipes, save_random_checkpoints
from .inference_speed import compare_inference_variants, compare_to_baseline, measure_inference
from .onnx_runtime import compare_onnx_to_eager, measure_onnx_inference
from .report import results_markdown
from .run import main
from .startup import STARTUP_RATIOS, measure_startup, startup_commands
from .suite import CASES, BenchmarkSettings, machine_info, run_benchmarks
from .training_loop import compare_training_loops

__all__ = [
    "CASES",
    "NO_CUDA_NOTE",
    "RESNET50_A100_REFERENCE",
    "STARTUP_RATIOS",
    "BenchmarkSettings",
    "NaiveImageFolderDataset",
    "build_demo_model",
    "compare_data_pipelines",
    "compare_inference_variants",
    "compare_onnx_to_eager",
    "compare_to_baseline",
    "compare_training_loops",
    "free_loopback_port",
    "load_demo_recipes",
    "machine_info",
    "main",
    "measure_app_endpoints",
    "measure_dataloader_throughput",
    "measure_inference",
    "measure_onnx_inference",
    "measure_startup",
    "resnet50_training_throughput",
    "results_markdown",
    "run_benchmarks",
    "save_random_checkpoints",
    "startup_commands",
]
