"""Benchmark every hf_covid case against its baseline in one run; write JSON and Markdown.

Cases: data (preprocessed pipeline against PIL open + resize every epoch), training (HF Trainer
against a plain PyTorch loop), inference (eager against channels_last and torch.compile), app
(end-to-end latency per tab through gradio_client) and, on a CUDA device, bf16 + channels_last
against fp32 and ResNet-50 training images/s next to NVIDIA's published A100 figure.

    python scripts/benchmark.py             # full run, writes benchmarks/results.{json,md}
    python scripts/benchmark.py --quick --output-dir /tmp/bench   # CI: every case, small
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from hf_covid.benchmarking import BenchmarkSettings, results_markdown, run_benchmarks

REPO_ROOT = Path(__file__).resolve().parents[1]
CASES = ("data", "training", "inference", "app", "cuda")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small version of every case")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with radiography/ and xray_ct/ phantom sets (generated when missing; "
        "default: a temporary folder)",
    )
    parser.add_argument(
        "--checkpoints-dir",
        type=Path,
        help="checkpoint folders per model type for the app case, e.g. outputs/demo/checkpoints "
        "(default: randomly initialised demo models)",
    )
    parser.add_argument("--app-requests", type=int, help="requests per app endpoint")
    parser.add_argument("--training-steps", type=int, help="optimizer steps per loop")
    parser.add_argument("--data-rounds", type=int, help="alternating data pipeline rounds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    changes = {
        name: value
        for name, value in {
            "app_requests": arguments.app_requests,
            "training_steps": arguments.training_steps,
            "data_rounds": arguments.data_rounds,
        }.items()
        if value is not None
    }
    if arguments.no_compile:
        changes["compile"] = False
    settings = (
        BenchmarkSettings.quick_run(**changes) if arguments.quick else BenchmarkSettings(**changes)
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hf_covid_benchmark_") as scratch:
        results = run_benchmarks(
            settings,
            configs_dir=REPO_ROOT / "scripts" / "configs",
            app_file=REPO_ROOT / "spaces_app" / "app.py",
            work_dir=scratch,
            data_dir=arguments.data_dir,
            checkpoints_dir=arguments.checkpoints_dir,
            cases=tuple(arguments.cases),
            progress=lambda step: print(
                f"[{time.perf_counter() - start:6.1f} s] {step}", flush=True
            ),
        )
    results["total_seconds"] = time.perf_counter() - start
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    (arguments.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (arguments.output_dir / "results.md").write_text(results_markdown(results) + "\n")
    print(
        f"wrote {arguments.output_dir / 'results.json'} and results.md in {results['total_seconds']:.0f} s"
    )
    return results


if __name__ == "__main__":
    main()
