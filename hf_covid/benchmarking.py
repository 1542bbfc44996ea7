"""Data pipeline throughput: "preprocess once, augment per epoch" against the naive pipeline.

The naive pipeline opens and resizes every image with PIL on every access (every epoch), as a
torchvision ``ImageFolder`` with a ``Resize`` transform does. The preprocessed pipeline reads the
uint8 images that `hf_covid.data.preprocess_for_training` stored once. Both go through the same
`torch.utils.data.DataLoader` settings and the same `ChestBatchCollator` (optionally with the
same augmentation), so the difference is the per-epoch decoding and resizing alone.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage
from torch.utils.data import DataLoader


class NaiveImageFolderDataset(torch.utils.data.Dataset):
    """Baseline: PIL open, convert and resize on every access (no cache).

    Args:
        split: A split of `build_radiography_dataset` (paths in the image and mask columns).
        image_size: Side of the square output.
        image_column: Image column.
        mask_column: Mask column, or None.
        label_column: Label column.
    """

    def __init__(
        self,
        split: Dataset,
        image_size: int,
        image_column: str = "image",
        mask_column: str | None = "mask",
        label_column: str = "label",
    ):
        columns = [column for column in (image_column, mask_column) if column]
        for column in columns:
            split = split.cast_column(column, Image(decode=False))
        self.image_paths = [value["path"] for value in split[image_column]]
        self.mask_paths = (
            [value["path"] if value else None for value in split[mask_column]]
            if mask_column
            else None
        )
        self.labels = list(split[label_column])
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.image_paths)

    def _open(self, path: str, resample: PILImage.Resampling) -> np.ndarray:
        with PILImage.open(path) as image:
            size = (self.image_size, self.image_size)
            return np.asarray(image.convert("L").resize(size, resample))

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = self._open(self.image_paths[index], PILImage.Resampling.BILINEAR)
        example = {
            "pixel_values": torch.from_numpy(pixels.copy())[None],
            "labels": self.labels[index],
        }
        if self.mask_paths is not None:
            mask_path = self.mask_paths[index]
            mask = (
                self._open(mask_path, PILImage.Resampling.NEAREST) > 127
                if mask_path
                else np.zeros((self.image_size, self.image_size), dtype=bool)
            )
            example["lung_mask"] = torch.from_numpy(mask.astype(np.uint8))[None]
        return example


class _PeakMemory:
    """Peak memory (MB) of this process and its children (DataLoader workers).

    Proportional set size (PSS) where the system reports it: pages shared by forked workers
    (torch, the memory-mapped Arrow file) are divided among them, not counted once per worker.
    """

    def __init__(self, interval: float = 0.1):
        import psutil  # installed with accelerate

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _memory(process) -> int:
        try:
            return process.memory_full_info().pss
        except AttributeError:  # no PSS on this system
            return process.memory_info().rss

    def _current(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += self._memory(process)
            except Exception:  # a worker that just exited
                continue
        return total / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._current())
            self._stop.wait(self.interval)

    def __enter__(self) -> _PeakMemory:
        self.baseline = self._current()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def measure_dataloader_throughput(
    dataset: torch.utils.data.Dataset,
    collate_fn: Callable[[list[dict]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    epochs: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Samples per second a shuffled `DataLoader` delivers, and the memory it takes.

    The first epoch includes worker start-up and is reported separately; ``samples_per_second``
    is over the later epochs (at least one).

    Args:
        dataset: Map-style dataset.
        collate_fn: Batch function (e.g. `ChestBatchCollator`).
        batch_size: Batch size.
        num_workers: DataLoader worker processes (kept alive between epochs).
        epochs: Epochs to run, at least 2.
        seed: Shuffle seed.

    Returns:
        ``samples_per_second``, ``first_epoch_samples_per_second``, ``samples``, ``seconds``,
        ``peak_memory_mb`` (this process plus workers, PSS) and ``memory_increase_mb`` (peak
        minus the memory before the loader started).
    """
    if epochs < 2:
        raise ValueError(f"epochs must be at least 2 (the first one warms up), got {epochs}")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    timings = []
    with _PeakMemory() as memory:
        for _ in range(epochs):
            start, samples = time.perf_counter(), 0
            for batch in loader:
                samples += len(batch["pixel_values"])
            timings.append((samples, time.perf_counter() - start))
    later_samples = sum(samples for samples, _ in timings[1:])
    later_seconds = sum(seconds for _, seconds in timings[1:])
    return {
        "samples_per_second": later_samples / later_seconds,
        "first_epoch_samples_per_second": timings[0][0] / timings[0][1],
        "samples": float(later_samples),
        "seconds": later_seconds,
        "peak_memory_mb": memory.peak,
        "memory_increase_mb": memory.peak - memory.baseline,
    }


