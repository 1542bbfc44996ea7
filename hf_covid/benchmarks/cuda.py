"""The GPU check (issue 18): the CUDA training paths run once, measured against published numbers.

:func:`run_gpu_check` does, on synthetic phantoms and randomly initialised weights (nothing is
downloaded):

1. trains every demo model for a few hundred steps with ``mixed_precision="auto"`` (bf16 where
   the GPU has it), and checks that the training loss falls and that the saved checkpoint,
   reloaded on the CPU, gives the logits it gives on the GPU;
2. times ResNet-50 training at 224 px three ways: a plain loop on synthetic tensors already in
   GPU memory (the data-free upper bound), the project's Trainer pipeline (preprocessed cache,
   batched augmentation, bf16, channels_last, pinned memory, DataLoader workers), and the same
   with ``torch.compile``, each next to NVIDIA's published A100 figure
   (:data:`RESNET50_A100_REFERENCE`);
3. times the data pipeline alone (DataLoader with the Trainer's collator and workers), to show
   whether data loading holds the GPU back.

On a machine without CUDA, ``smoke=True`` runs the same code at tiny sizes in seconds (that is
what the tests run); its numbers mean nothing. ``scripts/gpu_check.sh`` is the command line.
Research software: these are speed and plumbing checks, not a diagnostic claim.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_checkpoint
from ..data.synthetic import generate_radiography, generate_xray_ct
from ..models import build_resnet_classifier
from ..registry import example_inputs, get_model_family
from ..training import build_trainer, parse_arguments, train
from .data_pipeline import measure_dataloader_throughput
from .demo_models import load_demo_recipes
from .timing import timed_calls, to_memory_format
from .training_loop import compare_training_loops

__all__ = [
    "CUDA_SIZES",
    "NO_CUDA_NOTE",
    "RESNET50_A100_REFERENCE",
    "SMOKE_SIZES",
    "GpuCheckSizes",
    "format_gpu_check_table",
    "main",
    "resnet50_training_throughput",
    "run_gpu_check",
]

RESNET50_A100_REFERENCE: dict[str, Any] = {
    "images_per_second": 2470.0,
    "source": "NVIDIA Deep Learning Examples, ResNet-50 v1.5 PyTorch, 1x A100 80GB, AMP, batch 256",
    "url": "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/"
    "ConvNets/resnet50v1.5",
}
"""NVIDIA's published ResNet-50 v1.5 training throughput on one A100 80GB (AMP, batch 256)."""

NO_CUDA_NOTE = "skipped: no CUDA device"
"""What the CUDA case records on a machine without CUDA."""

RESULTS_FILE = "results_cuda.json"
TABLE_FILE = "results_cuda.md"


@dataclass(frozen=True)
class GpuCheckSizes:
    """How large each part of the check is.

    Attributes:
        images_per_class: Phantoms per class in each synthetic data set.
        phantom_size: Side of the Radiography phantoms (the X-ray + CT ones vary in size).
        demo_steps: Optimizer steps per demo model.
        demo_image_size: Image size of the demo models (None: each recipe's).
        logging_steps: Steps between logged training losses.
        resnet_image_size: ResNet input side.
        resnet_batch_size: ResNet batch size.
        resnet_steps: Timed ResNet steps per loop, warm-up included.
        resnet_warmup_steps: Steps left out of the ResNet timings.
        resnet_config_overrides: ResNet config changes (empty: ResNet-50).
        loader_workers: DataLoader worker processes.
        torch_compile: Also time the Trainer pipeline with ``torch.compile`` (minutes of
            compiling on a CPU, so the smoke run leaves it out).
    """

    images_per_class: int
    phantom_size: int
    demo_steps: int
    demo_image_size: int | None
    logging_steps: int
    resnet_image_size: int
    resnet_batch_size: int
    resnet_steps: int
    resnet_warmup_steps: int
    resnet_config_overrides: dict[str, Any] = field(default_factory=dict)
    loader_workers: int = 0
    torch_compile: bool = True


