"""Parameters, forward GFLOPs and CPU forward+backward time of every registered model's default
configuration.

Example:
    python scripts/model_stats.py --image-size 224 --batch-size 16 --output outputs/model_stats.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hf_covid.benchmarks.model_stats import model_complexity, training_step_time
from hf_covid.registry import example_inputs, get_model_family, list_models

# Default configurations, randomly initialised (ResNet: the ResNet-50 architecture, no download).


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list_models(), default=list_models())
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16, help="batch of the timed step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", type=Path, default=None, help="also write the rows as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    arguments = parse_arguments(argv)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    rows = []
    print("| model | parameters (M) | GFLOPs (forward, 1 image) | fwd+bwd ms (CPU, batch) |")
    print("| --- | ---: | ---: | ---: |")
    for name in arguments.models:
        model = get_model_family(name).build_model().eval()
        single = example_inputs(model.config, batch_size=1, image_size=arguments.image_size)
        complexity = model_complexity(model, single)
        batch = example_inputs(
            model.config, arguments.batch_size, arguments.image_size, labels=True
        )
        milliseconds = training_step_time(model, batch, repeats=arguments.repeats)
        row = {"model": name, **complexity, "train_step_ms": milliseconds}
        rows.append(row)
        print(
            f"| {name} | {complexity['parameters'] / 1e6:.2f} | {complexity['flops'] / 1e9:.2f} "
            f"| {milliseconds:.0f} |"
        )
    if arguments.output is not None:
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "image_size": arguments.image_size,
            "batch_size": arguments.batch_size,
            "threads": torch.get_num_threads(),
        }
        arguments.output.write_text(json.dumps({"settings": settings, "models": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