def _pool(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Combine measurements of one pipeline: samples over seconds, the largest memory."""
    samples = sum(run["samples"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    return {
        "samples_per_second": samples / seconds,
        "samples": samples,
        "seconds": seconds,
        "per_round_samples_per_second": [run["samples_per_second"] for run in runs],
        "peak_memory_mb": max(run["peak_memory_mb"] for run in runs),
        "memory_increase_mb": max(run["memory_increase_mb"] for run in runs),
    }


def directory_size_mb(paths: list[Path]) -> float:
    """Total size of the given files, in MB."""
    return sum(path.stat().st_size for path in paths) / 2**20


def compare_data_pipelines(
    root: str | Path,
    *,
    image_size: int = 224,
    batch_size: int = 64,
    num_workers: int = 2,
    epochs: int = 2,
    rounds: int = 3,
    augment: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build a Radiography set, preprocess it, and measure both pipelines in the same run.

    Every image is measured: the set is built with all images in the train split. The two
    pipelines are measured in alternating rounds, so that a change in the machine's load (other
    jobs) during the run weighs on both alike.

    Args:
        root: Radiography-layout folder (e.g. from `hf_covid.data.synthetic.generate_radiography`).
        image_size: Training image size.
        batch_size: DataLoader batch size.
        num_workers: DataLoader workers for both pipelines.
        epochs: Epochs per measurement (the first is warm-up).
        rounds: Alternating measurements of each pipeline, pooled.
        augment: Apply `ChestAugmentation` in the collator of both pipelines.
        cache_dir: Datasets cache for the build and the preprocessed files.

    Returns:
        A dict with build times, preprocessing time, both measurements, their ratio and the
        preprocessed cache size.
    """
    from hf_covid.data import (
        ChestAugmentation,
        ChestBatchCollator,
        build_radiography_dataset,
        preprocess_for_training,
    )

    timings = {}
    for attempt in ("first", "second"):
        start = time.perf_counter()
        dataset_dict = build_radiography_dataset(
            root, split_ratios=(1.0, 0.0, 0.0), cache_dir=cache_dir
        )
        timings[f"{attempt}_build_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    processed = preprocess_for_training(dataset_dict, image_size=image_size, cache_dir=cache_dir)
    timings["preprocess_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    preprocess_for_training(dataset_dict, image_size=image_size, cache_dir=cache_dir)
    timings["preprocess_again_seconds"] = time.perf_counter() - start

    raw, fast = dataset_dict["train"], processed["train"]
    collator = ChestBatchCollator(augmentation=ChestAugmentation() if augment else None)
    settings = {"batch_size": batch_size, "num_workers": num_workers, "epochs": epochs}
    pipelines = {"naive": NaiveImageFolderDataset(raw, image_size), "preprocessed": fast}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, dataset in pipelines.items():
            runs[name].append(measure_dataloader_throughput(dataset, collator, **settings))
    naive, preprocessed = (_pool(runs[name]) for name in pipelines)
    cache_files = [
        Path(entry["filename"]) for name in processed for entry in processed[name].cache_files
    ]
    return {
        "images": len(raw),
        "image_size": image_size,
        "augment": augment,
        "rounds": rounds,
        **settings,
        **timings,
        "naive": naive,
        "preprocessed": preprocessed,
        "speedup": preprocessed["samples_per_second"] / naive["samples_per_second"],
        "preprocessed_cache_mb": directory_size_mb(cache_files),
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------
# The benchmark suite of scripts/benchmark.py: every case against its baseline, in one process.
# --------------------------------------------------------------------------------------------

# NVIDIA Deep Learning Examples, ResNet-50 v1.5 (PyTorch), training on one A100 80GB with
# automatic mixed precision (batch 256): about 2,470 images/s.
RESNET50_A100_REFERENCE = {
    "images_per_second": 2470.0,
    "source": "NVIDIA Deep Learning Examples, ResNet-50 v1.5 PyTorch, 1x A100 80GB, AMP, batch 256",
    "url": "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/"
    "ConvNets/resnet50v1.5",
}
NO_CUDA_NOTE = "skipped: no CUDA device"
DEMO_MODEL_TYPES = ("dual_input", "cnn_lstm", "dual_channel", "resnet", "lung_unet")


@dataclass
class BenchmarkSettings:
    """Sizes and repeats of one benchmark run; `BenchmarkSettings.quick_run()` for CI.

    Attributes:
        quick: The small CI variant (recorded in the results).
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
        compile: Also measure ``torch.compile`` (slow to compile on CPU: full run only).
        app_requests: Requests per app endpoint (sent one after the other).
        xray_ct_images_per_class: Phantoms per class of the X-ray + CT set (dual-input model).
        resnet50_batch_size: Batch of the ResNet-50 reference measurement (CUDA only).
        resnet50_steps: Timed steps of the ResNet-50 reference measurement (CUDA only).
    """

    quick: bool = False
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
    compile: bool = True
    app_requests: int = 20
    xray_ct_images_per_class: int = 200
    resnet50_batch_size: int = 256
    resnet50_steps: int = 30

    @classmethod
    def quick_run(cls, **changes: Any) -> BenchmarkSettings:
        """A small version of every case (under 2 minutes on 2 cores), without compilation."""
        values = {
            "quick": True,
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
            "compile": False,
            "app_requests": 2,
            "xray_ct_images_per_class": 8,
            "resnet50_batch_size": 32,
            "resnet50_steps": 5,
        }
        return cls(**{**values, **changes})


def machine_info() -> dict[str, Any]:
    """The machine the numbers come from: cores, threads, versions, device, load average."""
    import platform

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


def load_demo_recipes(configs_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The demo recipes (``<model>_synthetic.yaml``) of every model type, by model type."""
    from hf_covid.training import load_recipe

    recipes = {}
    for model_type in DEMO_MODEL_TYPES:
        path = Path(configs_dir) / f"{model_type}_synthetic.yaml"
        recipes[model_type] = load_recipe(path)
    return recipes


def _model_arguments(recipe: dict[str, Any]):
    from hf_covid.training import ModelArguments

    return ModelArguments(
        model_type=recipe["model_type"],
        config_overrides=recipe.get("config_overrides"),
        pretrained=recipe.get("pretrained"),
    )


def _class_names(model_type: str) -> tuple[str, ...]:
    from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

    return BINARY_LABELS if model_type == "dual_input" else RADIOGRAPHY_LABELS


def build_demo_model(recipe: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised model of a demo recipe (speed does not depend on the weights)."""
    from hf_covid.training import build_model

    return build_model(_model_arguments(recipe), _class_names(recipe["model_type"]))


def save_random_checkpoints(
    recipes: dict[str, dict[str, Any]], folder: str | Path, image_size: int | None = None
) -> dict[str, str]:
    """Save a randomly initialised checkpoint (model + image processor) per recipe.

    Returns:
        Model type -> checkpoint folder, as the app's ``AppConfig.checkpoints`` takes it.
    """
    from hf_covid.training import build_image_processor

    checkpoints = {}
    for model_type, recipe in recipes.items():
        target = Path(folder) / model_type
        build_demo_model(recipe).save_pretrained(target)
        size = image_size or recipe["image_size"]
        build_image_processor(_model_arguments(recipe), size).save_pretrained(target)
        checkpoints[model_type] = str(target)
    return checkpoints


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_memory_format(inputs: dict[str, torch.Tensor], channels_last: bool):
    if not channels_last:
        return inputs
    return {
        name: value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
        for name, value in inputs.items()
    }


def _timed_calls(call: Callable[[], Any], repeats: int, device: torch.device) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _synchronize(device)
        timings.append(time.perf_counter() - start)
    return timings


def measure_inference(
    model: torch.nn.Module,
    *,
    image_size: int,
    channels_last: bool = False,
    compile: bool = False,
    bf16: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    latency_repeats: int = 30,
    throughput_repeats: int = 3,
) -> dict[str, float]:
    """Batch-1 latency and batch-``batch_size`` throughput of one inference variant.

    The model is copied, so variants do not change each other. Warm-up calls (and the
    compilation, timed apart as ``warmup_seconds``) are excluded from the timings.

    Args:
        model: A model built from an hf_covid (or transformers ResNet) config.
        image_size: Input height and width.
        channels_last: Use the channels_last memory format for weights and inputs.
        compile: Run ``torch.compile(model)``.
        bf16: Autocast to bfloat16 (CUDA).
        device: Where to run.
        batch_size: Batch of the throughput measurement.
        latency_repeats: Timed batch-1 forwards.
        throughput_repeats: Timed batch forwards.

    Returns:
        ``batch1_p50_ms``, ``batch1_p95_ms``, ``throughput_samples_per_second``,
        ``warmup_seconds``.
    """
    from hf_covid.models import example_inputs

    device = torch.device(device)
    model = copy.deepcopy(model).eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    single, batch = (
        _to_memory_format(
            {
                name: value.to(device)
                for name, value in example_inputs(model.config, size, image_size).items()
            },
            channels_last,
        )
        for size in (1, batch_size)
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        start = time.perf_counter()
        for inputs in (single, single, batch):  # compiles both shapes when compiling
            forward(**inputs)
        _synchronize(device)
        warmup_seconds = time.perf_counter() - start
        latencies = _timed_calls(lambda: forward(**single), latency_repeats, device)
        batch_times = _timed_calls(lambda: forward(**batch), throughput_repeats, device)
    return {
        "batch1_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "batch1_p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "throughput_samples_per_second": batch_size * len(batch_times) / sum(batch_times),
        "warmup_seconds": warmup_seconds,
    }


def compare_inference_variants(
    model: torch.nn.Module,
    *,
    image_size: int,
    variants: dict[str, dict[str, bool]],
    device: str | torch.device = "cpu",
    **timing: int,
) -> dict[str, Any]:
    """Measure every variant of `variants` (name -> `measure_inference` flags) against the
    first one, the baseline: ``p50_ratio`` < 1 and ``throughput_ratio`` > 1 mean faster."""
    results: dict[str, Any] = {}
    baseline_name = next(iter(variants))
    for name, flags in variants.items():
        result = measure_inference(model, image_size=image_size, device=device, **flags, **timing)
        baseline = results.get(baseline_name, result)
        result["p50_ratio"] = result["batch1_p50_ms"] / baseline["batch1_p50_ms"]
        result["throughput_ratio"] = (
            result["throughput_samples_per_second"] / baseline["throughput_samples_per_second"]
        )
        results[name] = result
    faster = [
        name
        for name, result in results.items()
        if name != baseline_name
        and (result["p50_ratio"] < 0.95 or result["throughput_ratio"] > 1.05)
    ]
    return {"baseline": baseline_name, "variants": results, "helps": faster}


def compare_training_loops(
    recipe: dict[str, Any],
    data_dir: str | Path,
    *,
    steps: int,
    warmup_steps: int,
    cache_dir: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """HF Trainer against a plain PyTorch loop for one demo recipe
    (`hf_covid.training.measure_trainer_overhead`), with ``trainer_to_plain`` = their ratio.

    Args:
        recipe: A demo recipe (see `load_demo_recipes`).
        data_dir: Its data set (Radiography layout, or X-ray + CT for the dual-input model).
        steps: Optimizer steps per loop.
        warmup_steps: Steps excluded from the timings.
        cache_dir: Datasets cache.
        **overrides: Further recipe values (``image_size``, ``per_device_train_batch_size``,
            ``mixed_precision``, ``channels_last``, ...).
    """
    from hf_covid.training import measure_trainer_overhead, parse_arguments

    with tempfile.TemporaryDirectory() as scratch:
        values = {
            **recipe,
            "data_dir": str(data_dir),
            "output_dir": scratch,
            "cache_dir": str(cache_dir) if cache_dir else None,
            "disable_tqdm": True,
            "report_to": "none",
            **overrides,
        }
        arguments = parse_arguments([], recipe=values)
        result = measure_trainer_overhead(*arguments, steps=steps, warmup_steps=warmup_steps)
    result["trainer_to_plain"] = (
        result["trainer_samples_per_second"] / result["plain_samples_per_second"]
    )
    result["image_size"] = values.get("image_size")
    return result


def resnet50_training_throughput(
    *, batch_size: int = 256, steps: int = 30, warmup_steps: int = 5, image_size: int = 224
) -> dict[str, Any]:
    """ResNet-50 training images/s on CUDA (bf16 autocast, channels_last, SGD), next to
    NVIDIA's published A100 figure (`RESNET50_A100_REFERENCE`). Synthetic inputs, so the data
    pipeline is not part of the number."""
    from hf_covid.models import build_resnet_classifier, example_inputs

    device = torch.device("cuda")
    model = build_resnet_classifier(pretrained=None).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    inputs = _to_memory_format(
        {
            name: value.to(device)
            for name, value in example_inputs(model.config, batch_size, image_size, True).items()
        },
        channels_last=True,
    )

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    _timed_calls(step, warmup_steps, device)
    seconds = sum(_timed_calls(step, steps, device))
    images_per_second = batch_size * steps / seconds
    return {
        "images_per_second": images_per_second,
        "batch_size": batch_size,
        "image_size": image_size,
        "reference": RESNET50_A100_REFERENCE,
        "fraction_of_reference": images_per_second / RESNET50_A100_REFERENCE["images_per_second"],
    }


def free_loopback_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_app_module(app_file: str | Path):
    """``spaces_app/app.py`` as a module (a Space's app file is not a package)."""
    import importlib.util
    import sys

    name = "hf_covid_space_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, app_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def measure_app_endpoints(
    app_file: str | Path,
    checkpoints: dict[str, str],
    *,
    xray: str | Path,
    ct: str | Path,
    n_requests: int = 20,
) -> dict[str, Any]:
    """End-to-end predict latency of every app tab through ``gradio_client``, against the same
    prediction called in-process (``ChestPredictor.predict``): ``p50_ratio`` is the app's share.

    The app is served in this process on a free loopback port; requests are sent one after
    the other (latency, not load).

    Args:
        app_file: ``spaces_app/app.py``.
        checkpoints: Model type -> checkpoint folder (`save_random_checkpoints`).
        xray: A chest X-ray file.
        ct: A CT slice file.
        n_requests: Requests per endpoint (after one warm-up request).
    """
    from gradio_client import handle_file

    from hf_covid.inference import LatencyReport, load_served_models, measure_app_latency

    app = load_app_module(app_file)
    config = app.AppConfig(checkpoints=checkpoints, examples_dir=None)
    served = load_served_models(checkpoints, max_pixels=config.max_image_pixels)
    demo = app.build_demo(config, served)
    demo.launch(
        server_name="127.0.0.1",
        server_port=free_loopback_port(),
        prevent_thread_lock=True,
        quiet=True,
        **app.launch_options(config),
    )
    endpoints = {
        "xray_ct/dual_input": (
            "/predict_xray_ct",
            [handle_file(str(xray)), handle_file(str(ct))],
            lambda: served.classifiers["dual_input"].predict(xray=str(xray), ct=str(ct)),
        ),
        **{
            f"chest_xray/{key}": (
                "/predict_chest_xray",
                [key, handle_file(str(xray)), None],
                lambda key=key: served.classifiers[key].predict(xray=str(xray)),
            )
            for key in ("cnn_lstm", "dual_channel", "resnet")
        },
    }
    results = {}
    try:
        for name, (api_name, arguments, direct) in endpoints.items():
            measure_app_latency(demo.local_url, api_name, arguments, n_requests=1, concurrency=1)
            report = measure_app_latency(
                demo.local_url, api_name, arguments, n_requests=n_requests, concurrency=1
            )
            direct()
            in_process = LatencyReport(
                n_requests=n_requests,
                concurrency=1,
                latencies_s=tuple(_timed_calls(direct, n_requests, torch.device("cpu"))),
                errors=(),
                wall_s=0.0,
            )
            summary = report.to_dict()
            summary["in_process_p50_s"] = in_process.p50_s
            summary["in_process_p95_s"] = in_process.p95_s
            summary["p50_ratio"] = report.p50_s / in_process.p50_s
            results[name] = summary
    finally:
        demo.close()
    return results


def _inference_variants(compile: bool, cuda: bool) -> dict[str, dict[str, bool]]:
    variants = {"eager": {}, "channels_last": {"channels_last": True}}
    if compile:
        variants["compile"] = {"compile": True}
    if cuda:
        variants = {"fp32": {}, "bf16_channels_last": {"bf16": True, "channels_last": True}}
    return variants


def _prepare_data(data_dir: Path, settings: BenchmarkSettings) -> dict[str, Any]:
    """The phantom sets of the run under ``data_dir``, generated when missing."""
    from hf_covid.data.synthetic import generate_radiography, generate_xray_ct

    radiography, xray_ct = data_dir / "radiography", data_dir / "xray_ct"
    start = time.perf_counter()
    if not radiography.exists():
        mask_size = min(256, settings.source_image_size)
        generate_radiography(
            radiography,
            images_per_class=settings.images_per_class,
            image_size=settings.source_image_size,
            mask_size=mask_size,
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
    configs_dir: str | Path,
    app_file: str | Path,
    work_dir: str | Path,
    data_dir: str | Path | None = None,
    checkpoints_dir: str | Path | None = None,
    cases: tuple[str, ...] = ("data", "training", "inference", "app", "cuda"),
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every benchmark case against its baseline in this process.

    Args:
        settings: Sizes and repeats.
        configs_dir: Folder of the demo recipes (``scripts/configs``).
        app_file: ``spaces_app/app.py``.
        work_dir: Scratch folder (generated data, datasets cache, random checkpoints).
        data_dir: Folder with ``radiography/`` and ``xray_ct/`` phantom sets (generated there
            when missing; default: under ``work_dir``).
        checkpoints_dir: Checkpoint folders per model type for the app case (default: random
            checkpoints of the demo recipes).
        cases: Cases to run.
        progress: Called with the name of each step.

    Returns:
        ``{"settings", "machine", "data", "training", "inference", "app", "cuda"}``; a case not
        run is absent, a case that cannot run here holds a ``note``.
    """
    from dataclasses import asdict

    work_dir = Path(work_dir)
    recipes = load_demo_recipes(configs_dir)
    results: dict[str, Any] = {"settings": asdict(settings), "machine": machine_info()}
    cuda = torch.cuda.is_available()
    progress("preparing the phantom data")
    data = _prepare_data(Path(data_dir) if data_dir else work_dir / "data", settings)
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
        for model_type, recipe in recipes.items():
            progress(f"training: {model_type}, Trainer against a plain loop {precision or ''}")
            overrides = {"image_size": image_size(recipe), **precision}
            if settings.training_batch_size:
                overrides["per_device_train_batch_size"] = settings.training_batch_size
            rows[model_type] = compare_training_loops(
                recipe,
                data["xray_ct" if model_type == "dual_input" else "radiography"],
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
        for model_type, recipe in recipes.items():
            progress(f"inference: {model_type} on {device}")
            rows[model_type] = compare_inference_variants(
                build_demo_model(recipe),
                image_size=image_size(recipe),
                variants=_inference_variants(settings.compile, device == "cuda"),
                device=device,
                latency_repeats=settings.latency_repeats,
                throughput_repeats=settings.throughput_repeats,
            )
        return rows

    if "inference" in cases:
        results["inference"] = inference_case("cpu")

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
            for model_type, row in bf16.items():
                row["bf16_to_fp32"] = (
                    row["trainer_samples_per_second"]
                    / fp32[model_type]["trainer_samples_per_second"]
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


def _number(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The results of `run_benchmarks` as Markdown tables (``benchmarks/results.md``)."""
    machine = results["machine"]
    lines = [
        "# hf_covid benchmarks",
        "",
        "Written by `scripts/benchmark.py`"
        + (" --quick" if results["settings"]["quick"] else "")
        + ". Each case is compared with its baseline in the same run: the ratios are the "
        "result; absolute numbers depend on the machine and its load.",
        "",
        f"Machine: {machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads, "
        f"torch {machine['torch_version']}, device {machine['device']}, load average "
        f"{' / '.join(_number(value, 2) for value in machine['load_average'])} at the start"
        + (
            " (more runnable processes than cores: the machine was shared during the run)."
            if machine["shared_machine"]
            else "."
        ),
        "",
    ]
    if data := results.get("data"):
        first = next(iter(data.values()))
        lines += [
            f"## Data: DataLoader samples/s ({first['images']} images, {first['image_size']} px, "
            f"batch {first['batch_size']}, {first['num_workers']} workers)",
            "",
            "| augmentation | pipeline | samples/s | peak memory (MB) | speed-up (target 3x) |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for row in data.values():
            augmentation = "on" if row["augment"] else "off"
            lines += [
                f"| {augmentation} | naive (PIL open + resize every epoch) | "
                f"{_number(row['naive']['samples_per_second'])} | "
                f"{_number(row['naive']['peak_memory_mb'], 0)} | 1.0x |",
                f"| {augmentation} | hf_covid (preprocessed once) | "
                f"{_number(row['preprocessed']['samples_per_second'])} | "
                f"{_number(row['preprocessed']['peak_memory_mb'], 0)} | "
                f"{_number(row['speedup'])}x |",
            ]
        lines += [
            "",
            f"One-off preprocessing: {_number(first['preprocess_seconds'])} s "
            f"({_number(first['preprocessed_cache_mb'])} MB cache).",
            "",
        ]
    if training := results.get("training"):
        lines += _training_table("Training: samples/s, HF Trainer against a plain loop", training)
    if inference := results.get("inference"):
        lines += _inference_table("Inference (CPU)", inference)
    if app := results.get("app"):
        lines += [
            "## App: end-to-end predict latency through gradio_client (one request at a time)",
            "",
            "| tab / model | p50 (s) | p95 (s, target < 1) | in-process p50 (s) | app / in-process "
            "| errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {name} | {_number(row['p50_s'], 3)} | {_number(row['p95_s'], 3)} | "
                f"{_number(row['in_process_p50_s'], 3)} | {_number(row['p50_ratio'], 2)}x | "
                f"{row['n_errors']} |"
                for name, row in app.items()
            ),
            "",
        ]
    if cuda := results.get("cuda"):
        lines += ["## CUDA: bf16 + channels_last against fp32", ""]
        if "note" in cuda:
            lines += [cuda["note"][0].upper() + cuda["note"][1:] + ".", ""]
        else:
            lines += _training_table("Training fp32", cuda["training_fp32"], level="###")
            lines += _training_table(
                "Training bf16 + channels_last", cuda["training_bf16_channels_last"], level="###"
            )
            lines += _inference_table("Inference (CUDA)", cuda["inference"], level="###")
            resnet = cuda["resnet50_training"]
            lines += [
                f"ResNet-50 training at {resnet['image_size']} px, batch {resnet['batch_size']}: "
                f"{_number(resnet['images_per_second'], 0)} images/s, "
                f"{_number(100 * resnet['fraction_of_reference'], 0)} % of the published "
                f"{_number(resnet['reference']['images_per_second'], 0)} images/s "
                f"({resnet['reference']['source']}).",
                "",
            ]
    return "\n".join(lines)


def _training_table(title: str, rows: dict[str, Any], level: str = "##") -> list[str]:
    return [
        f"{level} {title} (overhead target at most 10 %)",
        "",
        "| model | image px | batch | Trainer samples/s | plain loop samples/s | Trainer / plain "
        "| overhead |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {row['image_size']} | {row['batch_size']} | "
            f"{_number(row['trainer_samples_per_second'])} | "
            f"{_number(row['plain_samples_per_second'])} | {_number(row['trainer_to_plain'], 2)} | "
            f"{_number(100 * row['overhead'])} % |"
            for name, row in rows.items()
        ),
        "",
    ]


def _inference_table(title: str, rows: dict[str, Any], level: str = "##") -> list[str]:
    lines = [
        f"{level} {title}: batch-1 latency and batch-32 throughput",
        "",
        "| model | variant | batch-1 p50 (ms) | batch-1 p95 (ms) | batch-32 samples/s "
        "| p50 vs baseline | throughput vs baseline | warm-up (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        for variant, result in row["variants"].items():
            lines.append(
                f"| {name} | {variant}{' (helps)' if variant in row['helps'] else ''} | "
                f"{_number(result['batch1_p50_ms'], 2)} | {_number(result['batch1_p95_ms'], 2)} | "
                f"{_number(result['throughput_samples_per_second'])} | "
                f"{_number(result['p50_ratio'], 2)} | {_number(result['throughput_ratio'], 2)} | "
                f"{_number(result['warmup_seconds'], 1)} |"
            )
    return [*lines, ""]