CUDA_SIZES = GpuCheckSizes(
    images_per_class=500,
    phantom_size=256,
    demo_steps=300,
    demo_image_size=None,
    logging_steps=10,
    resnet_image_size=224,
    resnet_batch_size=256,
    resnet_steps=50,
    resnet_warmup_steps=10,
    loader_workers=16,
)
"""The run on one H100/H200-class GPU: about 8 minutes, start-up included."""

SMOKE_SIZES = GpuCheckSizes(
    images_per_class=6,
    phantom_size=48,
    demo_steps=4,
    demo_image_size=32,
    logging_steps=1,
    resnet_image_size=32,
    resnet_batch_size=8,
    resnet_steps=5,
    resnet_warmup_steps=2,
    resnet_config_overrides={
        "embedding_size": 8,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "layer_type": "basic",
    },
    loader_workers=0,
    torch_compile=False,
)
"""The CPU smoke run: the same code at sizes that take seconds."""


def resnet50_training_throughput(
    *,
    batch_size: int = 256,
    steps: int = 30,
    warmup_steps: int = 5,
    image_size: int = 224,
    device: str = "cuda",
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """ResNet-50 training images/s in a plain loop on synthetic tensors already on the device
    (bf16 autocast on CUDA, channels_last, SGD): the data-free upper bound, next to
    :data:`RESNET50_A100_REFERENCE`.

    Returns:
        ``images_per_second``, ``batch_size``, ``image_size``, ``reference`` and
        ``fraction_of_reference``.
    """
    target = torch.device(device)
    model = build_resnet_classifier(pretrained=None, config_overrides=config_overrides)
    model = model.to(target, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    inputs = to_memory_format(
        {
            name: value.to(target)
            for name, value in example_inputs(model.config, batch_size, image_size, True).items()
        },
        channels_last=True,
    )

    def step() -> None:
        with torch.autocast(target.type, dtype=torch.bfloat16, enabled=target.type == "cuda"):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    timed_calls(step, warmup_steps, target)
    seconds = sum(timed_calls(step, steps, target))
    images_per_second = batch_size * steps / seconds
    return {
        "images_per_second": images_per_second,
        "batch_size": batch_size,
        "image_size": image_size,
        "reference": RESNET50_A100_REFERENCE,
        "fraction_of_reference": images_per_second / RESNET50_A100_REFERENCE["images_per_second"],
    }


def _make_data(folder: Path, sizes: GpuCheckSizes) -> dict[str, Path]:
    """Phantoms of both layouts, by dataset kind (``radiography``, ``xray_ct``)."""
    return {
        "radiography": generate_radiography(
            folder / "radiography",
            images_per_class=sizes.images_per_class,
            image_size=sizes.phantom_size,
            mask_size=sizes.phantom_size,
            progress=False,
        ),
        "xray_ct": generate_xray_ct(
            folder / "xray_ct", images_per_class=sizes.images_per_class, progress=False
        ),
    }


def _training_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _logits_on(checkpoint: Path, device: torch.device, inputs: dict[str, torch.Tensor]):
    model, _ = load_checkpoint(checkpoint)
    model = model.to(device).eval()
    with torch.no_grad():
        outputs = model(**{name: value.to(device) for name, value in inputs.items()})
    return outputs.logits.float().cpu()


def check_demo_training(
    key: str, recipe: dict[str, Any], data_dir: Path, output_dir: Path, sizes: GpuCheckSizes
) -> dict[str, Any]:
    """Train one demo model for ``sizes.demo_steps`` steps with ``mixed_precision="auto"``; check
    that the loss falls and that the checkpoint gives the same logits on the CPU as on the
    training device (fp32, TF32 off).

    Returns:
        ``model``, ``steps``, ``seconds``, ``mixed_precision`` (what "auto" chose), the first
        and last logged losses, ``loss_fell``, ``max_logit_difference`` and ``logits_match``.
    """
    values = {
        **recipe,
        "data_dir": str(data_dir),
        "output_dir": str(output_dir),
        "max_steps": sizes.demo_steps,
        "mixed_precision": "auto",
        "logging_steps": sizes.logging_steps,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": min(sizes.loader_workers, 4),
    }
    if sizes.demo_image_size is not None:
        values["image_size"] = sizes.demo_image_size
    model_args, data_args, training_args = parse_arguments([], recipe=values)
    started = time.perf_counter()
    train(model_args, data_args, training_args)
    seconds = time.perf_counter() - started
    losses = _training_losses(output_dir)
    window = max(1, len(losses) // 4)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window

    model, _ = load_checkpoint(output_dir)
    inputs = example_inputs(model.config, 4, data_args.image_size)
    device = training_args.device
    matmul_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        on_device = _logits_on(output_dir, device, inputs)
        on_cpu = _logits_on(output_dir, torch.device("cpu"), inputs)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (
            matmul_tf32,
            cudnn_tf32,
        )
    difference = float((on_device - on_cpu).abs().max())
    return {
        "model": key,
        "steps": sizes.demo_steps,
        "seconds": seconds,
        "mixed_precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no",
        "first_losses_mean": first,
        "last_losses_mean": last,
        "loss_fell": last < first,
        "max_logit_difference": difference,
        "logits_match": difference <= 1e-3 * max(1.0, float(on_cpu.abs().max())),
    }


def _resnet_recipe(recipes: dict[str, dict[str, Any]], sizes: GpuCheckSizes) -> dict[str, Any]:
    """The ResNet demo recipe turned into the throughput recipe: the check's sizes, channels_last,
    bf16 where there is a GPU, pinned memory and persistent workers."""
    return {
        **recipes["resnet"],
        "config_overrides": sizes.resnet_config_overrides,
        "image_size": sizes.resnet_image_size,
        "per_device_train_batch_size": sizes.resnet_batch_size,
        "mixed_precision": "auto",
        "channels_last": True,
        "dataloader_num_workers": sizes.loader_workers,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "dataloader_persistent_workers": sizes.loader_workers > 0,
    }


def measure_data_pipeline(
    recipe: dict[str, Any], data_dir: Path, sizes: GpuCheckSizes
) -> dict[str, Any]:
    """Samples/s of the Trainer's data pipeline alone: its DataLoader settings and collator
    (augmentation included) over the preprocessed training split, no model."""
    with tempfile.TemporaryDirectory() as scratch:
        values = {**recipe, "data_dir": str(data_dir), "output_dir": scratch, "report_to": "none"}
        trainer, data, _ = build_trainer(*parse_arguments([], recipe=values))
        result = measure_dataloader_throughput(
            data.splits["train"],
            trainer.data_collator,
            batch_size=sizes.resnet_batch_size,
            num_workers=sizes.loader_workers,
            epochs=3,
        )
    return {**result, "num_workers": sizes.loader_workers}


def run_gpu_check(output_dir: str | Path, *, smoke: bool = False) -> dict[str, Any]:
    """Run the whole check and write ``results_cuda.json`` and ``results_cuda.md``.

    Args:
        output_dir: Where the two result files go (``benchmarks/`` for the real run).
        smoke: Tiny sizes (:data:`SMOKE_SIZES`), for a machine without CUDA or a test.

    Returns:
        The results that ``results_cuda.json`` holds.

    Raises:
        RuntimeError: ``smoke`` is False and there is no CUDA device.
    """
    if not smoke and not torch.cuda.is_available():
        raise RuntimeError(f"{NO_CUDA_NOTE}: run with smoke=True (--smoke) for the CPU path")
    sizes = SMOKE_SIZES if smoke else CUDA_SIZES
    device = "cuda" if torch.cuda.is_available() else "cpu"
    recipes = load_demo_recipes()
    results: dict[str, Any] = {
        "smoke": smoke,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()} CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "sizes": asdict(sizes),
    }
    with tempfile.TemporaryDirectory() as scratch:
        data = _make_data(Path(scratch) / "data", sizes)
        results["demo_training"] = [
            check_demo_training(
                key,
                recipe,
                data[get_model_family(recipe["model_type"]).dataset_kind],
                Path(scratch) / "checkpoints" / key,
                sizes,
            )
            for key, recipe in recipes.items()
        ]
        resnet = _resnet_recipe(recipes, sizes)
        loop_sizes = {"steps": sizes.resnet_steps, "warmup_steps": sizes.resnet_warmup_steps}
        data_free = resnet50_training_throughput(
            batch_size=sizes.resnet_batch_size,
            image_size=sizes.resnet_image_size,
            device=device,
            config_overrides=sizes.resnet_config_overrides,
            **loop_sizes,
        )
        pipelines = {"trainer": compare_training_loops(resnet, data["radiography"], **loop_sizes)}
        if sizes.torch_compile:
            pipelines["trainer_compiled"] = compare_training_loops(
                resnet, data["radiography"], torch_compile=True, **loop_sizes
            )
        loader = measure_data_pipeline(resnet, data["radiography"], sizes)
    reference = RESNET50_A100_REFERENCE["images_per_second"]
    results["resnet50"] = {
        "data_free": data_free,
        **{
            name: {
                **measured,
                "fraction_of_reference": measured["trainer_samples_per_second"] / reference,
                "fraction_of_data_free": measured["trainer_samples_per_second"]
                / data_free["images_per_second"],
            }
            for name, measured in pipelines.items()
        },
        "reference": RESNET50_A100_REFERENCE,
    }
    results["data_pipeline"] = {
        **loader,
        "model_images_per_second": data_free["images_per_second"],
        "data_loading_is_the_bottleneck": loader["samples_per_second"]
        < data_free["images_per_second"],
    }
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    (output / TABLE_FILE).write_text(format_gpu_check_table(results))
    return results


def format_gpu_check_table(results: dict[str, Any]) -> str:
    """The check's results as Markdown: one table of the demo models, one of the speeds."""
    lines = [
        f"# GPU check on {results['device']} (torch {results['torch']}, CUDA {results['cuda']})",
        "",
        "Synthetic phantoms, random initial weights"
        + (" - SMOKE RUN at tiny sizes: the numbers mean nothing." if results["smoke"] else "."),
        "",
        "| model | steps | precision | loss first -> last | loss fell | CPU logits match | s |",
        "|---|---:|---|---|---|---|---:|",
    ]
    for row in results["demo_training"]:
        lines.append(
            f"| {row['model']} | {row['steps']} | {row['mixed_precision']} | "
            f"{row['first_losses_mean']:.3f} -> {row['last_losses_mean']:.3f} | "
            f"{'yes' if row['loss_fell'] else 'NO'} | "
            f"{'yes' if row['logits_match'] else 'NO'} ({row['max_logit_difference']:.1e}) | "
            f"{row['seconds']:.0f} |"
        )
    resnet, loader = results["resnet50"], results["data_pipeline"]
    reference = resnet["reference"]["images_per_second"]
    lines += [
        "",
        "| ResNet training | images/s | of the 2,470 reference | of the data-free loop |",
        "|---|---:|---:|---:|",
        f"| plain loop, tensors on the device (data-free) | "
        f"{resnet['data_free']['images_per_second']:,.0f} | "
        f"{resnet['data_free']['images_per_second'] / reference:.0%} | 100% |",
    ]
    for name, label in (("trainer", "Trainer pipeline"), ("trainer_compiled", "... torch.compile")):
        row = resnet.get(name)
        if row is None:
            lines.append(f"| {label} | not run | | |")
            continue
        lines.append(
            f"| {label} | {row['trainer_samples_per_second']:,.0f} | "
            f"{row['fraction_of_reference']:.0%} | {row['fraction_of_data_free']:.0%} |"
        )
    lines += [
        "",
        f"Data pipeline alone ({loader['num_workers']} workers): "
        f"{loader['samples_per_second']:,.0f} samples/s against the model's "
        f"{loader['model_images_per_second']:,.0f} images/s: data loading "
        + ("holds the GPU back." if loader["data_loading_is_the_bottleneck"] else "keeps up."),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the GPU check (``scripts/gpu_check.sh``). Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="where the result files go")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (no CUDA needed)")
    args = parser.parse_args(argv)
    results = run_gpu_check(args.output_dir, smoke=args.smoke)
    print(format_gpu_check_table(results))
    failed = [
        row["model"]
        for row in results["demo_training"]
        if not (row["logits_match"] and (row["loss_fell"] or args.smoke))
    ]
    if failed:
        print(f"FAILED: {', '.join(failed)} (loss did not fall or CPU logits differ)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
