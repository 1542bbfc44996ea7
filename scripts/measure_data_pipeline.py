"""Measure DataLoader samples/s: preprocessed uint8 cache against PIL open + resize every epoch.

Writes a phantom COVID-19 Radiography set first if ``--data-dir`` does not exist, then calls
`hf_covid.benchmarks.compare_data_pipelines` with and/or without augmentation.

    python scripts/measure_data_pipeline.py --images-per-class 500 --output bench.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hf_covid.benchmarks import compare_data_pipelines
from hf_covid.data.synthetic import generate_radiography


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/hf_covid_bench/radiography"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/hf_covid_bench/cache"))
    parser.add_argument("--images-per-class", type=int, default=500, help="when generating")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="per measurement; first is warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements, pooled")
    parser.add_argument("--augmentation", choices=("off", "on", "both"), default="both")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    if not arguments.data_dir.exists():
        generate_radiography(arguments.data_dir, images_per_class=arguments.images_per_class)
    results = []
    for augment in {"off": [False], "on": [True], "both": [False, True]}[arguments.augmentation]:
        result = compare_data_pipelines(
            arguments.data_dir,
            image_size=arguments.image_size,
            batch_size=arguments.batch_size,
            num_workers=arguments.num_workers,
            epochs=arguments.epochs,
            rounds=arguments.rounds,
            augment=augment,
            cache_dir=arguments.cache_dir,
        )
        results.append(result)
        print(
            f"{result['images']} images, {arguments.image_size}px, augmentation "
            f"{'on' if augment else 'off'}: naive {result['naive']['samples_per_second']:.0f} "
            f"samples/s (peak memory {result['naive']['peak_memory_mb']:.0f} MB), preprocessed "
            f"{result['preprocessed']['samples_per_second']:.0f} samples/s (peak memory "
            f"{result['preprocessed']['peak_memory_mb']:.0f} MB, cache "
            f"{result['preprocessed_cache_mb']:.0f} MB on disk): {result['speedup']:.1f}x"
        )
    if arguments.output:
        arguments.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
