"""The results of a benchmark run as Markdown tables (``benchmarks/results.md``)."""

from __future__ import annotations

from typing import Any

__all__ = ["results_markdown"]


def _number(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _machine_lines(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    return [
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


def _data_table(data: dict[str, Any]) -> list[str]:
    first = next(iter(data.values()))
    lines = [
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
    return [
        *lines,
        "",
        f"One-off preprocessing: {_number(first['preprocess_seconds'])} s "
        f"({_number(first['preprocessed_cache_mb'])} MB cache).",
        "",
    ]


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


def _onnx_section(onnx: dict[str, Any]) -> list[str]:
    rows = onnx["models"]
    lines = _inference_table(
        f"ONNX: onnxruntime against eager PyTorch (CPU, {onnx['threads']} thread(s) each)", rows
    )
    loads = (onnx["load_average"], onnx["load_average_after"])
    return [
        *lines,
        "| model | exporter | max difference to PyTorch (logits) | export (s) | graph (MB) |",
        "| --- | --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {row['exporter']} | {row['max_abs_difference']['logits']:.1e} | "
            f"{_number(row['export_seconds'])} | {_number(row['onnx_file_mb'], 2)} |"
            for name, row in rows.items()
        ),
        "",
        "Load average during this case: "
        + " then ".join(" / ".join(_number(value, 2) for value in load) for load in loads)
        + " (1, 5, 15 min; at its start and end)."
        + (
            " More runnable processes than cores: other jobs shared the machine during this "
            "case, so both sides ran slower than on a quiet machine and the ratios are less "
            "certain (with more than one thread, eager PyTorch's threads also wait on busy cores)."
            if onnx.get("shared_machine")
            else ""
        ),
        "",
    ]


def _app_table(app: dict[str, Any]) -> list[str]:
    return [
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


def _cuda_section(cuda: dict[str, Any]) -> list[str]:
    lines = ["## CUDA: bf16 + channels_last against fp32", ""]
    if "note" in cuda:
        return [*lines, cuda["note"][0].upper() + cuda["note"][1:] + ".", ""]
    lines += _training_table("Training fp32", cuda["training_fp32"], level="###")
    lines += _training_table(
        "Training bf16 + channels_last", cuda["training_bf16_channels_last"], level="###"
    )
    lines += _inference_table("Inference (CUDA)", cuda["inference"], level="###")
    resnet = cuda["resnet50_training"]
    return [
        *lines,
        f"ResNet-50 training at {resnet['image_size']} px, batch {resnet['batch_size']}: "
        f"{_number(resnet['images_per_second'], 0)} images/s, "
        f"{_number(100 * resnet['fraction_of_reference'], 0)} % of the published "
        f"{_number(resnet['reference']['images_per_second'], 0)} images/s "
        f"({resnet['reference']['source']}).",
        "",
    ]


def _lung_crop_section(crop: dict[str, Any]) -> list[str]:
    serving, training = crop["serving"], crop["training_preprocessing_s"]
    size = "x".join(str(side) for side in serving["xray_size"])
    load = " -> ".join(f"{crop[key][0]:.2f}" for key in ("load_average", "load_average_after"))
    return [
        f"## Lung crop: {crop['model']}, serving and training preprocessing (load {load})",
        "",
        f"| `ChestPredictor.predict` on a {size} X-ray | p50 (ms) | p95 (ms) |",
        "| --- | ---: | ---: |",
        *(
            f"| {name.replace('_', ' ')} | {_number(serving[name]['p50_ms'])} | "
            f"{_number(serving[name]['p95_ms'])} |"
            for name in ("without_crop", "with_crop")
        ),
        "",
        f"The crop (one lung U-Net pass per request) makes p50 {_number(serving['p50_ratio'], 2)}x.",
        "",
        f"| preprocessing of {training['images']} phantoms for training | seconds |",
        "| --- | ---: |",
        *(
            f"| {name.replace('_', ' ')} | {_number(training[name], 2)} |"
            for name in ("without_crop", "with_crop_first_run", "with_crop_cached")
        ),
        "",
    ]


def _startup_table(startup: dict[str, Any]) -> list[str]:
    load = " -> ".join(
        f"{values[0]:.2f}" for values in (startup["load_average"], startup["load_average_after"])
    )
    return [
        f"## Start-up: fresh processes, median of {startup['repeats']} interleaved rounds "
        f"(load {load})",
        "",
        "| command | seconds |",
        "| --- | ---: |",
        *(f"| `{name}` | {_number(value, 2)} |" for name, value in startup["seconds"].items()),
        "",
        "| ratio | value | target |",
        "| --- | ---: | ---: |",
        *(
            f"| {name} | {_number(row['value'], 2)}x | "
            + (f"at most {_number(row['target'], 1)}x" if row["target"] else "-")
            + " |"
            for name, row in startup["ratios"].items()
        ),
        "",
    ]


def results_markdown(results: dict[str, Any]) -> str:
    """The results of :func:`~hf_covid.benchmarks.suite.run_benchmarks` as Markdown tables.

    Cases absent from ``results`` are left out.
    """
    lines = _machine_lines(results)
    if startup := results.get("startup"):
        lines += _startup_table(startup)
    if data := results.get("data"):
        lines += _data_table(data)
    if training := results.get("training"):
        lines += _training_table("Training: samples/s, HF Trainer against a plain loop", training)
    if inference := results.get("inference"):
        lines += _inference_table("Inference (CPU)", inference)
    if crop := results.get("lung_crop"):
        lines += _lung_crop_section(crop)
    if onnx := results.get("onnx"):
        lines += _onnx_section(onnx)
    if app := results.get("app"):
        lines += _app_table(app)
    if cuda := results.get("cuda"):
        lines += _cuda_section(cuda)
    return "\n".join(lines)
