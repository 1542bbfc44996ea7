"""Data pipeline throughput: "preprocess once, augment per epoch" against the naive pipeline.

The naive pipeline opens and resizes every image with PIL on every access (every epoch), as a
torchvision ``ImageFolder`` with a ``Resize`` transform does. The preprocessed pipeline reads the
uint8 images that :func:`hf_covid.data.preprocess_for_training` stored once. Both go through the
same :class:`torch.utils.data.DataLoader` settings and the same ``ChestBatchCollator``
(optionally with the same augmentation), so the difference is the per-epoch decoding and resizing
alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage
from torch.utils.data import DataLoader

from ..data import (
    ChestAugmentation,
    ChestBatchCollator,
    build_radiography_dataset,
    preprocess_for_training,
)

__all__ = [
    "NaiveImageFolderDataset",
    "compare_data_pipelines",
    "directory_size_mb",
    "measure_dataloader_throughput",
]


class NaiveImageFolderDataset(torch.utils.data.Dataset):
    """Baseline: PIL open, convert and resize on every access (no cache).

    Args:
        split: A split of ``build_radiography_dataset`` (paths in the image and mask columns).
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
    ) -> None:
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

    def __init__(self, interval: float = 0.1) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0.0
        self.baseline = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _memory(process: psutil.Process) -> int:
        try:
            return process.memory_full_info().pss
        except AttributeError:  # no PSS on this system
            return process.memory_info().rss

    def _current(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += self._memory(process)
            except psutil.Error:  # a worker that just exited
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

    def __exit__(self, *exc_info: object) -> None:
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
    """Samples per second a shuffled ``DataLoader`` delivers, and the memory it takes.

    The first epoch includes worker start-up and is reported separately; ``samples_per_second``
    is over the later epochs (at least one).

    Args:
        dataset: Map-style dataset.
        collate_fn: Batch function (e.g. ``ChestBatchCollator``).
        batch_size: Batch size.
        num_workers: DataLoader worker processes (kept alive between epochs).
        epochs: Epochs to run, at least 2.
        seed: Shuffle seed.

    Returns:
        ``samples_per_second``, ``first_epoch_samples_per_second``, ``samples``, ``seconds``,
        ``peak_memory_mb`` (this process plus workers, PSS) and ``memory_increase_mb`` (peak
        minus the memory before the loader started).

    Raises:
        ValueError: fewer than 2 epochs.
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
        root: Radiography-layout folder (e.g. from ``hf_covid.data.synthetic``).
        image_size: Training image size.
        batch_size: DataLoader batch size.
        num_workers: DataLoader workers for both pipelines.
        epochs: Epochs per measurement (the first is warm-up).
        rounds: Alternating measurements of each pipeline, pooled.
        augment: Apply ``ChestAugmentation`` in the collator of both pipelines.
        cache_dir: Datasets cache for the build and the preprocessed files.

    Returns:
        A dict with build times, preprocessing time, both measurements, their ratio and the
        preprocessed cache size.
    """
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
