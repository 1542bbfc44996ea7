"""The benchmark suite: every case against its baseline, in one process, on phantom data."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.synthetic import generate_radiography, generate_xray_ct
from ..registry import get_model_family, model_families
from .app_latency import measure_app_endpoints
from .cuda import NO_CUDA_NOTE, resnet50_training_throughput
from .data_pipeline import compare_data_pipelines
from .demo_models import build_demo_model, load_demo_recipes, save_random_checkpoints
from .inference_speed import compare_inference_variants, inference_variants
from .lung_crop import measure_lung_crop
from .onnx_runtime import compare_onnx_to_eager
from .startup import measure_startup, startup_commands
from .training_loop import compare_training_loops

__all__ = [
    "CASES",
    "BenchmarkSettings",
    "machine_info",
    "one_family_per_exporter",
    "prepare_phantom_data",
    "run_benchmarks",
]

CASES: tuple[str, ...] = (
    "startup",
    "data",
    "training",
    "inference",
    "lung_crop",
    "onnx",
    "app",
    "cuda",
)
"""The benchmark cases, in the order they run."""
LUNG_CROP_MODEL = "resnet"
"""The classifier the lung-crop case measures (the study's best on unseen hospital films)."""


def one_family_per_exporter() -> tuple[str, ...]:
    """The first registered family with a demo recipe of each ONNX exporter, by key (the quick
    run's onnx case: every export path, once)."""
    chosen: dict[str, str] = {}
    for family in model_families():
        if "demo" in family.recipes:
            chosen.setdefault(family.onnx_exporter, family.key)
    return tuple(chosen.values())


@dataclass
class BenchmarkSettings:
    """Sizes and repeats of one benchmark run; :meth:`quick_run` for CI.

    Attributes:
        quick: The small CI variant (recorded in the results).
        startup_repeats: Interleaved rounds of the start-up case (the median is reported).
        startup_commands: Names of the start-up case's commands to time (None: all of
            :func:`~hf_covid.benchmarks.startup.startup_commands`).
        images_per_class: Phantoms per class for the data case (4 classes).
        source_image_size: Side of the generated phantoms.
        data_image_size: Target size of the data case.
        data_rounds: Alternating measurements of each data pipeline.
        num_workers: DataLoader workers (data and training cases).
        model_image_size: Input size of the training and inference cases (None: each demo
            recipe's own ``image_size``).
        training_steps: Optimizer steps per training measurement.
        training_warmup_steps: Steps excluded from the training timings.
        training_batch_size: Batch size of the training case (None: the recipe's).
        latency_repeats: Batch-1 forwards timed per inference variant.
        throughput_repeats: Batch-32 forwards timed per inference variant.
        lung_crop_repeats: Predictions timed with and without the lung crop.
        compile: Also measure ``torch.compile`` (slow to compile on CPU: full run only).
        onnx_models: Model keys of the onnx case (None: every registered family).
        app_requests: Requests per app endpoint (sent one after the other).
        xray_ct_images_per_class: Phantoms per class of the X-ray + CT set (dual-input model).
        resnet50_batch_size: Batch of the ResNet-50 reference measurement (CUDA only).
        resnet50_steps: Timed steps of the ResNet-50 reference measurement (CUDA only).
    """

    quick: bool = False
    startup_repeats: int = 5
    startup_commands: tuple[str, ...] | None = None
    images_per_class: int = 500
    source_image_size: int = 299
    data_image_size: int = 224
    data_rounds: int = 1
    num_workers: int = 2
    model_image_size: int | None = None
    training_steps: int = 25
    training_warmup_steps: int = 5
    training_batch_size: int | None = None
    latency_repeats: int = 30
    throughput_repeats: int = 3
    lung_crop_repeats: int = 30
    compile: bool = True
    onnx_models: tuple[str, ...] | None = None
    app_requests: int = 20
    xray_ct_images_per_class: int = 200
    resnet50_batch_size: int = 256
    resnet50_steps: int = 30

    @classmethod
    def quick_run(cls, **changes: Any) -> BenchmarkSettings:
        """A small version of every case (under 2 minutes on 2 cores), without compilation."""
        values = {
            "quick": True,
            "startup_repeats": 1,
            "startup_commands": ("import torch", "hf-covid --help"),  # the cheap ratio only
            "images_per_class": 25,
            "source_image_size": 64,
            "data_image_size": 32,
            "data_rounds": 1,
            "num_workers": 0,
            "model_image_size": 32,
            "training_steps": 4,
            "training_warmup_steps": 1,
            "training_batch_size": 8,
            "latency_repeats": 5,
            "throughput_repeats": 1,
            "lung_crop_repeats": 3,
            "compile": False,
            "onnx_models": one_family_per_exporter(),
            "app_requests": 2,
            "xray_ct_images_per_class": 8,
            "resnet50_batch_size": 32,
            "resnet50_steps": 5,
        }
        return cls(**{**values, **changes})


def machine_info() -> dict[str, Any]:
    """The machine the numbers come from: cores, threads, versions, device, load average."""
    cuda = torch.cuda.is_available()
    load_1, load_5, load_15 = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda_available": cuda,
        "load_average": [load_1, load_5, load_15],
        # More runnable processes than cores: other jobs shared the machine during the run.
        "shared_machine": load_1 > (os.cpu_count() or 1),
    }


