"""CUDA reference: ResNet-50 training images/s next to NVIDIA's published A100 figure."""

from __future__ import annotations

from typing import Any

import torch

from ..models import build_resnet_classifier, example_inputs
from .timing import timed_calls, to_memory_format

__all__ = ["NO_CUDA_NOTE", "RESNET50_A100_REFERENCE", "resnet50_training_throughput"]

RESNET50_A100_REFERENCE: dict[str, Any] = {
    "images_per_second": 2470.0,
    "source": "NVIDIA Deep Learning Examples, ResNet-50 v1.5 PyTorch, 1x A100 80GB, AMP, batch 256",
    "url": "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/"
    "ConvNets/resnet50v1.5",
}
"""NVIDIA's published ResNet-50 v1.5 training throughput on one A100 80GB (AMP, batch 256)."""

NO_CUDA_NOTE = "skipped: no CUDA device"
"""What the CUDA case records on a machine without CUDA."""


def resnet50_training_throughput(
    *, batch_size: int = 256, steps: int = 30, warmup_steps: int = 5, image_size: int = 224
) -> dict[str, Any]:
    """ResNet-50 training images/s on CUDA (bf16 autocast, channels_last, SGD), next to
    :data:`RESNET50_A100_REFERENCE`. Synthetic inputs, so the data pipeline is not part of the
    number.

    Returns:
        ``images_per_second``, ``batch_size``, ``image_size``, ``reference`` and
        ``fraction_of_reference``.
    """
    device = torch.device("cuda")
    model = build_resnet_classifier(pretrained=None).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    inputs = to_memory_format(
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
    timed_calls(step, warmup_steps, device)
    seconds = sum(timed_calls(step, steps, device))
    images_per_second = batch_size * steps / seconds
    return {
        "images_per_second": images_per_second,
        "batch_size": batch_size,
        "image_size": image_size,
        "reference": RESNET50_A100_REFERENCE,
        "fraction_of_reference": images_per_second / RESNET50_A100_REFERENCE["images_per_second"],
    }
