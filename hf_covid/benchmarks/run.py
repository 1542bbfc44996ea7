"""The command line of the benchmarks (``scripts/benchmark.py``, ``hf-covid bench``).

    python scripts/benchmark.py             # full run, writes benchmarks/results.{json,md}
    python scripts/benchmark.py --quick     # CI: every case, small, into a temporary folder
    python scripts/benchmark.py --quick --output-dir /tmp/bench

A ``--quick`` run never writes into the repository's ``benchmarks/`` folder (which holds the
committed full results) unless ``--output-dir`` says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .report import results_markdown
from .suite import CASES, BenchmarkSettings, run_benchmarks

__all__ = ["REPOSITORY_ROOT", "main", "output_folder", "parse_arguments", "settings_from"]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout this package lies in (the app and the committed results)."""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Benchmark every hf_covid case against its baseline in one run; write JSON "
        "and Markdown. Cases: startup (each command in fresh processes against the import it "
        "cannot avoid), data (preprocessed pipeline against PIL open + resize every "
        "epoch), training (HF Trainer against a plain PyTorch loop), inference (eager against "
        "channels_last and torch.compile), onnx (onnxruntime against eager PyTorch), app "
        "(end-to-end latency per tab through gradio_client) and, on a CUDA device, bf16 + channels_last against fp32 and ResNet-50 "
        "training images/s next to NVIDIA's published A100 figure."
    )
    parser.add_argument("--quick", action="store_true", help="small version of every case")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where results.json and results.md go (default: the repository's benchmarks/ "
        "for a full run, a new temporary folder for --quick)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with radiography/ and xray_ct/ phantom sets (generated when missing; "
        "default: a temporary folder)",
    )
    parser.add_argument(
        "--checkpoints-dir",
        type=Path,
        help="checkpoint folders per model key for the app case, e.g. outputs/demo/checkpoints "
        "(default: randomly initialised demo models)",
    )
    parser.add_argument(
        "--app-file",
        type=Path,
        default=REPOSITORY_ROOT / "spaces_app" / "app.py",
        help="the Gradio app timed by the app case",
    )
    parser.add_argument("--app-requests", type=int, help="requests per app endpoint")
    parser.add_argument("--training-steps", type=int, help="optimizer steps per loop")
    parser.add_argument("--data-rounds", type=int, help="alternating data pipeline rounds")
    return parser.parse_args(argv)


def settings_from(arguments: argparse.Namespace) -> BenchmarkSettings:
    """The :class:`BenchmarkSettings` a command line asks for."""
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
    return (
        BenchmarkSettings.quick_run(**changes) if arguments.quick else BenchmarkSettings(**changes)
    )


def output_folder(arguments: argparse.Namespace) -> Path:
    """Where the results go: ``--output-dir``, else the repository's ``benchmarks/`` for a full
    run, else (``--quick``) a new temporary folder, so quick numbers never replace the committed
    full results."""
    if arguments.output_dir is not None:
        return arguments.output_dir
    if arguments.quick:
        return Path(tempfile.mkdtemp(prefix="hf_covid_benchmark_quick_"))
    return REPOSITORY_ROOT / "benchmarks"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks the command line asks for and write ``results.json`` and
    ``results.md``.

    Returns:
        The exit status (0).

    Raises:
        FileNotFoundError: no app file (run from a source checkout, or pass ``--app-file``).
    """
    arguments = parse_arguments(argv)
    if not arguments.app_file.exists():
        raise FileNotFoundError(
            f"{arguments.app_file} does not exist: run the benchmarks from a source checkout or "
            "pass --app-file"
        )
    logging.basicConfig(level=logging.WARNING)
    settings = settings_from(arguments)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hf_covid_benchmark_") as scratch:
        results = run_benchmarks(
            settings,
            app_file=arguments.app_file,
            work_dir=scratch,
            data_dir=arguments.data_dir,
            checkpoints_dir=arguments.checkpoints_dir,
            cases=tuple(arguments.cases),
            progress=lambda step: print(
                f"[{time.perf_counter() - start:6.1f} s] {step}", flush=True
            ),
        )
    results["total_seconds"] = time.perf_counter() - start
    output_dir = output_folder(arguments)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "results.md").write_text(results_markdown(results) + "\n")
    print(f"wrote {output_dir / 'results.json'} and results.md in {results['total_seconds']:.0f} s")
    return 0