def prepare_phantom_data(data_dir: Path, settings: BenchmarkSettings) -> dict[str, Any]:
    """The phantom sets of the run under ``data_dir``, generated when missing.

    Returns:
        ``radiography`` and ``xray_ct`` (the folders, keyed by dataset kind) and
        ``generation_seconds``.
    """
    radiography, xray_ct = data_dir / "radiography", data_dir / "xray_ct"
    start = time.perf_counter()
    if not radiography.exists():
        generate_radiography(
            radiography,
            images_per_class=settings.images_per_class,
            image_size=settings.source_image_size,
            mask_size=min(256, settings.source_image_size),
            progress=False,
        )
    if not xray_ct.exists():
        generate_xray_ct(
            xray_ct, images_per_class=settings.xray_ct_images_per_class, progress=False
        )
    return {
        "radiography": radiography,
        "xray_ct": xray_ct,
        "generation_seconds": time.perf_counter() - start,
    }


def run_benchmarks(
    settings: BenchmarkSettings,
    *,
    app_file: str | Path,
    work_dir: str | Path,
    data_dir: str | Path | None = None,
    checkpoints_dir: str | Path | None = None,
    cases: tuple[str, ...] = CASES,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every benchmark case against its baseline in this process.

    Every registered model family with a demo recipe (``recipes["demo"]`` of its record) is
    timed, from that recipe and on the phantom set of its dataset kind.

    Args:
        settings: Sizes and repeats.
        app_file: ``spaces_app/app.py``.
        work_dir: Scratch folder (generated data, datasets cache, random checkpoints).
        data_dir: Folder with ``radiography/`` and ``xray_ct/`` phantom sets (generated there
            when missing; default: under ``work_dir``).
        checkpoints_dir: Checkpoint folders per model key for the app case (default: random
            checkpoints of the demo recipes).
        cases: Cases to run (of :data:`CASES`).
        progress: Called with the name of each step.

    Returns:
        ``{"settings", "machine", "startup", "data", "training", "inference", "onnx", "app",
        "cuda"}``; a case not run is absent, a case that cannot run here holds a ``note``.
    """
    work_dir = Path(work_dir)
    recipes = load_demo_recipes()
    results: dict[str, Any] = {"settings": asdict(settings), "machine": machine_info()}
    if "startup" in cases:  # first, before this process loads the models and the data
        progress("startup: each command in fresh processes against the import it cannot avoid")
        commands = startup_commands()
        chosen = settings.startup_commands or tuple(commands)
        results["startup"] = measure_startup(
            {name: commands[name] for name in chosen}, repeats=settings.startup_repeats
        )
    cuda = torch.cuda.is_available()
    data: dict[str, Any] = {}
    if set(cases) & {"data", "training", "lung_crop", "app", "cuda"}:  # they read phantoms
        progress("preparing the phantom data")
        data = prepare_phantom_data(Path(data_dir) if data_dir else work_dir / "data", settings)
        results["settings"]["data_generation_seconds"] = data["generation_seconds"]
    cache_dir = work_dir / "datasets_cache"

    if "data" in cases:
        # With augmentation: the training pipeline. Without: the decoding cost alone, since the
        # augmentation (the same in both pipelines, one batched call per batch) bounds the ratio.
        results["data"] = {}
        for name, augment in (("with_augmentation", True), ("without_augmentation", False)):
            progress(f"data ({name}): preprocessed pipeline against PIL open + resize")
            results["data"][name] = compare_data_pipelines(
                data["radiography"],
                image_size=settings.data_image_size,
                num_workers=settings.num_workers,
                rounds=settings.data_rounds,
                augment=augment,
                cache_dir=cache_dir,
            )

    def image_size(recipe: dict[str, Any]) -> int:
        return settings.model_image_size or recipe["image_size"]

    def training_case(precision: dict[str, Any]) -> dict[str, Any]:
        rows = {}
        for key, recipe in recipes.items():
            progress(f"training: {key}, Trainer against a plain loop {precision or ''}")
            overrides = {"image_size": image_size(recipe), **precision}
            if settings.training_batch_size:
                overrides["per_device_train_batch_size"] = settings.training_batch_size
            rows[key] = compare_training_loops(
                recipe,
                data[get_model_family(key).dataset_kind],
                steps=settings.training_steps,
                warmup_steps=settings.training_warmup_steps,
                cache_dir=cache_dir,
                dataloader_num_workers=settings.num_workers,
                # The small X-ray + CT set is 2 batches an epoch: without persistent workers both
                # loops would mostly time worker start-up.
                dataloader_persistent_workers=settings.num_workers > 0,
                **overrides,
            )
        return rows

    if "training" in cases:
        results["training"] = training_case({"mixed_precision": "no"})

    def inference_case(device: str) -> dict[str, Any]:
        rows = {}
        for key, recipe in recipes.items():
            progress(f"inference: {key} on {device}")
            rows[key] = compare_inference_variants(
                build_demo_model(recipe),
                image_size=image_size(recipe),
                variants=inference_variants(settings.compile, device == "cuda"),
                device=device,
                latency_repeats=settings.latency_repeats,
                throughput_repeats=settings.throughput_repeats,
            )
        return rows

    if "inference" in cases:
        results["inference"] = inference_case("cpu")

    if "lung_crop" in cases:
        progress("lung crop: serving latency with and without, the preprocessing it adds")
        results["lung_crop"] = measure_lung_crop(
            recipes[LUNG_CROP_MODEL],
            recipes["lung_unet"],
            data["radiography"],
            work_dir / "lung_crop",
            image_size=image_size(recipes[LUNG_CROP_MODEL]),
            repeats=settings.lung_crop_repeats,
        )

    if "onnx" in cases:
        results["onnx"] = {
            "load_average": list(os.getloadavg()),
            "threads": torch.get_num_threads(),  # onnxruntime's intra-op threads too
            "models": {},
        }
        for key in settings.onnx_models or recipes:
            progress(f"onnx: {key}, onnxruntime against eager PyTorch on the CPU")
            results["onnx"]["models"][key] = compare_onnx_to_eager(
                build_demo_model(recipes[key]),
                image_size=image_size(recipes[key]),
                work_dir=work_dir / "onnx" / key,
                latency_repeats=settings.latency_repeats,
                throughput_repeats=settings.throughput_repeats,
            )
        results["onnx"]["load_average_after"] = list(os.getloadavg())
        # Other jobs on the cores make the timings slower and their ratios less certain.
        results["onnx"]["shared_machine"] = max(
            results["onnx"]["load_average"][0], results["onnx"]["load_average_after"][0]
        ) > (os.cpu_count() or 1)

    if "app" in cases:
        progress("app: end-to-end predict latency per tab through gradio_client")
        if checkpoints_dir:
            checkpoints = {key: str(Path(checkpoints_dir) / key) for key in recipes}
        else:
            checkpoints = save_random_checkpoints(
                recipes, work_dir / "checkpoints", settings.model_image_size
            )
        xray = next((data["radiography"] / "COVID" / "images").glob("*.png"))
        ct = next(path for path in sorted((data["xray_ct"] / "CT").rglob("*")) if path.is_file())
        results["app"] = measure_app_endpoints(
            app_file, checkpoints, xray=xray, ct=ct, n_requests=settings.app_requests
        )

    if "cuda" in cases:
        if not cuda:
            results["cuda"] = {"note": NO_CUDA_NOTE}
        else:
            progress("cuda: bf16 + channels_last against fp32, ResNet-50 reference")
            fp32 = results.get("training") or training_case({"mixed_precision": "no"})
            bf16 = training_case({"mixed_precision": "bf16", "channels_last": True})
            for key, row in bf16.items():
                row["bf16_to_fp32"] = (
                    row["trainer_samples_per_second"] / fp32[key]["trainer_samples_per_second"]
                )
            results["cuda"] = {
                "training_fp32": fp32,
                "training_bf16_channels_last": bf16,
                "inference": inference_case("cuda"),
                "resnet50_training": resnet50_training_throughput(
                    batch_size=settings.resnet50_batch_size, steps=settings.resnet50_steps
                ),
            }
    results["machine"]["load_average_after"] = list(os.getloadavg())
    return results
